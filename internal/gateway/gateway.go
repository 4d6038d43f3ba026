// Package gateway is terragate's composition root: New builds every dependency once, in
// order, from the typed configuration, and owns the mux, the one /graphql handler chain,
// health and readiness, the demo's routes, the background workers and the order of
// shutdown. Nothing else assembles them: the command, the end-to-end tests and the
// benchmarks all build the gateway here.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/admin"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/backfill"
	"github.com/terragate/terragate/internal/buildinfo"
	"github.com/terragate/terragate/internal/clientip"
	"github.com/terragate/terragate/internal/config"
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/demo"
	"github.com/terragate/terragate/internal/httplog"
	"github.com/terragate/terragate/internal/limit"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/playground"
	"github.com/terragate/terragate/internal/provider"
	"github.com/terragate/terragate/internal/relay"
	"github.com/terragate/terragate/internal/sdktoken"
	"github.com/terragate/terragate/internal/secheaders"
	"github.com/terragate/terragate/internal/stdwebhook"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/engine"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
	"github.com/terragate/terragate/internal/tracing"
	"github.com/terragate/terragate/internal/trusted"
	"github.com/terragate/terragate/internal/webhook"
	"github.com/terragate/terragate/internal/widget"
)

const (
	demoTokenTTL   = 24 * time.Hour
	emulatorPrefix = "/terra" // where demo mode mounts the emulator
	// sessionExpiryEvery is how often expired widget sessions are recorded and announced;
	// reads already show EXPIRED the moment a session expires.
	sessionExpiryEvery = 30 * time.Second
)

// Gateway is terragate assembled: its HTTP handler, the workers behind it, and what must be
// closed when it stops.
type Gateway struct {
	cfg     config.Config
	log     *slog.Logger
	handler http.Handler

	conns *connection.Service
	relay *relay.Relay
	// backfills works the history asked for new connections; nil when BACKFILL_DAYS is 0.
	backfills *backfill.Worker

	demoToken    string
	shuttingDown atomic.Bool
	// closers run in reverse order on Close: the store, opened first, closes last.
	closers []func()
}

