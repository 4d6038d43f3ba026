package config

import (
	"bytes"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/trusted"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

var required = map[string]string{
	"TERRA_DEV_ID": "dev", "TERRA_API_KEY": "key-123456", "TERRA_WEBHOOK_SECRET": "whsec-123456", "AUTH_JWT_SECRET": "jwt-123456",
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(required), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.DatabaseURL != "sqlite:terragate.db" || c.TerraAPIURL != "https://api.tryterra.co/v2" ||
		c.TerraWidgetURL != "https://access.tryterra.co/api/widget/session" || c.TerraTimeout != 10*time.Second || !c.Playground {
		t.Errorf("defaults = %+v", c)
	}
	// The README documents these; a zero here once turned every Terra retry off.
	if c.SyncInterval != 6*time.Hour || c.ProvidersTTL != time.Hour || c.TerraRetries != 2 {
		t.Errorf("SYNC_INTERVAL = %v, PROVIDERS_TTL = %v, TERRA_RETRIES = %d; want 6h, 1h, 2", c.SyncInterval, c.ProvidersTTL, c.TerraRetries)
	}
	if c.RateLimitUser.String() != "300/m" || c.RateLimitIP.String() != "1200/m" || c.RateLimitCreateSession.String() != "20/m" ||
		c.RateLimitTerraCalls.String() != "30/m" || c.RateLimitService.String() != "600/m" {
		t.Errorf("rate limits = %q %q %q %q %q", c.RateLimitUser, c.RateLimitIP, c.RateLimitCreateSession, c.RateLimitTerraCalls, c.RateLimitService)
	}
}

// Every rate limit is read from its variable and its flag, and parsed when it is read.
func TestRateLimits(t *testing.T) {
	e := map[string]string{"RATE_LIMIT_TERRA_CALLS": "5/m", "RATE_LIMIT_SERVICE": "off"}
	for k, v := range required {
		e[k] = v
	}
	c, err := Load([]string{"-rate-limit-service", "100/s"}, env(e), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.RateLimitTerraCalls.String() != "5/m" || c.RateLimitService.String() != "100/s" || !c.RateLimitService.On() {
		t.Errorf("RATE_LIMIT_TERRA_CALLS = %q, RATE_LIMIT_SERVICE = %q", c.RateLimitTerraCalls, c.RateLimitService)
	}
	for _, name := range []string{"RATE_LIMIT_USER", "RATE_LIMIT_IP", "RATE_LIMIT_CREATE_SESSION", "RATE_LIMIT_TERRA_CALLS", "RATE_LIMIT_SERVICE"} {
		e := map[string]string{name: "lots"}
		for k, v := range required {
			e[k] = v
		}
		if _, err := Load(nil, env(e), io.Discard); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=lots: err = %v", name, err)
		}
	}
}

// Zero is a real choice for the settings whose default is not zero: it must not be taken
// for "unset".
func TestZeroOverridesDefault(t *testing.T) {
	e := map[string]string{"TERRA_RETRIES": "0", "SYNC_INTERVAL": "0"}
	for k, v := range required {
		e[k] = v
	}
	c, err := Load(nil, env(e), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.TerraRetries != 0 || c.SyncInterval != 0 {
		t.Errorf("TERRA_RETRIES = %d, SYNC_INTERVAL = %v; want both 0", c.TerraRetries, c.SyncInterval)
	}
	c, err = Load([]string{"-terra-retries", "5"}, env(required), io.Discard)
	if err != nil || c.TerraRetries != 5 {
		t.Errorf("-terra-retries 5: %d, %v", c.TerraRetries, err)
	}
	if _, err := Load(nil, env(map[string]string{"TERRA_RETRIES": "11"}), io.Discard); err == nil || !strings.Contains(err.Error(), "TERRA_RETRIES") {
		t.Errorf("TERRA_RETRIES=11: err = %v", err)
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	e := map[string]string{"ADDR": ":1", "TERRA_TIMEOUT": "3s", "CORS_ALLOWED_ORIGINS": "https://A.example.com, http://localhost:5173/"}
	for k, v := range required {
		e[k] = v
	}
	c, err := Load([]string{"-addr", ":2", "-playground=false", "-terra-api-key", "flag-key"}, env(e), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":2" || c.TerraTimeout != 3*time.Second || c.Playground || c.TerraAPIKey != "flag-key" {
		t.Errorf("config = %+v", c)
	}
	if strings.Join(c.CORSAllowedOrigins, " ") != "https://a.example.com http://localhost:5173" {
		t.Errorf("origins = %q", c.CORSAllowedOrigins)
	}
}

func TestBadValues(t *testing.T) {
	for name, e := range map[string]map[string]string{
		"TERRA_TIMEOUT":         {"TERRA_TIMEOUT": "soon"},
		"PLAYGROUND":            {"PLAYGROUND": "maybe"},
		"CORS_ALLOWED_ORIGINS":  {"CORS_ALLOWED_ORIGINS": "app.example.com"},
		"PUBLIC_URL":            {"PUBLIC_URL": "localhost:8080"},
		"TRUSTED_PROXIES":       {"TRUSTED_PROXIES": "10.0.0.0/33"},
		"WEBHOOK_ALLOWED_IPS":   {"WEBHOOK_ALLOWED_IPS": "terra.example.com"},
		"ALLOWED_REDIRECT_URLS": {"ALLOWED_REDIRECT_URLS": "javascript:alert(1)"},
	} {
		if _, err := Load(nil, env(e), io.Discard); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	for name, mod := range map[string]func(*Config){
		"ADDR":          func(c *Config) { c.Addr = "8080" },
		"TERRA_API_URL": func(c *Config) { c.TerraAPIURL = "ftp://x" },
		"LOG_LEVEL":     func(c *Config) { c.LogLevel = "loud" },
		"LOG_FORMAT":    func(c *Config) { c.LogFormat = "xml" },
	} {
		c, _ := Load(nil, env(required), io.Discard)
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := Load([]string{"stray"}, env(required), io.Discard); err == nil {
		t.Error("stray argument accepted")
	}
}

func TestRequiredOutsideDemo(t *testing.T) {
	c, _ := Load(nil, env(nil), io.Discard)
	err := c.Validate()
	for _, name := range []string{"TERRA_DEV_ID", "TERRA_API_KEY", "TERRA_WEBHOOK_SECRET", "AUTH_JWT_SECRET"} {
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "-"+FlagName(name)) {
			t.Errorf("err = %v, want it to name %s and its flag", err, name)
		}
	}
	c, _ = Load([]string{"-demo"}, env(nil), io.Discard)
	if err := c.Validate(); err != nil {
		t.Errorf("demo needs no secrets: %v", err)
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	e := map[string]string{"DATABASE_URL": "postgres://user:dbpass@host/db"}
	for k, v := range required {
		e[k] = v
	}
	c, _ := Load(nil, env(e), io.Discard)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", c)
	for _, secret := range []string{"key-123456", "whsec-123456", "jwt-123456", "dbpass"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log line shows %q: %s", secret, buf.String())
		}
	}
	if !strings.Contains(buf.String(), `"terra_api_key":"set"`) {
		t.Errorf("log line does not say the key is set: %s", buf.String())
	}
}

func TestProduction(t *testing.T) {
	strong := map[string]string{
		"TERRA_DEV_ID": "dev", "TERRA_API_KEY": "key-123456", "TERRA_WEBHOOK_SECRET": "whsec_9f8e7d6c5b4a3928",
		"AUTH_JWT_SECRET": "Zq3v8Lw1Rt6Yp0Ns4Km7Hb2Jd5Gf9Xc1", "ENV": "production", "CORS_ALLOWED_ORIGINS": "https://app.example.com",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range strong {
			m[a] = b
		}
		m[k] = v
		return m
	}
	c, _ := Load(nil, env(strong), io.Discard)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Playground {
		t.Error("production left the playground on without PLAYGROUND=true")
	}
	c, _ = Load(nil, env(with("PLAYGROUND", "true")), io.Discard)
	if err := c.Validate(); err != nil || !c.Playground {
		t.Errorf("PLAYGROUND=true in production: %v, %v", c.Playground, err)
	}
	for name, e := range map[string]map[string]string{
		"no origins":          with("CORS_ALLOWED_ORIGINS", ""),
		"example jwt secret":  with("AUTH_JWT_SECRET", "my-super-secret-key-for-the-demo-app"),
		"short jwt secret":    with("AUTH_JWT_SECRET", "short"),
		"example webhook":     with("TERRA_WEBHOOK_SECRET", "whsec_9f8e7d6c5b4a3928,changeme"),
		"unknown environment": with("ENV", "prod"),
	} {
		c, _ := Load(nil, env(e), io.Discard)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), e["AUTH_JWT_SECRET"]) || strings.Contains(err.Error(), "changeme") {
			t.Errorf("%s: the error repeats a secret: %v", name, err)
		}
	}
	c, _ = Load([]string{"-demo"}, env(strong), io.Discard)
	if err := c.Validate(); err == nil {
		t.Error("demo mode accepted in production")
	}
}

func TestBodyTimeouts(t *testing.T) {
	c, err := Load(nil, env(required), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.BodyIdleTimeout != 10*time.Second || c.GraphQLBodyTimeout != 30*time.Second {
		t.Errorf("BODY_IDLE_TIMEOUT = %v, GRAPHQL_BODY_TIMEOUT = %v; want 10s, 30s", c.BodyIdleTimeout, c.GraphQLBodyTimeout)
	}
	c, err = Load([]string{"-body-idle-timeout", "2s", "-graphql-body-timeout", "5s"}, env(required), io.Discard)
	if err != nil || c.BodyIdleTimeout != 2*time.Second || c.GraphQLBodyTimeout != 5*time.Second {
		t.Errorf("flags: %v %v %v", c.BodyIdleTimeout, c.GraphQLBodyTimeout, err)
	}
	// Zero would mean a body may stall for ever, the very thing the setting prevents.
	for _, k := range []string{"BODY_IDLE_TIMEOUT", "GRAPHQL_BODY_TIMEOUT"} {
		if _, err := Load(nil, env(map[string]string{k: "0"}), io.Discard); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=0: err = %v", k, err)
		}
	}
}

// The demo hands a working token to whoever asks: it stays on loopback unless ADDR says
// otherwise.
func TestDemoAddr(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		addr    string
		exposed bool
	}{
		{name: "demo default", args: []string{"-demo"}, addr: "127.0.0.1:8080"},
		{name: "demo, every interface by flag", args: []string{"-demo", "-addr", ":9000"}, addr: ":9000", exposed: true},
		{name: "demo, every interface by env", args: []string{"-demo"}, env: map[string]string{"ADDR": "0.0.0.0:8080"}, addr: "0.0.0.0:8080", exposed: true},
		{name: "demo, another loopback", args: []string{"-demo", "-addr", "[::1]:0"}, addr: "[::1]:0"},
		{name: "demo, localhost", args: []string{"-demo", "-addr", "localhost:0"}, addr: "localhost:0"},
		{name: "demo, a LAN address", args: []string{"-demo", "-addr", "192.0.2.10:8080"}, addr: "192.0.2.10:8080", exposed: true},
		{name: "not a demo", env: required, addr: ":8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Addr != tt.addr || c.ExposedDemo() != tt.exposed {
				t.Errorf("addr %q exposed %v, want %q %v", c.Addr, c.ExposedDemo(), tt.addr, tt.exposed)
			}
		})
	}
}

