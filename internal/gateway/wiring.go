package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/cors"

	"github.com/terragate/terragate/internal/config"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/events/pgnotify"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/redirect"
	"github.com/terragate/terragate/internal/relay"
	"github.com/terragate/terragate/internal/sdkref"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/engine"
	"github.com/terragate/terragate/internal/tracing"
)

// redirectAllowlist is ALLOWED_REDIRECT_URLS, or the CORS origins when it is unset.
func redirectAllowlist(cfg config.Config) (*redirect.Allowlist, error) {
	if cfg.AllowedRedirectURLs != nil {
		return cfg.AllowedRedirectURLs, nil
	}
	a, err := redirect.FromOrigins(cfg.CORSAllowedOrigins)
	if err != nil {
		return nil, fmt.Errorf("CORS_ALLOWED_ORIGINS: %w", err)
	}
	return a, nil
}

// terraHTTPClient keeps connections to Terra alive and reused across concurrent requests:
// a new TLS handshake per call would add more latency than the gateway itself. With
// tracing on, each call is a client span that passes the trace on to Terra.
func terraHTTPClient(traced bool) *http.Client {
	return &http.Client{Transport: transport(traced, 64)}
}

// relayHTTPClient is the relay's: it follows no redirect, and keeps a connection open per
// attempt in flight to each destination (the default keeps two per host, and the relay's
// workers would dial anew for most attempts).
func relayHTTPClient(traced bool, dests []relay.Destination) *http.Client {
	return &http.Client{CheckRedirect: relay.NoRedirects, Transport: transport(traced, relay.MaxInFlight(dests))}
}

// transport keeps up to perHost idle connections to each host, and traces each request when
// tracing is on.
func transport(traced bool, perHost int) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = perHost
	t.IdleConnTimeout = 90 * time.Second
	if traced {
		return tracing.Transport(t)
	}
	return t
}

// dbSystem is OpenTelemetry's name for a store engine.
func dbSystem(kind string) string {
	if kind == engine.Postgres {
		return "postgresql"
	}
	return kind
}

// serveMetrics serves /metrics on its own address, so it can stay off the public network,
// and with withPprof Go's profiler beside it.
func serveMetrics(addr string, m *metrics.Metrics, withPprof bool, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("METRICS_ADDR: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}

// secretsOf lists the secrets in the configuration that terragate must keep anyway, for
// scrubbing error messages. Service keys are not listed: they are kept hashed, and the
// verifier finds them in a message by their hashes.
func secretsOf(cfg config.Config) []string {
	return append([]string{cfg.TerraAPIKey, cfg.AuthJWTSecret}, cfg.TerraWebhookSecrets...)
}

// newBus picks the event bus: PostgreSQL's LISTEN/NOTIFY, so that a subscriber on one
// instance hears of a webhook received by another, or the in-process bus for SQLite, which
// serves one instance. ready reports whether the bus is delivering.
func newBus(ctx context.Context, databaseURL string, log *slog.Logger) (bus events.Bus, ready func() bool, closeBus func(), err error) {
	kind, target, err := engine.Parse(databaseURL)
	if err != nil {
		return nil, nil, nil, err
	}
	if kind != engine.Postgres {
		return events.NewLocal(log), func() bool { return true }, func() {}, nil
	}
	poolCfg, err := pgxpool.ParseConfig(target)
	if err != nil {
		return nil, nil, nil, errors.New("DATABASE_URL: not a valid PostgreSQL URL")
	}
	poolCfg.MaxConns = 2 // NOTIFY is one short statement
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("event bus: %w", err)
	}
	// One channel per schema: clusters that share a database in separate schemas must not
	// hear each other.
	var schema string
	if err := pool.QueryRow(ctx, "select current_schema()").Scan(&schema); err != nil {
		pool.Close()
		return nil, nil, nil, fmt.Errorf("event bus: %w", err)
	}
	channel := pgnotify.DefaultChannel
	if schema != "public" {
		sum := sha256.Sum256([]byte(schema))
		channel += "_" + hex.EncodeToString(sum[:8])
	}
	b, err := pgnotify.New(ctx, pool, target, log.With("component", "event-bus"), pgnotify.Options{Channel: channel})
	if err != nil {
		pool.Close()
		return nil, nil, nil, fmt.Errorf("event bus: %w", err)
	}
	return b, b.Connected, func() { b.Close(); pool.Close() }, nil
}

// stateKey signs widget return URLs. It is derived from the webhook secret, which every
// instance shares and which never leaves the server, under a label of its own so the two
// uses cannot be confused.
func stateKey(webhookSecret string) []byte {
	m := hmac.New(sha256.New, []byte(webhookSecret))
	m.Write([]byte("terragate widget return state v1"))
	return m.Sum(nil)
}

// sdkReferenceKeys sign the references handed to Terra's mobile SDK (package sdkref). Like
// stateKey they are derived from the webhook secrets, under a label of their own: the
// first secret's key issues, and every listed secret's verifies, so that rotating the
// secret does not disown the references issued under the previous one while it is listed.
func sdkReferenceKeys(webhookSecrets []string) *sdkref.Keys {
	keys := make([][]byte, 0, len(webhookSecrets))
	for _, secret := range webhookSecrets {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("terragate sdk reference v1"))
		keys = append(keys, m.Sum(nil))
	}
	return sdkref.New(keys...)
}

// UserHashKey keys the pseudonyms of callers in the operation log. Like stateKey it is
// derived from the webhook secret, which every instance shares, under a label of its own:
// hashes match across restarts and instances, and change when that secret is rotated.
func UserHashKey(webhookSecret string) []byte {
	m := hmac.New(sha256.New, []byte(webhookSecret))
	m.Write([]byte("terragate user hash v1"))
	return m.Sum(nil)
}

// allowMethods answers other methods with a JSON 405 (OPTIONS is left to CORS).
func allowMethods(h http.Handler, methods ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(methods, r.Method) {
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// corsFor admits only the app's own origins. rs/cors treats an empty list as "any
// origin", so no origins must mean no cross-origin access at all.
func corsFor(origins []string) *cors.Cors {
	opts := cors.Options{
		AllowedMethods: []string{http.MethodPost, http.MethodGet, http.MethodOptions},
		AllowedHeaders: []string{"Authorization", "Content-Type"},
		MaxAge:         600,
	}
	if len(origins) == 0 {
		opts.AllowOriginFunc = func(string) bool { return false }
	} else {
		opts.AllowedOrigins = origins
	}
	return cors.New(opts)
}

// port is the port of a base URL such as http://127.0.0.1:8080.
func port(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Port()
}

// originOf is the scheme://host[:port] of an absolute URL.
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

func randomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// relayBacklog reads each destination's backlog from the store, for the metrics.
func relayBacklog(st store.Outbox, dests []relay.Destination) func(context.Context) ([]metrics.RelayBacklog, error) {
	return func(ctx context.Context) ([]metrics.RelayBacklog, error) {
		out := make([]metrics.RelayBacklog, 0, len(dests))
		now := time.Now()
		for _, d := range dests {
			n, oldest, err := st.PendingRelayDeliveries(ctx, d.Name)
			if err != nil {
				return nil, err
			}
			b := metrics.RelayBacklog{Destination: d.Name, Pending: n}
			if n > 0 {
				b.OldestAge = max(now.Sub(oldest), 0)
			}
			out = append(out, b)
		}
		return out, nil
	}
}
