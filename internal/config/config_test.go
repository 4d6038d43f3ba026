package config

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
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
		"TERRA_TIMEOUT":        {"TERRA_TIMEOUT": "soon"},
		"PLAYGROUND":           {"PLAYGROUND": "maybe"},
		"CORS_ALLOWED_ORIGINS": {"CORS_ALLOWED_ORIGINS": "app.example.com"},
	} {
		if _, err := Load(nil, env(e), io.Discard); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	for name, mod := range map[string]func(*Config){
		"ADDR":          func(c *Config) { c.Addr = "8080" },
		"PUBLIC_URL":    func(c *Config) { c.PublicURL = "localhost:8080" },
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
