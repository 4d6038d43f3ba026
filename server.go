// Command terragate is a GraphQL gateway in front of the Terra API: it keeps Terra's
// credentials on the server, creates widget sessions for signed-in end users, and keeps
// their connections current from Terra's signed webhooks.
//
//	terragate                 serve (settings from the environment or flags; -h lists them)
//	terragate -demo           the whole loop on this machine, with the Terra emulator
//	terragate terra-emulator  the Terra emulator alone, for other backends
//	terragate schema          print the GraphQL schema (SDL)
//	terragate version         print the version and the commit it was built from
package main

//go:generate go tool gqlgen generate
//go:generate go tool sqlc generate

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/cors"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/clientip"
	"github.com/terragate/terragate/internal/config"
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/demo"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/events/pgnotify"
	"github.com/terragate/terragate/internal/httplog"
	"github.com/terragate/terragate/internal/limit"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/playground"
	"github.com/terragate/terragate/internal/provider"
	"github.com/terragate/terragate/internal/redirect"
	"github.com/terragate/terragate/internal/secheaders"
	"github.com/terragate/terragate/internal/store/engine"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
	"github.com/terragate/terragate/internal/tracing"
	"github.com/terragate/terragate/internal/webhook"
	"github.com/terragate/terragate/internal/widget"
)

const (
	shutdownTimeout = 10 * time.Second
	demoTokenTTL    = 24 * time.Hour
	emulatorPrefix  = "/terra" // where demo mode mounts the emulator
	// sessionExpiryEvery is how often expired widget sessions are recorded and announced;
	// reads already show EXPIRED the moment a session expires.
	sessionExpiryEvery = 30 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "terragate:", err)
		}
		os.Exit(1)
	}
}

