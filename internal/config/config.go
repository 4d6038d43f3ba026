// Package config holds terragate's one typed configuration. Load reads it from the
// environment and from flags of the same names; nothing else in the program reads the
// environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/clientip"
	"github.com/terragate/terragate/internal/limit"
	"github.com/terragate/terragate/internal/redirect"
	"github.com/terragate/terragate/internal/relay"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/trusted"
)

// Defaults for settings that have one.
const (
	DefaultAddr = ":8080"
	// DefaultDemoAddr keeps the demo on this machine: it hands out a working token to
	// whoever asks, so listening beyond loopback must be asked for with ADDR.
	DefaultDemoAddr     = "127.0.0.1:8080"
	DefaultDatabaseURL  = "sqlite:terragate.db"
	DefaultTerraAPI     = "https://api.tryterra.co/v2"
	DefaultTerraWidget  = "https://access.tryterra.co/api/widget/session"
	DefaultTerraTimeout = 10 * time.Second
	// DefaultTerraRetries is the client's own recommendation, so the two cannot drift.
	DefaultTerraRetries = terra.DefaultRetries
)

// Config is every setting terragate reads at start-up.
type Config struct {
	Demo bool // run with the Terra emulator mounted on the same port, no Terra account needed

	Addr           string // ADDR: where to listen
	PublicURL      string // PUBLIC_URL: how browsers and Terra reach this server
	DatabaseURL    string // DATABASE_URL
	DBMaxConns     int    // DB_MAX_CONNS: PostgreSQL pool size
	MigrateOnStart bool   // MIGRATE_ON_START: apply migrations at start (else require them applied)

	TerraDevID  string // TERRA_DEV_ID
	TerraAPIKey string // TERRA_API_KEY
	// TerraWebhookSecrets is TERRA_WEBHOOK_SECRET: one, or several comma-separated while a
	// secret is rotated or several Terra environments post to one URL. The first also
	// derives the keys of signed widget returns and of user hashes.
	TerraWebhookSecrets []string
	TerraAPIURL         string        // TERRA_API_URL: Terra's v2 base URL
	TerraWidgetURL      string        // TERRA_WIDGET_URL: the widget endpoint used after a 410 on the legacy one
	TerraTimeout        time.Duration // TERRA_TIMEOUT: deadline of every Terra call
	TerraRetries        int           // TERRA_RETRIES: retries of a failed idempotent call

	Env string // ENV: "production" turns on the strict defaults and checks

	AuthJWTSecret    string            // AUTH_JWT_SECRET: HS256 key of end-user tokens
	AuthJWKSURL      string            // AUTH_JWKS_URL: an identity provider's JWKS, for RS256/ES256 tokens
	AuthSubjectClaim string            // AUTH_SUBJECT_CLAIM: the claim naming the end user (default sub)
	ServiceAPIKeys   []auth.ServiceKey // SERVICE_API_KEYS: the app backend's keys, name:key,...
	AuthIssuer       string            // AUTH_ISSUER: required iss, when set
	AuthAudience     string            // AUTH_AUDIENCE: required aud, when set

	CORSAllowedOrigins []string // CORS_ALLOWED_ORIGINS: comma separated
	// AllowedRedirectURLs is ALLOWED_REDIRECT_URLS, comma-separated URL prefixes; nil when
	// unset, and the CORS origins are allowed instead.
	AllowedRedirectURLs *redirect.Allowlist

	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long a graceful shutdown may take
	SyncInterval    time.Duration // SYNC_INTERVAL: period of the reconciliation sweep; 0 turns it off
	ProvidersTTL    time.Duration // PROVIDERS_TTL: how long Terra's provider list is cached

	MaxBodyBytes           int64               // MAX_BODY_BYTES: largest GraphQL request body
	WebhookMaxBytes        int64               // WEBHOOK_MAX_BYTES: largest Terra webhook body
	BodyIdleTimeout        time.Duration       // BODY_IDLE_TIMEOUT: longest wait for the next byte of a request body
	GraphQLBodyTimeout     time.Duration       // GRAPHQL_BODY_TIMEOUT: longest a whole /graphql request body may take
	RateLimitUser          limit.Rate          // RATE_LIMIT_USER, e.g. 120/m
	RateLimitIP            limit.Rate          // RATE_LIMIT_IP, e.g. 600/m
	RateLimitCreateSession limit.Rate          // RATE_LIMIT_CREATE_SESSION, e.g. 10/m
	RateLimitTerraCalls    limit.Rate          // RATE_LIMIT_TERRA_CALLS: mutations that call Terra, per end user, e.g. 30/m
	RateLimitService       limit.Rate          // RATE_LIMIT_SERVICE: operations per service key, e.g. 600/m
	TrustedProxies         *clientip.Resolver  // TRUSTED_PROXIES: proxies whose X-Forwarded-For is believed
	WebhookAllowedIPs      *clientip.AllowList // WEBHOOK_ALLOWED_IPS: CIDRs allowed to post webhooks

	MetricsAddr string // METRICS_ADDR: serve /metrics there instead of on ADDR
	DebugPprof  bool   // DEBUG_PPROF: Go's profiler at /debug/pprof/ on METRICS_ADDR

	// OpenTelemetry's own variable names, so collectors' usual settings work as they are.
	OTelEndpoint       string // OTEL_EXPORTER_OTLP_ENDPOINT: OTLP/HTTP base URL; tracing is off without one
	OTelTracesEndpoint string // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: full traces URL, overrides the base
	OTelSDKDisabled    bool   // OTEL_SDK_DISABLED: true turns tracing off whatever is set

	// TrustedDocuments is TRUSTED_DOCUMENTS: the manifests (graphql-codegen's
	// persisted-documents.json) of the documents the app was built with, read and checked
	// at Load; nil when unset, and any document runs.
	TrustedDocuments *trusted.Documents
	// TrustedDocumentsMode is TRUSTED_DOCUMENTS_MODE: enforce (the default) refuses other
	// documents, allow-unlisted runs and counts them while an app is rolled out.
	TrustedDocumentsMode trusted.Mode
	// trustedModeSet records that TRUSTED_DOCUMENTS_MODE was given, which needs a manifest.
	trustedModeSet bool

	Playground bool // PLAYGROUND: the GraphQL playground at / and introspection
	// playgroundSet records that PLAYGROUND was given, which production honours.
	playgroundSet bool
	// addrSet records that ADDR was given, which the demo honours.
	addrSet   bool
	LogLevel  string // LOG_LEVEL: debug, info, warn, error
	LogFormat string // LOG_FORMAT: json or text

	// RelayDestinations is RELAY_DESTINATIONS: the app's backends every stored Terra event
	// is relayed to (none: nothing is relayed, and no data event's body is kept).
	RelayDestinations  []relay.Destination
	RelayTimeout       time.Duration   // RELAY_TIMEOUT: how long a destination has to answer 2xx
	RelayRetrySchedule []time.Duration // RELAY_RETRY_SCHEDULE: waits before each retry
	RelayRetention     time.Duration   // RELAY_RETENTION: how long a dead letter's body is kept

	// BackfillDays is BACKFILL_DAYS: how many days of history terragate asks Terra for when
	// a new connection arrives (0: none).
	BackfillDays int
	// BackfillTypes is BACKFILL_TYPES: the Terra data types of that history.
	BackfillTypes []string
}