// New builds the gateway from cfg, to be served on a listener at addr: the demo's emulator
// posts its webhooks there, and its port gives PUBLIC_URL's default. On error, whatever
// was built is closed again.
func New(ctx context.Context, cfg config.Config, addr net.Addr, log *slog.Logger) (_ *Gateway, err error) {
	g := &Gateway{cfg: cfg, log: log}
	self := terrasim.LoopbackURL(addr)
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.cfg.PublicURL == "" {
		g.cfg.PublicURL = "http://localhost:" + port(self)
	}
	stopTracing, traced, err := tracing.Setup(ctx, cfg.OTelEnv, "terragate", buildinfo.Read().Version)
	if err != nil {
		return nil, err
	}
	g.onClose(func() {
		// Flush what is buffered, but never hold up the exit for a collector that is gone.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(fctx); err != nil {
			log.Warn("tracing: flushing spans failed", "err", err)
		}
	})

	mux := http.NewServeMux()
	var emu *terrasim.Emulator        // demo mode's Terra
	var demoRelay *demo.RelayReceiver // demo mode's relay destination, if it has its own
	if g.cfg.Demo {
		emu, demoRelay, err = g.setUpDemo(self)
		if err != nil {
			return nil, err
		}
		g.onClose(emu.Close)
		mux.Handle(emulatorPrefix+"/", http.StripPrefix(emulatorPrefix, emu))
	}
	cfg = g.cfg
	log.Info("starting terragate", "config", cfg)
	if cfg.ExposedDemo() {
		log.Warn("demo mode listens beyond this machine: anyone who can reach it gets a working token", "addr", cfg.Addr)
	}

	st, err := engine.Open(ctx, cfg.DatabaseURL, engine.Options{MaxConns: cfg.DBMaxConns, Migrate: cfg.MigrateOnStart}, log)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	g.onClose(func() { _ = st.Close() })
	var s store.Store = st
	if traced {
		kind, _, _ := engine.Parse(cfg.DatabaseURL)
		s = tracing.Store(st, dbSystem(kind))
	}
	bus, busReady, closeBus, err := newBus(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return nil, err
	}
	g.onClose(closeBus)

	verifier, err := auth.NewVerifierContext(ctx, auth.Config{
		Secret:       []byte(cfg.AuthJWTSecret),
		Issuer:       cfg.AuthIssuer,
		Audience:     cfg.AuthAudience,
		SubjectClaim: cfg.AuthSubjectClaim,
		JWKSURL:      cfg.AuthJWKSURL,
		ServiceKeys:  cfg.ServiceAPIKeys,
		Logger:       log.With("component", "auth"),
	})
	if err != nil {
		return nil, fmt.Errorf("authentication: %w", err)
	}
	g.onClose(func() { _ = verifier.Close() })
	// From here on the service keys are kept hashed, by the verifier alone.
	cfg.ServiceAPIKeys, g.cfg.ServiceAPIKeys = nil, nil
	redirects, err := redirectAllowlist(cfg)
	if err != nil {
		return nil, err
	}
	meter := metrics.New()
	meter.ObserveEvents(bus.Subscribers, bus.Dropped)
	tc := terra.New(terra.Config{
		BaseURL:   cfg.TerraAPIURL,
		WidgetURL: cfg.TerraWidgetURL,
		DevID:     cfg.TerraDevID,
		APIKey:    cfg.TerraAPIKey,
		Timeout:   cfg.TerraTimeout,
		Retries:   cfg.TerraRetries,
		Observe:   meter.TerraCall,
		// Each change as the breaker makes it, so no loop polls the states.
		CircuitChange: meter.SetCircuit,
	}, terraHTTPClient(traced), log)
	catalog := provider.NewCatalog(tc, cfg.ProvidersTTL, log)
	refs := sdkReferenceKeys(cfg.TerraWebhookSecrets)
	var backfillReady func()
	if cfg.BackfillDays > 0 {
		g.backfills = backfill.New(tc, s, log.With("component", "backfill"), backfill.Options{})
		backfillReady = g.backfills.Notify
	}
	g.conns = connection.New(tc, s, bus, connection.NewMapping(refs, catalog.SDKOnly), meter, log,
		connection.WithBackfill(cfg.BackfillDays, cfg.BackfillTypes, backfillReady))
	widgets := widget.NewService(tc, s, g.conns, widget.Config{
		PublicURL: cfg.PublicURL,
		StateKey:  stateKey(cfg.TerraWebhookSecrets[0]),
		Redirects: redirects,
	}, log)
	g.relay = relay.New(relay.Config{
		Destinations: cfg.RelayDestinations,
		Timeout:      cfg.RelayTimeout,
		Schedule:     cfg.RelayRetrySchedule,
		Retention:    cfg.RelayRetention,
	}, s, relayHTTPClient(traced, cfg.RelayDestinations), meter, log.With("component", "relay"))
	meter.ObserveRelay(relayBacklog(s, cfg.RelayDestinations))
	hooks, err := webhook.New(cfg.TerraWebhookSecrets, g.conns.DecodeEvent, g.conns, meter, log,
		webhook.WithRelay(g.relay), webhook.WithMaxBytes(cfg.WebhookMaxBytes))
	if err != nil {
		return nil, err
	}
	gql := graph.NewHandler(&graph.Resolver{
		Widgets:      widgets,
		Connections:  g.conns,
		Admin:        admin.New(s, g.conns, log),
		Catalog:      catalog,
		SDKTokens:    sdktoken.New(tc, refs, s, log),
		Bus:          bus,
		Log:          log,
		SessionLimit: cfg.RateLimitCreateSession.Limiter(),
		TerraLimit:   cfg.RateLimitTerraCalls.Limiter(),
		Metrics:      meter,
	}, graph.Options{
		Metrics:       meter,
		UserLimit:     cfg.RateLimitUser.Limiter(),
		ServiceLimit:  cfg.RateLimitService.Limiter(),
		Introspection: cfg.Playground,
		// The one place documents are checked: HTTP and WebSocket operations alike.
		TrustedDocuments:     cfg.TrustedDocuments,
		TrustedDocumentsMode: cfg.TrustedDocumentsMode,
		HideDetails:          cfg.Production(),
		Secrets:              secretsOf(cfg),
		UserHashKey:          UserHashKey(cfg.TerraWebhookSecrets[0]),
		Verifier:             verifier,
		Origins:              cfg.CORSAllowedOrigins,
		Tracing:              traced,
		Log:                  log,
	})
	if cfg.TrustedDocuments != nil && cfg.TrustedDocumentsMode == trusted.Enforce && cfg.Playground {
		log.Warn("the playground's documents are not trusted documents: with TRUSTED_DOCUMENTS_MODE=enforce it cannot introspect or run them")
	}
	cors := corsFor(cfg.CORSAllowedOrigins)

	// /graphql: the app's origins only, no caching (refusals included), a per-IP budget, a
	// body deadline and cap, one well-formed operation per request, then who is calling;
	// each refusal is a GraphQL error with its own code. Webhooks are not rate limited
	// (Terra retries what it cannot deliver), but may be restricted to Terra's addresses.
	mux.Handle("/graphql", meter.HTTP("/graphql", cors.Handler(secheaders.NoStore(
		limit.PerIP(cfg.RateLimitIP.Limiter(), cfg.TrustedProxies.ClientIP, limit.GraphQL, limit.BodyDeadline(cfg.GraphQLBodyTimeout,
			limit.MaxBody(cfg.MaxBodyBytes, limit.GraphQL,
				limit.SingleOperation(clientip.Into(cfg.TrustedProxies, verifier.Middleware(gql))))))))))
	mux.Handle("GET "+widget.ReturnPath+"{sessionId}", secheaders.HTML(http.HandlerFunc(widgets.ServeReturn)))
	mux.Handle("/webhooks/terra", meter.HTTP("/webhooks/terra", clientip.Middleware(cfg.TrustedProxies, cfg.WebhookAllowedIPs, hooks))) // other methods: a JSON 405
	if cfg.MetricsOnAddr() {
		mux.Handle("GET /metrics", meter.Handler())
	} else if cfg.MetricsAddr == "" {
		log.Warn("metrics are not served: production serves /metrics only on METRICS_ADDR, a private address")
	} else {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, meter, cfg.DebugPprof, log)
		if err != nil {
			return nil, err
		}
		g.onClose(stopMetrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", g.readiness(s, busReady))
	if cfg.Demo {
		mux.Handle("GET "+demo.ReturnPath, secheaders.HTML(http.HandlerFunc(demo.ReturnPage)))
		if demoRelay != nil {
			mux.Handle("POST "+demo.RelayPath, demoRelay)
			mux.Handle("GET "+demo.RelayPath, secheaders.HTML(demoRelay))
		}
		mux.Handle(demo.PhonePath, cors.Handler(allowMethods(demo.PhoneHandler(emu.SDKConnect), http.MethodPost)))
		mux.Handle(demo.TokenPath, cors.Handler(allowMethods(demo.TokenHandler([]byte(cfg.AuthJWTSecret), cfg.AuthIssuer, cfg.AuthAudience, demoTokenTTL), http.MethodPost)))
		g.demoToken, err = auth.Issue([]byte(cfg.AuthJWTSecret), auth.IssueOptions{Subject: demo.User, Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience, TTL: demoTokenTTL})
		if err != nil {
			return nil, err
		}
	}
	if cfg.Playground {
		headers := map[string]string{}
		if g.demoToken != "" {
			headers["Authorization"] = "Bearer " + g.demoToken
		}
		mux.Handle("GET /{$}", secheaders.Playground(playground.Page("/graphql", headers)))
		mux.Handle("GET "+playground.AssetsPath, playground.Assets())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	})
	g.handler = limit.IdleBody(cfg.BodyIdleTimeout, httplog.Middleware(log, mux))
	return g, nil
}

