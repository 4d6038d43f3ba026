package bench

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/httplog"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/provider"
	"github.com/terragate/terragate/internal/redirect"
	"github.com/terragate/terragate/internal/secheaders"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/widget"
)

// GraphQLHandler is terragate's /graphql handler chain built in this process over st: the
// request log line (JSON, at info, as the gateway writes it; here into nothing), metrics,
// no-store, authentication, GraphQL and the store, with the Terra client pointed at
// terraURL. It is what the in-process benchmarks call with no network in between; the
// gateway adds CORS and the (here disabled) rate limits around it.
func GraphQLHandler(st store.Store, terraURL string) (http.Handler, error) {
	log := slog.New(httplog.ContextHandler(slog.NewJSONHandler(io.Discard, nil)))
	meter := metrics.New()
	tc := terra.New(terra.Config{
		BaseURL:   terraURL + "/v2",
		WidgetURL: terraURL + "/api/widget/session",
		DevID:     DevID,
		APIKey:    APIKey,
		Retries:   terra.DefaultRetries,
		Observe:   meter.TerraCall,
	}, Client(32), log)
	bus := events.NewLocal(log)
	conns := connection.New(tc, st, bus, log)
	redirects, err := redirect.FromOrigins(nil)
	if err != nil {
		return nil, err
	}
	widgets := widget.NewService(tc, st, conns, widget.Config{
		PublicURL: "http://127.0.0.1",
		StateKey:  []byte(WebhookSecret),
		Redirects: redirects,
	}, log)
	verifier, err := auth.NewVerifier(auth.Config{Secret: []byte(JWTSecret)})
	if err != nil {
		return nil, err
	}
	gql := graph.NewHandler(&graph.Resolver{
		Widgets:     widgets,
		Connections: conns,
		Catalog:     provider.NewCatalog(tc, time.Hour, log),
		Store:       st,
		Bus:         bus,
		Log:         log,
		Metrics:     meter,
	}, graph.Options{Metrics: meter, Verifier: verifier, Log: log})
	return httplog.Middleware(log, meter.HTTP("/graphql", secheaders.NoStore(verifier.Middleware(gql)))), nil
}