// setting describes one configuration value: its environment name, which is also its flag
// name in lower case with dashes, and whether it is a secret (never printed).
type setting struct {
	env    string
	usage  string
	secret bool
	set    func(c *Config, v string) error
}

func settings() []setting {
	str := func(p func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *p(c) = v; return nil }
	}
	return []setting{
		{env: "ADDR", usage: "address to listen on (demo: 127.0.0.1:8080 unless set)", set: func(c *Config, v string) error {
			c.addrSet = true
			c.Addr = v
			return nil
		}},
		{env: "PUBLIC_URL", usage: "base URL browsers and Terra reach this server at (default http://localhost:<port>)", set: func(c *Config, v string) error {
			if err := checkBaseURL(v); err != nil {
				return err
			}
			c.PublicURL = strings.TrimRight(v, "/")
			return nil
		}},
		{env: "DATABASE_URL", usage: "store: sqlite:PATH (or a bare path), or postgres://...", set: str(func(c *Config) *string { return &c.DatabaseURL })},
		{env: "DB_MAX_CONNS", usage: "PostgreSQL connection pool size", set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return fmt.Errorf("want a number from 1 to 1000, got %q", v)
			}
			c.DBMaxConns = n
			return nil
		}},
		{env: "MIGRATE_ON_START", usage: "apply database migrations at start; false: run `terragate migrate up` yourself", set: boolean(func(c *Config) *bool { return &c.MigrateOnStart })},
		{env: "TERRA_DEV_ID", usage: "Terra dev-id", set: str(func(c *Config) *string { return &c.TerraDevID })},
		{env: "TERRA_API_KEY", usage: "Terra API key", secret: true, set: str(func(c *Config) *string { return &c.TerraAPIKey })},
		{env: "TERRA_WEBHOOK_SECRET", usage: "Terra webhook signing secret", secret: true, set: func(c *Config, v string) error {
			c.TerraWebhookSecrets = nil
			for s := range strings.SplitSeq(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					c.TerraWebhookSecrets = append(c.TerraWebhookSecrets, s)
				}
			}
			return nil
		}},
		{env: "TERRA_API_URL", usage: "Terra API base URL", set: str(func(c *Config) *string { return &c.TerraAPIURL })},
		{env: "TERRA_WIDGET_URL", usage: "Terra widget session endpoint used once the legacy one answers 410", set: str(func(c *Config) *string { return &c.TerraWidgetURL })},
		{env: "TERRA_TIMEOUT", usage: "deadline of each Terra call, e.g. 10s", set: duration(func(c *Config) *time.Duration { return &c.TerraTimeout }, false)},
		{env: "TERRA_RETRIES", usage: "retries of a Terra call that failed with 429, 5xx or no answer (0: none)", set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 10 {
				return fmt.Errorf("want a number from 0 to 10, got %q", v)
			}
			c.TerraRetries = n
			return nil
		}},
		{env: "AUTH_JWT_SECRET", usage: "HS256 secret of end-user tokens", secret: true, set: str(func(c *Config) *string { return &c.AuthJWTSecret })},
		{env: "AUTH_JWKS_URL", usage: "JWKS URL of the identity provider whose RS256/ES256 tokens are accepted", set: str(func(c *Config) *string { return &c.AuthJWKSURL })},
		{env: "AUTH_SUBJECT_CLAIM", usage: "token claim that names the end user (default sub)", set: str(func(c *Config) *string { return &c.AuthSubjectClaim })},
		{env: "SERVICE_API_KEYS", usage: "API keys of the app's own backend, comma-separated name:key pairs", secret: true, set: func(c *Config, v string) error {
			c.ServiceAPIKeys = auth.ParseServiceKeys(v)
			return nil
		}},
		{env: "ENV", usage: "production: playground off unless PLAYGROUND=true, error details hidden, unsafe settings refused", set: str(func(c *Config) *string { return &c.Env })},
		{env: "MAX_BODY_BYTES", usage: "largest GraphQL request body, in bytes", set: func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1024 || n > 64<<20 {
				return fmt.Errorf("want a number of bytes from 1024 to 67108864, got %q", v)
			}
			c.MaxBodyBytes = n
			return nil
		}},
		{env: "WEBHOOK_MAX_BYTES", usage: "largest Terra webhook body, in bytes (streamed, never held whole); larger ones get 413", set: func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1<<20 || n > 1<<34 {
				return fmt.Errorf("want a number of bytes from 1048576 to 17179869184, got %q", v)
			}
			c.WebhookMaxBytes = n
			return nil
		}},
		{env: "BODY_IDLE_TIMEOUT", usage: "a request body that sends nothing for this long is cut with 408, e.g. 10s", set: duration(func(c *Config) *time.Duration { return &c.BodyIdleTimeout }, false)},
		{env: "GRAPHQL_BODY_TIMEOUT", usage: "the longest a whole /graphql request body may take to arrive, e.g. 30s", set: duration(func(c *Config) *time.Duration { return &c.GraphQLBodyTimeout }, false)},
		{env: "RATE_LIMIT_USER", usage: "requests per end user, e.g. 120/m (off: no limit)", set: rate(func(c *Config) *limit.Rate { return &c.RateLimitUser })},
		{env: "RATE_LIMIT_IP", usage: "requests per client IP, e.g. 600/m (off: no limit)", set: rate(func(c *Config) *limit.Rate { return &c.RateLimitIP })},
		{env: "RATE_LIMIT_CREATE_SESSION", usage: "createWidgetSession calls per end user, e.g. 10/m (each costs a Terra call)", set: rate(func(c *Config) *limit.Rate { return &c.RateLimitCreateSession })},
		{env: "RATE_LIMIT_TERRA_CALLS", usage: "calls of the mutations that call Terra (createWidgetSession, syncConnections, disconnectUser) per end user, together, e.g. 30/m", set: rate(func(c *Config) *limit.Rate { return &c.RateLimitTerraCalls })},
		{env: "RATE_LIMIT_SERVICE", usage: "operations per service key, whoever it acts for, e.g. 600/m (off: no limit)", set: rate(func(c *Config) *limit.Rate { return &c.RateLimitService })},
		{env: "TRUSTED_PROXIES", usage: "IPs or CIDRs of proxies whose X-Forwarded-For is believed", set: func(c *Config, v string) (err error) {
			c.TrustedProxies, err = clientip.Parse(v)
			return err
		}},
		{env: "WEBHOOK_ALLOWED_IPS", usage: "CIDRs allowed to post webhooks (empty: any, signatures still required)", set: func(c *Config, v string) (err error) {
			c.WebhookAllowedIPs, err = clientip.ParseAllowList(v)
			return err
		}},
		{env: "AUTH_ISSUER", usage: "required token issuer (iss), when set", set: str(func(c *Config) *string { return &c.AuthIssuer })},
		{env: "AUTH_AUDIENCE", usage: "required token audience (aud), when set", set: str(func(c *Config) *string { return &c.AuthAudience })},
		{env: "CORS_ALLOWED_ORIGINS", usage: "comma-separated origins allowed to call the API from a browser", set: func(c *Config, v string) error {
			origins, err := parseOrigins(v)
			c.CORSAllowedOrigins = origins
			return err
		}},
		{env: "ALLOWED_REDIRECT_URLS", usage: "comma-separated URL prefixes allowed as widget redirects (default: the CORS origins)", set: func(c *Config, v string) error {
			if strings.TrimSpace(v) == "" {
				c.AllowedRedirectURLs = nil
				return nil
			}
			a, err := redirect.Parse(v)
			c.AllowedRedirectURLs = a
			return err
		}},
		{env: "DEBUG_PPROF", usage: "serve Go's profiler at /debug/pprof/ on METRICS_ADDR (required: never on the public address)", set: boolean(func(c *Config) *bool { return &c.DebugPprof })},
		{env: "METRICS_ADDR", usage: "serve Prometheus metrics at /metrics on this address instead of ADDR, e.g. 127.0.0.1:9100", set: str(func(c *Config) *string { return &c.MetricsAddr })},
		// The endpoints may carry a collector's credentials in them, so they are never printed.
		{env: "OTEL_EXPORTER_OTLP_ENDPOINT", usage: "OpenTelemetry collector base URL (OTLP/HTTP) to send traces to; unset: no tracing", secret: true, set: str(func(c *Config) *string { return &c.OTelEndpoint })},
		{env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", usage: "full OTLP/HTTP traces URL, used instead of the base endpoint", secret: true, set: str(func(c *Config) *string { return &c.OTelTracesEndpoint })},
		{env: "OTEL_SDK_DISABLED", usage: "true turns tracing off whatever endpoint is set", set: boolean(func(c *Config) *bool { return &c.OTelSDKDisabled })},
		{env: "SHUTDOWN_TIMEOUT", usage: "how long in-flight requests may take to finish on SIGTERM, e.g. 10s", set: duration(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, false)},
		{env: "SYNC_INTERVAL", usage: "period of the sweep that reconciles every connection with Terra's user list, e.g. 6h; 0 turns it off", set: duration(func(c *Config) *time.Duration { return &c.SyncInterval }, true)},
		{env: "PROVIDERS_TTL", usage: "how long Terra's provider list is cached, e.g. 1h", set: duration(func(c *Config) *time.Duration { return &c.ProvidersTTL }, false)},
		{env: "TRUSTED_DOCUMENTS", usage: "path of the app's persisted-documents.json (graphql-codegen), or several comma-separated: only their documents run", set: func(c *Config, v string) (err error) {
			c.TrustedDocuments, err = trusted.Load(v)
			return err
		}},
		{env: "TRUSTED_DOCUMENTS_MODE", usage: "enforce: refuse documents not in TRUSTED_DOCUMENTS; allow-unlisted: run and count them while rolling out", set: func(c *Config, v string) (err error) {
			c.trustedModeSet = true
			c.TrustedDocumentsMode, err = trusted.ParseMode(v)
			return err
		}},
		{env: "PLAYGROUND", usage: "serve the GraphQL playground at / and allow introspection", set: func(c *Config, v string) error {
			c.playgroundSet = true
			return boolean(func(c *Config) *bool { return &c.Playground })(c, v)
		}},
		{env: "RELAY_DESTINATIONS", usage: `JSON array of the app's backends Terra's events are relayed to: [{"name","url","events","secret"}]`, secret: true, set: func(c *Config, v string) (err error) {
			c.RelayDestinations, err = relay.ParseDestinations(v)
			return err
		}},
		{env: "RELAY_TIMEOUT", usage: "how long a relay destination has to answer 2xx, e.g. 15s", set: duration(func(c *Config) *time.Duration { return &c.RelayTimeout }, false)},
		{env: "RELAY_RETRY_SCHEDULE", usage: "waits before each retry of a relay delivery, comma-separated, e.g. 5s,5m,30m,2h,5h,10h,10h", set: func(c *Config, v string) (err error) {
			c.RelayRetrySchedule, err = relay.ParseSchedule(v)
			return err
		}},
		{env: "BACKFILL_DAYS", usage: "days of history asked of Terra for each new connection, delivered through the webhooks (0: none)", set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 36500 {
				return fmt.Errorf("want a number of days from 0 to 36500, got %q", v)
			}
			c.BackfillDays = n
			return nil
		}},
		{env: "BACKFILL_TYPES", usage: "Terra data types of that history, comma-separated: " + strings.Join(terra.HistoryTypes, ","), set: func(c *Config, v string) error {
			var types []string
			for typ := range strings.SplitSeq(v, ",") {
				typ = strings.TrimSpace(typ)
				if typ == "" || slices.Contains(types, typ) {
					continue
				}
				if !slices.Contains(terra.HistoryTypes, typ) {
					return fmt.Errorf("%q is not one of %s", typ, strings.Join(terra.HistoryTypes, ","))
				}
				types = append(types, typ)
			}
			if len(types) == 0 {
				return fmt.Errorf("want at least one of %s", strings.Join(terra.HistoryTypes, ","))
			}
			c.BackfillTypes = types
			return nil
		}},
		{env: "RELAY_RETENTION", usage: "how long a dead relay delivery keeps the event's body for a replay, e.g. 168h", set: duration(func(c *Config) *time.Duration { return &c.RelayRetention }, false)},
		{env: "LOG_LEVEL", usage: "debug, info, warn or error", set: str(func(c *Config) *string { return &c.LogLevel })},
		{env: "LOG_FORMAT", usage: "json or text", set: str(func(c *Config) *string { return &c.LogFormat })},
	}
}