func TestMetricsOnAddr(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{env: map[string]string{}, want: true},
		{env: map[string]string{"METRICS_ADDR": "127.0.0.1:9100"}, want: false},
		{env: map[string]string{"ENV": "production"}, want: false},
		{env: map[string]string{"ENV": "production", "METRICS_ADDR": "127.0.0.1:9100"}, want: false},
	}
	for _, tt := range tests {
		e := maps.Clone(required)
		maps.Copy(e, tt.env)
		c, err := Load(nil, env(e), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.MetricsOnAddr(); got != tt.want {
			t.Errorf("%v: MetricsOnAddr = %v, want %v", tt.env, got, tt.want)
		}
	}
}

// Load hands over parsed values; Validate only checks them.
func TestParsedValues(t *testing.T) {
	e := maps.Clone(required)
	maps.Copy(e, map[string]string{
		"PUBLIC_URL": "https://gw.example.com/", "TRUSTED_PROXIES": "10.0.0.0/8", "WEBHOOK_ALLOWED_IPS": "192.0.2.0/24",
		"ALLOWED_REDIRECT_URLS": "https://app.example.com/done", "RATE_LIMIT_IP": "off",
	})
	c, err := Load(nil, env(e), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://gw.example.com" || c.TrustedProxies.String() != "10.0.0.0/8" ||
		c.WebhookAllowedIPs.String() != "192.0.2.0/24" || !c.AllowedRedirectURLs.Allows("https://app.example.com/done/x") ||
		c.RateLimitIP.On() || c.RateLimitIP.Limiter() != nil {
		t.Errorf("parsed = %+v", c)
	}
	c2, _ := Load(nil, env(required), io.Discard)
	if c2.AllowedRedirectURLs != nil {
		t.Errorf("ALLOWED_REDIRECT_URLS unset parsed to %v, want nil (the CORS origins apply)", c2.AllowedRedirectURLs)
	}
}

func TestTrustedDocuments(t *testing.T) {
	const doc = "query Providers { providers { name } }"
	dir := t.TempDir()
	good := filepath.Join(dir, "persisted-documents.json")
	if err := os.WriteFile(good, []byte(`{"sha256:`+trusted.Hash(doc)+`": "`+doc+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	with := func(kv ...string) map[string]string {
		e := maps.Clone(required)
		for i := 0; i < len(kv); i += 2 {
			e[kv[i]] = kv[i+1]
		}
		return e
	}

	c, err := Load(nil, env(with("TRUSTED_DOCUMENTS", good)), io.Discard)
	if err != nil || c.Validate() != nil {
		t.Fatalf("Load: %v; Validate: %v", err, c.Validate())
	}
	if got, ok := c.TrustedDocuments.Lookup(trusted.Hash(doc)); !ok || got != doc || c.TrustedDocumentsMode != trusted.Enforce {
		t.Errorf("documents %v, mode %v: want the manifest's, enforced", c.TrustedDocuments, c.TrustedDocumentsMode)
	}
	c, err = Load([]string{"-trusted-documents-mode", "allow-unlisted"}, env(with("TRUSTED_DOCUMENTS", good)), io.Discard)
	if err != nil || c.TrustedDocumentsMode != trusted.AllowUnlisted {
		t.Errorf("mode %v, err %v", c.TrustedDocumentsMode, err)
	}
	if c, _ := Load(nil, env(required), io.Discard); c.TrustedDocuments != nil {
		t.Error("documents without TRUSTED_DOCUMENTS")
	}

	// A manifest that does not check out stops the start, naming the file and the entry.
	bad := filepath.Join(dir, "edited.json")
	if err := os.WriteFile(bad, []byte(`{"sha256:`+trusted.Hash(doc)+`": "query { connectedUsers { userId } }"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(nil, env(with("TRUSTED_DOCUMENTS", bad)), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TRUSTED_DOCUMENTS") || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), trusted.Hash(doc)) {
		t.Errorf("an edited manifest: %v", err)
	}
	if _, err := Load(nil, env(with("TRUSTED_DOCUMENTS", good, "TRUSTED_DOCUMENTS_MODE", "off")), io.Discard); err == nil || !strings.Contains(err.Error(), "TRUSTED_DOCUMENTS_MODE") {
		t.Errorf("a bad mode: %v", err)
	}
	c, err = Load(nil, env(with("TRUSTED_DOCUMENTS_MODE", "enforce")), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "needs TRUSTED_DOCUMENTS") {
		t.Errorf("a mode without a manifest: %v", err)
	}
}

const relaySecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestRelay(t *testing.T) {
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(required)
		maps.Copy(m, extra)
		return m
	}
	c, err := Load(nil, env(required), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RelayDestinations) != 0 || c.RelayTimeout != 15*time.Second || c.RelayRetention != 168*time.Hour ||
		len(c.RelayRetrySchedule) != 7 || c.RelayRetrySchedule[0] != 5*time.Second || c.RelayRetrySchedule[6] != 10*time.Hour {
		t.Errorf("defaults: destinations %v, timeout %v, retention %v, schedule %v", c.RelayDestinations, c.RelayTimeout, c.RelayRetention, c.RelayRetrySchedule)
	}
	dests := `[{"name":"backend","url":"http://127.0.0.1:9000/terra","events":["activity"],"secret":"` + relaySecret + `"}]`
	c, err = Load(nil, env(with(map[string]string{"RELAY_DESTINATIONS": dests, "RELAY_TIMEOUT": "2s", "RELAY_RETRY_SCHEDULE": "50ms,100ms", "RELAY_RETENTION": "1h"})), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.RelayDestinations) != 1 || c.RelayDestinations[0].Name != "backend" || !c.RelayDestinations[0].Wants("activity") ||
		c.RelayTimeout != 2*time.Second || c.RelayRetention != time.Hour || len(c.RelayRetrySchedule) != 2 || c.RelayRetrySchedule[1] != 100*time.Millisecond {
		t.Errorf("parsed: %+v %v %v %v", c.RelayDestinations, c.RelayTimeout, c.RelayRetention, c.RelayRetrySchedule)
	}

	// The start-up line names the destination, its URL and events, never the secret.
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", c)
	if strings.Contains(buf.String(), "MfKQ9r8G") {
		t.Errorf("log line shows the relay secret: %s", buf.String())
	}
	for _, want := range []string{"backend", "http://127.0.0.1:9000/terra", "activity"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log line does not show %q: %s", want, buf.String())
		}
	}

	// Invalid destinations refuse to start, naming the destination and the field.
	bad := `[{"name":"backend","url":"http://127.0.0.1:9000/terra","secret":"whsec_short"}]`
	_, err = Load(nil, env(with(map[string]string{"RELAY_DESTINATIONS": bad})), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "RELAY_DESTINATIONS") || !strings.Contains(err.Error(), `"backend"`) ||
		!strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "whsec_short") {
		t.Errorf("bad secret: %v", err)
	}
	for _, name := range []string{"RELAY_TIMEOUT", "RELAY_RETRY_SCHEDULE", "RELAY_RETENTION"} {
		if _, err := Load(nil, env(with(map[string]string{name: "soon"})), io.Discard); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=soon: %v", name, err)
		}
	}

	// Production wants https.
	prod := map[string]string{
		"TERRA_DEV_ID": "dev", "TERRA_API_KEY": "key-123456", "TERRA_WEBHOOK_SECRET": "whsec_9f8e7d6c5b4a3928",
		"AUTH_JWT_SECRET": "Zq3v8Lw1Rt6Yp0Ns4Km7Hb2Jd5Gf9Xc1", "ENV": "production", "CORS_ALLOWED_ORIGINS": "https://app.example.com",
		"RELAY_DESTINATIONS": dests,
	}
	c, err = Load(nil, env(prod), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `"backend"`) || !strings.Contains(err.Error(), "https") {
		t.Errorf("http destination in production: %v", err)
	}
	prod["RELAY_DESTINATIONS"] = strings.Replace(dests, "http://", "https://", 1)
	c, _ = Load(nil, env(prod), io.Discard)
	if err := c.Validate(); err != nil {
		t.Errorf("https destination in production: %v", err)
	}
}

func TestBackfill(t *testing.T) {
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(required)
		maps.Copy(m, extra)
		return m
	}
	c, err := Load(nil, env(required), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.BackfillDays != 0 || strings.Join(c.BackfillTypes, ",") != "activity,sleep,daily,body" {
		t.Errorf("defaults: %d %v", c.BackfillDays, c.BackfillTypes)
	}
	c, err = Load(nil, env(with(map[string]string{"BACKFILL_DAYS": "3650", "BACKFILL_TYPES": " sleep, nutrition "})), io.Discard)
	if err != nil || c.BackfillDays != 3650 || strings.Join(c.BackfillTypes, ",") != "sleep,nutrition" {
		t.Errorf("parsed: %d %v %v", c.BackfillDays, c.BackfillTypes, err)
	}
	for k, v := range map[string]string{"BACKFILL_DAYS": "-1", "BACKFILL_TYPES": "steps"} {
		if _, err := Load(nil, env(with(map[string]string{k: v})), io.Discard); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

func TestWebhookMaxBytes(t *testing.T) {
	c, err := Load(nil, env(required), io.Discard)
	if err != nil || c.WebhookMaxBytes != 64<<20 {
		t.Fatalf("default: %d, %v; want 67108864", c.WebhookMaxBytes, err)
	}
	m := maps.Clone(required)
	m["WEBHOOK_MAX_BYTES"] = "33554432"
	if c, err = Load(nil, env(m), io.Discard); err != nil || c.WebhookMaxBytes != 32<<20 {
		t.Errorf("33554432: %d, %v", c.WebhookMaxBytes, err)
	}
	for _, v := range []string{"1000", "big", "-1"} {
		m["WEBHOOK_MAX_BYTES"] = v
		if _, err := Load(nil, env(m), io.Discard); err == nil || !strings.Contains(err.Error(), "WEBHOOK_MAX_BYTES") {
			t.Errorf("%s: %v", v, err)
		}
	}
}
