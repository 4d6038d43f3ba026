package bench

import (
	"context"
	"io"
	"net"
	"net/http"

	"github.com/terragate/terragate/internal/config"
	"github.com/terragate/terragate/internal/gateway"
	"github.com/terragate/terragate/internal/httplog"
)

// GraphQLHandler is terragate's whole HTTP handler, built by the same constructor as the
// binary's over databaseURL, with the Terra client pointed at terraURL and the gateway's
// JSON request log written into nothing. It is what the in-process benchmarks call with
// no network in between: everything production runs per request (CORS, the rate limits
// as configured, the body limits, the GraphQL chain) is in it. close releases it.
func GraphQLHandler(ctx context.Context, databaseURL, terraURL string) (h http.Handler, close func(), err error) {
	env := GatewayEnv(databaseURL, terraURL)
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	log := httplog.NewLogger(io.Discard, cfg.LogLevel, cfg.LogFormat)
	gw, err := gateway.New(ctx, cfg, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, log)
	if err != nil {
		return nil, nil, err
	}
	return gw.Handler(), gw.Close, nil
}