// rate parses a rate-limit setting.
func rate(p func(*Config) *limit.Rate) func(*Config, string) error {
	return func(c *Config, v string) (err error) {
		*p(c), err = limit.NewRate(v)
		return err
	}
}

// boolean parses a true/false setting.
func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*p(c) = b
		return nil
	}
}

// duration parses a duration setting; zeroOK admits 0 (meaning off).
func duration(p func(*Config) *time.Duration, zeroOK bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if v == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			return fmt.Errorf("want a positive duration such as 10s, got %q", v)
		}
		*p(c) = d
		return nil
	}
}

// FlagName is the command-line flag for an environment variable: ADDR -> -addr,
// TERRA_API_KEY -> -terra-api-key.
func FlagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(env), "_", "-")
}

// Load reads the configuration: defaults, then the environment, then flags (which win).
// It does not validate; call Validate.
func Load(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	c := Config{
		Addr:            DefaultAddr,
		DatabaseURL:     DefaultDatabaseURL,
		DBMaxConns:      10,
		MigrateOnStart:  true,
		TerraAPIURL:     DefaultTerraAPI,
		TerraWidgetURL:  DefaultTerraWidget,
		TerraTimeout:    DefaultTerraTimeout,
		TerraRetries:    DefaultTerraRetries,
		SyncInterval:    6 * time.Hour,
		ShutdownTimeout: 10 * time.Second,
		ProvidersTTL:    time.Hour,
		Playground:      true,
		MaxBodyBytes:    1 << 20,
		WebhookMaxBytes: 64 << 20,
		// Terra and well-behaved clients send a body without pausing; a pause this long is
		// a connection being held open.
		BodyIdleTimeout:    10 * time.Second,
		GraphQLBodyTimeout: 30 * time.Second,
		RateLimitUser:      limit.MustRate("300/m"),
		RateLimitIP:        limit.MustRate("1200/m"),
		// Each session costs a Terra call; a person needs a handful a minute at most.
		RateLimitCreateSession: limit.MustRate("20/m"),
		// Terra's allowance is the account's, shared by every end user: a person syncing,
		// connecting and disconnecting needs far less than this.
		RateLimitTerraCalls: limit.MustRate("30/m"),
		// A backend serves many end users, each also limited on their own; this bounds
		// the backend as a whole, at twice what one client address may send.
		RateLimitService: limit.MustRate("600/m"),
		LogLevel:         "info",
		LogFormat:        "json",
		RelayTimeout:     15 * time.Second,
		// Svix's schedule, which Standard Webhooks consumers expect.
		RelayRetrySchedule: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour},
		RelayRetention:     168 * time.Hour,
		BackfillTypes:      []string{"activity", "sleep", "daily", "body"},
	}
	var errs []error
	for _, s := range settings() {
		if v := getenv(s.env); v != "" {
			if err := s.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.env, err))
			}
		}
	}

	fs := flag.NewFlagSet("terragate", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.BoolVar(&c.Demo, "demo", false, "run the whole loop on this machine: the Terra emulator on the same port, no Terra account needed")
	for _, s := range settings() {
		usage := s.usage + " (env " + s.env + ")"
		fs.Func(FlagName(s.env), usage, func(v string) error { return s.set(&c, v) })
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	if c.Demo && !c.addrSet {
		c.Addr = DefaultDemoAddr
	}
	// Production's own default, unless PLAYGROUND says otherwise.
	if c.Production() && !c.playgroundSet {
		c.Playground = false
	}
	return c, errors.Join(errs...)
}

// Validate checks the configuration, and never changes it. Outside the demo every secret is
// required: the server never starts without a webhook secret, so it cannot fail open.
func (c Config) Validate() error {
	var errs []error
	if !c.Demo {
		for _, s := range []struct{ env, v string }{
			{"TERRA_DEV_ID", c.TerraDevID},
			{"TERRA_API_KEY", c.TerraAPIKey},
			{"TERRA_WEBHOOK_SECRET", strings.Join(c.TerraWebhookSecrets, ",")},
			{"AUTH_JWT_SECRET or AUTH_JWKS_URL", c.AuthJWTSecret + c.AuthJWKSURL},
		} {
			if strings.Trim(s.v, ", \t") == "" { // a list of nothing is nothing
				errs = append(errs, fmt.Errorf("%s is required (environment variable or -%s flag)", s.env, FlagName(strings.Fields(s.env)[0])))
			}
		}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("ADDR: want host:port such as :8080, got %q", c.Addr))
	}
	for _, u := range []struct{ env, v string }{{"TERRA_API_URL", c.TerraAPIURL}, {"TERRA_WIDGET_URL", c.TerraWidgetURL}} {
		if err := checkBaseURL(u.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.env, err))
		}
	}
	if c.trustedModeSet && c.TrustedDocuments == nil {
		errs = append(errs, errors.New("TRUSTED_DOCUMENTS_MODE: needs TRUSTED_DOCUMENTS, the manifest of the app's documents"))
	}
	if c.DebugPprof && c.MetricsAddr == "" {
		errs = append(errs, errors.New("DEBUG_PPROF: needs METRICS_ADDR, a private address: the profiler is never served on ADDR"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL: want debug, info, warn or error, got %q", c.LogLevel))
	}
	switch c.Env {
	case "", "development":
	case "production":
		errs = append(errs, c.production()...)
	default:
		errs = append(errs, fmt.Errorf("ENV: want production or development, got %q", c.Env))
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT: want json or text, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

// Production reports whether ENV=production.
func (c *Config) Production() bool { return c.Env == "production" }

// MetricsOnAddr reports whether /metrics is served on ADDR beside the API. Metrics name
// operations, error codes and traffic, which the public network has no business reading, so
// production serves them only on METRICS_ADDR.
func (c *Config) MetricsOnAddr() bool { return c.MetricsAddr == "" && !c.Production() }

// ExposedDemo reports whether demo mode listens beyond this machine, where anyone who can
// reach it gets a working token.
func (c *Config) ExposedDemo() bool {
	if !c.Demo {
		return false
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// placeholders are values seen in examples and tutorials; production refuses them.
var placeholders = []string{"secret", "changeme", "change-me", "password", "test", "demo", "example", "xxx", "..."}

// production refuses what is unsafe in production.
func (c Config) production() []error {
	var errs []error
	if c.Demo {
		errs = append(errs, errors.New("ENV=production: demo mode is for trying terragate, not for production"))
	}
	if len(c.CORSAllowedOrigins) == 0 {
		errs = append(errs, errors.New("ENV=production: CORS_ALLOWED_ORIGINS must list the app's origins"))
	}
	weak := func(v string, minLen int) bool {
		l := strings.ToLower(strings.TrimSpace(v))
		for _, p := range placeholders {
			if strings.Contains(l, p) {
				return true
			}
		}
		return len(l) < minLen
	}
	for _, d := range c.RelayDestinations {
		if d.URL.Scheme != "https" {
			errs = append(errs, fmt.Errorf("ENV=production: RELAY_DESTINATIONS: destination %q: url: want https", d.Name))
		}
	}
	if c.AuthJWTSecret != "" && weak(c.AuthJWTSecret, 32) {
		errs = append(errs, errors.New("ENV=production: AUTH_JWT_SECRET must be at least 32 random characters, not an example value"))
	}
	for _, s := range c.TerraWebhookSecrets {
		if weak(s, 16) {
			errs = append(errs, errors.New("ENV=production: every TERRA_WEBHOOK_SECRET must be the real signing secret (16 characters or more), not an example value"))
			break
		}
	}
	return errs
}

// LogValue lists the settings for the start-up log line, with secrets shown only as set or
// unset.
func (c Config) LogValue() slog.Value {
	mark := func(v string) string {
		if v == "" {
			return "unset"
		}
		return "set"
	}
	return slog.GroupValue(
		slog.Bool("demo", c.Demo),
		slog.String("addr", c.Addr),
		slog.String("public_url", c.PublicURL),
		slog.String("database", databaseKind(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.Bool("migrate_on_start", c.MigrateOnStart),
		slog.String("terra_api_url", c.TerraAPIURL),
		slog.String("terra_widget_url", c.TerraWidgetURL),
		slog.Duration("terra_timeout", c.TerraTimeout),
		slog.Int("terra_retries", c.TerraRetries),
		slog.String("terra_dev_id", mark(c.TerraDevID)),
		slog.String("terra_api_key", mark(c.TerraAPIKey)),
		slog.String("terra_webhook_secret", mark(strings.Join(c.TerraWebhookSecrets, ""))),
		slog.String("auth_jwt_secret", mark(c.AuthJWTSecret)),
		slog.String("auth_jwks_url", c.AuthJWKSURL),
		slog.Int("service_api_keys", len(c.ServiceAPIKeys)),
		slog.String("env", c.Env),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.Int64("webhook_max_bytes", c.WebhookMaxBytes),
		slog.Duration("body_idle_timeout", c.BodyIdleTimeout),
		slog.Duration("graphql_body_timeout", c.GraphQLBodyTimeout),
		slog.String("rate_limit_user", c.RateLimitUser.String()),
		slog.String("rate_limit_ip", c.RateLimitIP.String()),
		slog.String("rate_limit_create_session", c.RateLimitCreateSession.String()),
		slog.String("rate_limit_terra_calls", c.RateLimitTerraCalls.String()),
		slog.String("rate_limit_service", c.RateLimitService.String()),
		slog.String("trusted_proxies", c.TrustedProxies.String()),
		slog.String("webhook_allowed_ips", c.WebhookAllowedIPs.String()),
		slog.String("auth_issuer", c.AuthIssuer),
		slog.String("auth_audience", c.AuthAudience),
		slog.Any("cors_allowed_origins", c.CORSAllowedOrigins),
		slog.String("allowed_redirect_urls", c.AllowedRedirectURLs.String()),
		slog.Duration("sync_interval", c.SyncInterval),
		slog.Duration("providers_ttl", c.ProvidersTTL),
		slog.Int("trusted_documents", c.TrustedDocuments.Len()),
		slog.String("trusted_documents_mode", c.trustedDocumentsMode()),
		slog.Bool("playground", c.Playground),
		slog.Bool("debug_pprof", c.DebugPprof),
		slog.String("otel_exporter_otlp_endpoint", mark(c.OTelEndpoint+c.OTelTracesEndpoint)),
		slog.Bool("otel_sdk_disabled", c.OTelSDKDisabled),
		slog.Any("relay_destinations", c.relayDestinations()),
		slog.Duration("relay_timeout", c.RelayTimeout),
		slog.Any("relay_retry_schedule", c.RelayRetrySchedule),
		slog.Duration("relay_retention", c.RelayRetention),
		slog.Int("backfill_days", c.BackfillDays),
		slog.Any("backfill_types", c.BackfillTypes),
	)
}

// relayDestinations shows each relay destination as name, URL and events: never its secret.
func (c Config) relayDestinations() []string {
	out := []string{}
	for _, d := range c.RelayDestinations {
		out = append(out, d.String())
	}
	return out
}

// trustedDocumentsMode is the mode in effect, "off" without a manifest.
func (c Config) trustedDocumentsMode() string {
	if c.TrustedDocuments == nil {
		return "off"
	}
	return c.TrustedDocumentsMode.String()
}

// OTelEnv answers the OpenTelemetry variables from the configuration, for tracing.Setup,
// which speaks in OpenTelemetry's variable names.
func (c Config) OTelEnv(name string) string {
	switch name {
	case "OTEL_EXPORTER_OTLP_ENDPOINT":
		return c.OTelEndpoint
	case "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
		return c.OTelTracesEndpoint
	case "OTEL_SDK_DISABLED":
		return strconv.FormatBool(c.OTelSDKDisabled)
	}
	return ""
}

// databaseKind names the engine of a database URL without echoing it: a PostgreSQL URL
// may hold a password.
func databaseKind(u string) string {
	if i := strings.Index(u, ":"); i > 0 {
		return u[:i]
	}
	return "sqlite" // a bare path
}

func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want an absolute http(s) URL, got %q", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("want a base URL without query, fragment or credentials, got %q", raw)
	}
	return nil
}

// parseOrigins splits a comma-separated origin list; each must be scheme://host[:port].
func parseOrigins(v string) ([]string, error) {
	var out []string
	var errs []error
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			errs = append(errs, fmt.Errorf("want origins such as https://app.example.com, got %q", o))
			continue
		}
		out = append(out, strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host))
	}
	return out, errors.Join(errs...)
}