// Handler is the gateway's whole HTTP surface, as Serve serves it.
func (g *Gateway) Handler() http.Handler { return g.handler }

// PublicURL is where browsers and Terra reach the gateway.
func (g *Gateway) PublicURL() string { return g.cfg.PublicURL }

// DemoToken is the demo end user's bearer token; "" outside demo mode.
func (g *Gateway) DemoToken() string { return g.demoToken }

// Serve serves ln and runs the background workers until ctx ends, then shuts down in order:
// readiness fails first, the server stops accepting and lets in-flight requests finish
// within SHUTDOWN_TIMEOUT (subscriptions get a normal close), then the workers stop. Close
// releases the rest.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	// Subscriptions live on hijacked connections, which Shutdown does not close: the GraphQL
	// handler's WebSocket transport registers with srv and closes each one normally then.
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	background, stopBackground := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { g.conns.Run(background, uuid.NewString(), g.cfg.SyncInterval, sessionExpiryEvery) })
	wg.Go(func() { g.relay.Run(background) })
	if g.backfills != nil {
		wg.Go(func() { g.backfills.Run(background) })
	}
	defer func() {
		stopBackground()
		wg.Wait() // before the store closes
	}()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	g.log.Info("shutting down")
	g.shuttingDown.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close releases everything New built, in reverse order. It is safe to call once after
// Serve returns, or after New alone.
func (g *Gateway) Close() {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i]()
	}
	g.closers = nil
}

func (g *Gateway) onClose(f func()) { g.closers = append(g.closers, f) }

// readiness is /readyz: the gateway can serve (database reachable, schema current, event
// bus listening, not shutting down); load balancers route on it. /healthz says only that
// the process is alive.
func (g *Gateway) readiness(st store.Store, busReady func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		switch {
		case g.shuttingDown.Load():
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		case st.Ready(ctx) != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
		case !busReady():
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "event bus unavailable"})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		}
	})
}

// setUpDemo fills in what a demo needs and returns the emulator that plays Terra: missing
// secrets are generated, and the emulator's own credentials are used for Terra calls.
func (g *Gateway) setUpDemo(self string) (*terrasim.Emulator, *demo.RelayReceiver, error) {
	cfg := &g.cfg
	var receiver *demo.RelayReceiver
	if len(cfg.RelayDestinations) == 0 {
		// Relay every event to the demo's own receiver page, as to an app's backend.
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		secret := stdwebhook.SecretPrefix + base64.StdEncoding.EncodeToString(key)
		r, err := demo.NewRelayReceiver(secret)
		if err != nil {
			return nil, nil, err
		}
		dest, err := relay.ParseDestinations(`[{"name":"demo","url":"` + self + demo.RelayPath + `","secret":"` + secret + `"}]`)
		if err != nil {
			return nil, nil, err
		}
		receiver, cfg.RelayDestinations = r, dest
	}
	if cfg.AuthJWTSecret == "" {
		cfg.AuthJWTSecret = randomSecret()
	}
	if len(cfg.TerraWebhookSecrets) == 0 {
		cfg.TerraWebhookSecrets = []string{randomSecret()}
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
		WebhookSecret: cfg.TerraWebhookSecrets[0],
		PublicURL:     cfg.PublicURL + emulatorPrefix,
		Logger:        g.log.With("component", "terra-emulator"),
	}), receiver, nil
}