// run wires terragate and serves until ctx ends. stdout gets the few lines a person reads
// (where it listens, the demo's token); stderr gets the structured logs.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "terra-emulator" {
		return runEmulator(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "migrate" {
		return runMigrate(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "schema" {
		return runSchema(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "version" {
		return runVersion(args[1:], stdout)
	}
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	stopTracing, traced, err := tracing.Setup(ctx, cfg.OTelEnv, "terragate", version())
	if err != nil {
		return err
	}
	defer func() {
		// Flush what is buffered, but never hold up the exit for a collector that is gone.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(fctx); err != nil {
			log.Warn("tracing: flushing spans failed", "err", err)
		}
	}()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	self := loopbackURL(ln.Addr())
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://localhost:" + port(ln.Addr())
	}

	mux := http.NewServeMux()
	var emu *terrasim.Emulator
	if cfg.Demo {
		emu = setUpDemo(&cfg, self, log)
		defer emu.Close()
		mux.Handle(emulatorPrefix+"/", http.StripPrefix(emulatorPrefix, emu))
		mux.Handle("GET "+demo.ReturnPath, secheaders.HTML(http.HandlerFunc(demo.ReturnPage)))
	}
	log.Info("starting terragate", "config", cfg)
	if cfg.ExposedDemo() {
		log.Warn("demo mode listens beyond this machine: anyone who can reach it gets a working token", "addr", cfg.Addr)
	}

	st, err := engine.Open(ctx, cfg.DatabaseURL, engine.Options{MaxConns: cfg.DBMaxConns, Migrate: cfg.MigrateOnStart}, log)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	if traced {
		kind, _, _ := engine.Parse(cfg.DatabaseURL)
		st = tracing.Store(st, dbSystem(kind))
	}
	bus, busReady, closeBus, err := newBus(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer closeBus()

	verifier, err := auth.NewVerifierContext(ctx, auth.Config{
		Secret:       []byte(cfg.AuthJWTSecret),
		Issuer:       cfg.AuthIssuer,
		Audience:     cfg.AuthAudience,
		SubjectClaim: cfg.AuthSubjectClaim,
		JWKSURL:      cfg.AuthJWKSURL,
		ServiceKeys:  auth.ParseServiceKeys(cfg.ServiceAPIKeys),
		Logger:       log.With("component", "auth"),
	})
	if err != nil {
		return fmt.Errorf("authentication: %w", err)
	}
	defer verifier.Close()
	redirects, err := redirectAllowlist(cfg)
	if err != nil {
		return err
	}
	meter := metrics.New()
	clients, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	webhookIPs, err := clientip.ParseAllowList(cfg.WebhookAllowedIPs)
	if err != nil {
		return fmt.Errorf("WEBHOOK_ALLOWED_IPS: %w", err)
	}
	ipLimit, err := limiter("RATE_LIMIT_IP", cfg.RateLimitIP)
	if err != nil {
		return err
	}
	userLimit, err := limiter("RATE_LIMIT_USER", cfg.RateLimitUser)
	if err != nil {
		return err
	}
	sessionLimit, err := limiter("RATE_LIMIT_CREATE_SESSION", cfg.RateLimitCreateSession)
	if err != nil {
		return err
	}
	tc := terra.New(terra.Config{
		BaseURL:   cfg.TerraAPIURL,
		WidgetURL: cfg.TerraWidgetURL,
		DevID:     cfg.TerraDevID,
		APIKey:    cfg.TerraAPIKey,
		Timeout:   cfg.TerraTimeout,
		Retries:   cfg.TerraRetries,
		Observe:   meter.TerraCall,
	}, terraHTTPClient(traced), log)
	conns := connection.New(tc, st, bus, log)
	conns.Metrics = meter
	widgets := widget.NewService(tc, st, conns, widget.Config{
		PublicURL: cfg.PublicURL,
		StateKey:  stateKey(webhook.Secrets(cfg.TerraWebhookSecret)[0]),
		Redirects: redirects,
	}, log)
	hooks, err := webhook.New(cfg.TerraWebhookSecret, conns, log)
	if err != nil {
		return err
	}
	hooks.Metrics = meter
	gql := graph.NewHandler(&graph.Resolver{
		Widgets:      widgets,
		Connections:  conns,
		Catalog:      provider.NewCatalog(tc, cfg.ProvidersTTL, log),
		Store:        st,
		Bus:          bus,
		Log:          log,
		SessionLimit: sessionLimit,
		Metrics:      meter,
	}, graph.Options{
		Metrics:       meter,
		UserLimit:     userLimit,
		Introspection: cfg.Playground,
		HideDetails:   cfg.Production(),
		Secrets:       secretsOf(cfg),
		Verifier:      verifier,
		Origins:       cfg.CORSAllowedOrigins,
		Tracing:       traced,
		Log:           log,
	})
	cors := corsFor(cfg.CORSAllowedOrigins)

	// /graphql: the app's origins only, no caching (refusals included), a per-IP budget, a
	// body cap, one well-formed operation per request, then who is calling; each refusal is
	// a GraphQL error with its own code. Webhooks are not rate limited (Terra retries what it
	// cannot deliver), but may be restricted to Terra's addresses.
	mux.Handle("/graphql", meter.HTTP("/graphql", cors.Handler(secheaders.NoStore(
		limit.PerIP(ipLimit, clients.ClientIP, limit.GraphQL, limit.BodyDeadline(cfg.GraphQLBodyTimeout,
			limit.MaxBody(cfg.MaxBodyBytes, limit.GraphQL,
				limit.SingleOperation(clientip.Into(clients, verifier.Middleware(gql))))))))))
	mux.Handle("GET "+widget.ReturnPath+"{sessionId}", secheaders.HTML(http.HandlerFunc(widgets.ServeReturn)))
	mux.Handle("/webhooks/terra", meter.HTTP("/webhooks/terra", clientip.Middleware(clients, webhookIPs, hooks))) // other methods: a JSON 405
	if cfg.MetricsOnAddr() {
		mux.Handle("GET /metrics", meter.Handler())
	} else if cfg.MetricsAddr == "" {
		log.Warn("metrics are not served: production serves /metrics only on METRICS_ADDR, a private address")
	} else {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, meter, cfg.DebugPprof, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	// healthz: the process is alive. readyz: it can serve (database reachable, schema
	// current, event bus listening, not shutting down); load balancers route on it.
	var shuttingDown atomic.Bool
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		switch {
		case shuttingDown.Load():
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		case st.Ready(ctx) != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
		case !busReady():
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "event bus unavailable"})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		}
	})
	var token string
	if cfg.Demo {
		mux.Handle(demo.TokenPath, cors.Handler(allowMethods(demo.TokenHandler([]byte(cfg.AuthJWTSecret), cfg.AuthIssuer, cfg.AuthAudience, demoTokenTTL), http.MethodPost)))
		token, err = auth.Issue([]byte(cfg.AuthJWTSecret), auth.IssueOptions{Subject: demo.User, Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience, TTL: demoTokenTTL})
		if err != nil {
			return err
		}
	}
	if cfg.Playground {
		headers := map[string]string{}
		if token != "" {
			headers["Authorization"] = "Bearer " + token
		}
		mux.Handle("GET /{$}", secheaders.Playground(playground.Page("/graphql", headers)))
		mux.Handle("GET "+playground.AssetsPath, playground.Assets())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	})

	// Subscriptions live on hijacked connections, which Shutdown does not close: the GraphQL
	// handler's WebSocket transport registers with srv and closes each one normally then.
	srv := &http.Server{
		Handler:           limit.IdleBody(cfg.BodyIdleTimeout, httplog.Middleware(log, mux)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	background, stopBackground := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { conns.Run(background, uuid.NewString(), cfg.SyncInterval, sessionExpiryEvery) })
	wg.Go(func() { watchCircuits(background, tc, meter) })
	defer func() {
		stopBackground()
		wg.Wait() // before the store closes
	}()

	fmt.Fprintf(stdout, "terragate listening on %s (public URL %s)\n", self, cfg.PublicURL)
	if cfg.Demo {
		demo.Banner(stdout, cfg.PublicURL, token)
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shuttingDown.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// setUpDemo fills in what a demo needs and returns the emulator that plays Terra: missing
// secrets are generated, and the emulator's own credentials are used for Terra calls.
func setUpDemo(cfg *config.Config, self string, log *slog.Logger) *terrasim.Emulator {
	if cfg.AuthJWTSecret == "" {
		cfg.AuthJWTSecret = randomSecret()
	}
	if cfg.TerraWebhookSecret == "" {
		cfg.TerraWebhookSecret = randomSecret()
	}
	cfg.TerraDevID = "terragate-demo"
	cfg.TerraAPIKey = randomSecret()
	cfg.TerraAPIURL = self + emulatorPrefix + "/v2"
	cfg.TerraWidgetURL = self + emulatorPrefix + "/api/widget/session"
	if len(cfg.CORSAllowedOrigins) == 0 {
		cfg.CORSAllowedOrigins = []string{originOf(cfg.PublicURL)}
	}
	return terrasim.New(terrasim.Config{
		DevID:         cfg.TerraDevID,
		APIKey:        cfg.TerraAPIKey,
		WebhookURL:    self + "/webhooks/terra",
		WebhookSecret: cfg.TerraWebhookSecret,
		PublicURL:     cfg.PublicURL + emulatorPrefix,
		Logger:        log.With("component", "terra-emulator"),
	})
}

// redirectAllowlist is ALLOWED_REDIRECT_URLS, or the CORS origins when it is unset.
func redirectAllowlist(cfg config.Config) (*redirect.Allowlist, error) {
	if strings.TrimSpace(cfg.AllowedRedirectURLs) != "" {
		a, err := redirect.Parse(cfg.AllowedRedirectURLs)
		if err != nil {
			return nil, fmt.Errorf("ALLOWED_REDIRECT_URLS: %w", err)
		}
		return a, nil
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
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	if traced {
		return &http.Client{Transport: tracing.Transport(t)}
	}
	return &http.Client{Transport: t}
}

// dbSystem is OpenTelemetry's name for a store engine.
func dbSystem(kind string) string {
	if kind == engine.Postgres {
		return "postgresql"
	}
	return kind
}

// version is the module version this binary was built from ("(devel)" for a local build),
// for the service.version of spans.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// watchCircuits copies the Terra client's circuit states into the metrics until ctx ends.
func watchCircuits(ctx context.Context, tc *terra.Client, m *metrics.Metrics) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		for endpoint, state := range tc.CircuitStates() {
			m.SetCircuit(endpoint, state)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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

// secretsOf lists every secret in the configuration, for scrubbing error messages.
func secretsOf(cfg config.Config) []string {
	out := []string{cfg.TerraAPIKey, cfg.TerraWebhookSecret, cfg.AuthJWTSecret, cfg.ServiceAPIKeys}
	out = append(out, webhook.Secrets(cfg.TerraWebhookSecret)...)
	for _, k := range auth.ParseServiceKeys(cfg.ServiceAPIKeys) {
		out = append(out, k.Key)
	}
	return out
}

// limiter builds a rate limiter from a setting such as 60/m; nil when it is off.
func limiter(name, setting string) (*limit.Limiter, error) {
	cfg, enabled, err := limit.ParseRate(setting)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !enabled {
		return nil, nil
	}
	return limit.New(cfg), nil
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

// runMigrate runs `terragate migrate up|down|status` on DATABASE_URL (or -database-url),
// for operators who migrate separately (MIGRATE_ON_START=false).
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		return errors.New("usage: terragate migrate up|down|status [-database-url URL]")
	}
	cfg, err := config.Load(args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	return engine.Migrate(ctx, cfg.DatabaseURL, args[0], stdout, log)
}

// stateKey signs widget return URLs. It is derived from the webhook secret, which every
// instance shares and which never leaves the server, under a label of its own so the two
// uses cannot be confused.
func stateKey(webhookSecret string) []byte {
	m := hmac.New(sha256.New, []byte(webhookSecret))
	m.Write([]byte("terragate widget return state v1"))
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

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(httplog.ContextHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(httplog.ContextHandler(slog.NewJSONHandler(w, opts)))
}

// runEmulator serves the Terra emulator alone so other backends can develop against it.
func runEmulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("terra-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "address to listen on")
	publicURL := fs.String("public-url", "", "base URL browsers reach the emulator at (default http://<addr>)")
	webhookURL := fs.String("webhook-url", "", "where to post signed webhooks (empty: none are sent)")
	webhookSecret := fs.String("webhook-secret", "", "webhook signing secret")
	devID := fs.String("dev-id", "", "the dev-id clients must send")
	apiKey := fs.String("api-key", "", "the x-api-key clients must send")
	legacyGone := fs.Bool("legacy-gone", false, "answer 410 on the legacy widget endpoint, as Terra does for accounts created after 3 September 2026")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *devID == "" || *apiKey == "" {
		return errors.New("terra-emulator: -dev-id and -api-key are required")
	}
	if *webhookURL != "" && *webhookSecret == "" {
		return errors.New("terra-emulator: -webhook-secret is required with -webhook-url")
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("component", "terra-emulator")
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	defer ln.Close()
	if *publicURL == "" {
		*publicURL = loopbackURL(ln.Addr())
	}
	emu := terrasim.New(terrasim.Config{
		DevID:         *devID,
		APIKey:        *apiKey,
		WebhookURL:    *webhookURL,
		WebhookSecret: *webhookSecret,
		PublicURL:     strings.TrimRight(*publicURL, "/"),
		LegacyGone:    *legacyGone,
		Logger:        log,
	})
	defer emu.Close()
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "Terra emulator listening on %s: API at %s/v2, widget pages at %s/widget/session/<id>\n",
		loopbackURL(ln.Addr()), *publicURL, *publicURL)
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// loopbackURL is how this process reaches its own listener: 127.0.0.1 when it listens on
// every interface.
func loopbackURL(a net.Addr) string {
	host, p, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, p)
}

func port(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func originOf(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
			return u[:i+3+j]
		}
	}
	return u
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
