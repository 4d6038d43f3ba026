package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef")
	otherSecret = []byte("fedcba9876543210fedcba9876543210")
	testNow     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func newTestVerifier(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	v.now = func() time.Time { return testNow }
	return v
}

func issue(t *testing.T, secret []byte, opts IssueOptions) string {
	t.Helper()
	if opts.Now.IsZero() {
		opts.Now = testNow
	}
	if opts.TTL == 0 {
		opts.TTL = time.Hour
	}
	tok, err := Issue(secret, opts)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

// sign makes a token with arbitrary claims and method, for the cases Issue
// deliberately cannot produce.
func sign(t *testing.T, method jwt.SigningMethod, claims jwt.Claims, key any) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "user-1",
		"iat": testNow.Unix(),
		"nbf": testNow.Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
}

// withClaim returns validClaims with key set to value, or removed when value
// is nil.
func withClaim(key string, value any) jwt.MapClaims {
	return withClaims(map[string]any{key: value})
}

func withClaims(changes map[string]any) jwt.MapClaims {
	c := validClaims()
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestNewVerifier(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"ok", Config{Secret: testSecret}, false},
		{"short secret accepted", Config{Secret: []byte("x")}, false},
		{"empty secret", Config{}, true},
		{"negative leeway", Config{Secret: testSecret, Leeway: -time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), string(tt.cfg.Secret)) && len(tt.cfg.Secret) > 0 {
				t.Fatalf("error %q reveals the secret", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	none := func() string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims()).
			SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	longSub := strings.Repeat("a", MaxSubjectLen+1)
	configured := Config{Issuer: "https://signin.example.com", Audience: "terragate"}

	tests := []struct {
		name   string
		cfg    Config
		token  string
		wantID string // empty means an error is expected
		reason string
	}{
		{name: "valid", token: issue(t, testSecret, IssueOptions{Subject: "user-1"}), wantID: "user-1"},
		{name: "subject trimmed", token: issue(t, testSecret, IssueOptions{Subject: "  user-1 "}), wantID: "user-1"},
		{name: "subject at limit", token: issue(t, testSecret, IssueOptions{Subject: longSub[1:]}), wantID: longSub[1:]},
		{name: "within leeway after exp", token: issue(t, testSecret, IssueOptions{Subject: "u", Now: testNow.Add(-time.Hour - 10*time.Second)}), wantID: "u"},
		{name: "within leeway before nbf", token: issue(t, testSecret, IssueOptions{Subject: "u", Now: testNow.Add(10 * time.Second)}), wantID: "u"},
		{name: "expired", token: issue(t, testSecret, IssueOptions{Subject: "u", Now: testNow.Add(-2 * time.Hour)}), reason: "token expired"},
		{name: "expired beyond custom leeway", cfg: Config{Leeway: time.Second}, token: issue(t, testSecret, IssueOptions{Subject: "u", Now: testNow.Add(-time.Hour - 10*time.Second)}), reason: "token expired"},
		{name: "not yet valid", token: issue(t, testSecret, IssueOptions{Subject: "u", Now: testNow.Add(time.Minute)}), reason: "token not valid yet"},
		{name: "missing exp", token: sign(t, jwt.SigningMethodHS256, withClaim("exp", nil), testSecret), reason: "token has no expiry"},
		{name: "forged", token: issue(t, otherSecret, IssueOptions{Subject: "u"}), reason: "token signature invalid"},
		{name: "tampered payload", token: tamper(t, issue(t, testSecret, IssueOptions{Subject: "u"})), reason: "token signature invalid"},
		{name: "alg none", token: none, reason: "token algorithm not allowed"},
		{name: "alg HS512", token: sign(t, jwt.SigningMethodHS512, validClaims(), testSecret), reason: "token algorithm not allowed"},
		{name: "alg HS384", token: sign(t, jwt.SigningMethodHS384, validClaims(), testSecret), reason: "token algorithm not allowed"},
		{name: "alg RS256", token: sign(t, jwt.SigningMethodRS256, validClaims(), rsaKey), reason: "token algorithm not allowed"},
		{name: "malformed", token: "not-a-token", reason: "token malformed"},
		{name: "empty", token: "", reason: "missing bearer token"},
		{name: "too long", token: strings.Repeat("a", maxTokenLen+1), reason: "token too long"},
		{name: "missing sub", token: sign(t, jwt.SigningMethodHS256, withClaim("sub", nil), testSecret), reason: "token has no subject"},
		{name: "blank sub", token: sign(t, jwt.SigningMethodHS256, withClaim("sub", "   "), testSecret), reason: "token has no subject"},
		{name: "sub too long", token: issue(t, testSecret, IssueOptions{Subject: longSub}), reason: "token subject too long"},
		{name: "sub with control character", token: issue(t, testSecret, IssueOptions{Subject: "a\nb"}), reason: "token subject invalid"},
		{name: "non-string sub", token: sign(t, jwt.SigningMethodHS256, withClaim("sub", 42), testSecret), reason: "token malformed"},
		{name: "issuer and audience match", cfg: configured, token: issue(t, testSecret, IssueOptions{Subject: "u", Issuer: configured.Issuer, Audience: configured.Audience}), wantID: "u"},
		{name: "audience among several", cfg: configured, token: sign(t, jwt.SigningMethodHS256, withClaims(map[string]any{"iss": configured.Issuer, "aud": []string{"other", "terragate"}}), testSecret), wantID: "user-1"},
		{name: "wrong issuer", cfg: configured, token: issue(t, testSecret, IssueOptions{Subject: "u", Issuer: "https://evil.example", Audience: configured.Audience}), reason: "issuer mismatch"},
		{name: "missing issuer", cfg: configured, token: issue(t, testSecret, IssueOptions{Subject: "u", Audience: configured.Audience}), reason: "issuer mismatch"},
		{name: "wrong audience", cfg: configured, token: issue(t, testSecret, IssueOptions{Subject: "u", Issuer: configured.Issuer, Audience: "other"}), reason: "audience mismatch"},
		{name: "missing audience", cfg: configured, token: issue(t, testSecret, IssueOptions{Subject: "u", Issuer: configured.Issuer}), reason: "audience mismatch"},
		{name: "issuer and audience ignored when not configured", token: issue(t, testSecret, IssueOptions{Subject: "u", Issuer: "anyone", Audience: "anything"}), wantID: "u"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, tt.cfg)
			user, err := v.Verify(tt.token)
			if tt.wantID != "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if user.ID != tt.wantID {
					t.Fatalf("ID = %q, want %q", user.ID, tt.wantID)
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("err = %v, want ErrUnauthenticated", err)
			}
			if want := "unauthenticated: " + tt.reason; err.Error() != want {
				t.Fatalf("err = %q, want %q", err, want)
			}
			assertNoSecrets(t, err, tt.token)
		})
	}
}

// assertNoSecrets fails if err's message quotes the token, any of its
// segments, the test secrets and service keys, or any of secrets.
func assertNoSecrets(t *testing.T, err error, token string, secrets ...string) {
	t.Helper()
	msg := err.Error()
	secrets = append(secrets, string(testSecret), string(otherSecret), testServiceKey, otherServiceKey)
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Fatalf("error %q reveals a secret", msg)
		}
	}
	for part := range strings.SplitSeq(token, ".") {
		if len(part) >= 8 && strings.Contains(msg, part) {
			t.Fatalf("error %q reveals the token", msg)
		}
	}
}

// tamper swaps the payload for one naming another subject, keeping the
// original signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	forged := sign(t, jwt.SigningMethodHS256, withClaim("sub", "admin"), otherSecret)
	a, b := strings.Split(token, "."), strings.Split(forged, ".")
	return a[0] + "." + b[1] + "." + a[2]
}

func TestIssue(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
		opts   IssueOptions
	}{
		{"empty secret", nil, IssueOptions{Subject: "u", TTL: time.Hour}},
		{"empty subject", testSecret, IssueOptions{TTL: time.Hour}},
		{"zero ttl", testSecret, IssueOptions{Subject: "u"}},
		{"negative ttl", testSecret, IssueOptions{Subject: "u", TTL: -time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Issue(tt.secret, tt.opts); err == nil {
				t.Fatal("Issue succeeded, want an error")
			}
		})
	}

	t.Run("claims", func(t *testing.T) {
		tok := issue(t, testSecret, IssueOptions{Subject: "u", Issuer: "iss", Audience: "aud", TTL: time.Minute})
		var c jwt.RegisteredClaims
		_, _, err := jwt.NewParser().ParseUnverified(tok, &c)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "u" || c.Issuer != "iss" || len(c.Audience) != 1 || c.Audience[0] != "aud" {
			t.Fatalf("claims = %+v", c)
		}
		if !c.IssuedAt.Equal(testNow) || !c.NotBefore.Equal(testNow) || !c.ExpiresAt.Equal(testNow.Add(time.Minute)) {
			t.Fatalf("times = iat %v nbf %v exp %v", c.IssuedAt, c.NotBefore, c.ExpiresAt)
		}
	})

	t.Run("default now", func(t *testing.T) {
		tok, err := Issue(testSecret, IssueOptions{Subject: "u", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVerifier(Config{Secret: testSecret})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
}

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name    string
		headers []string // Authorization values; nil means none
		want    string
		reason  string
	}{
		{name: "bearer", headers: []string{"Bearer abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "lower case scheme", headers: []string{"bearer abc"}, want: "abc"},
		{name: "upper case scheme", headers: []string{"BEARER abc"}, want: "abc"},
		{name: "surrounding spaces", headers: []string{"  Bearer   abc  "}, want: "abc"},
		{name: "missing", reason: "missing bearer token"},
		{name: "empty", headers: []string{""}, reason: "missing bearer token"},
		{name: "blank", headers: []string{"   "}, reason: "missing bearer token"},
		{name: "scheme only", headers: []string{"Bearer"}, reason: "missing bearer token"},
		{name: "scheme and spaces", headers: []string{"Bearer   "}, reason: "missing bearer token"},
		{name: "basic", headers: []string{"Basic dXNlcjpwYXNz"}, reason: "unsupported authorization scheme"},
		{name: "bare token", headers: []string{"abc.def.ghi"}, reason: "unsupported authorization scheme"},
		{name: "scheme prefix", headers: []string{"Bearerabc"}, reason: "unsupported authorization scheme"},
		{name: "tab separator", headers: []string{"Bearer\tabc"}, reason: "unsupported authorization scheme"},
		{name: "two tokens", headers: []string{"Bearer abc def"}, reason: "malformed bearer token"},
		{name: "two headers", headers: []string{"Bearer abc", "Bearer def"}, reason: "more than one authorization header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := FromRequest(r)
			if tt.reason == "" {
				if err != nil || got != tt.want {
					t.Fatalf("FromRequest = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) || err.Error() != "unauthenticated: "+tt.reason {
				t.Fatalf("err = %v, want reason %q", err, tt.reason)
			}
			if strings.Contains(err.Error(), "abc") || strings.Contains(err.Error(), "dXNlcjpwYXNz") {
				t.Fatalf("error %q reveals the credentials", err)
			}
		})
	}
}

func TestMiddleware(t *testing.T) {
	v := newTestVerifier(t, Config{})
	valid := issue(t, testSecret, IssueOptions{Subject: "user-1"})
	forged := issue(t, otherSecret, IssueOptions{Subject: "user-1"})

	tests := []struct {
		name   string
		header string
		wantID string
		reason string
	}{
		{name: "valid token", header: "Bearer " + valid, wantID: "user-1"},
		{name: "no header", reason: "missing bearer token"},
		{name: "forged token", header: "Bearer " + forged, reason: "token signature invalid"},
		{name: "other scheme", header: "Basic dXNlcjpwYXNz", reason: "unsupported authorization scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				called  bool
				user    User
				hasUser bool
				err     error
			)
			h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				user, hasUser = ForContext(r.Context())
				err = ErrorForContext(r.Context())
				w.WriteHeader(http.StatusNoContent)
			}))
			r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)

			if !called || rec.Code != http.StatusNoContent {
				t.Fatalf("handler called = %v, status %d: the middleware must never reject", called, rec.Code)
			}
			if tt.wantID != "" {
				if !hasUser || user.ID != tt.wantID || err != nil {
					t.Fatalf("user = %+v, %v; err = %v", user, hasUser, err)
				}
				return
			}
			if hasUser {
				t.Fatalf("user = %+v stored for a failed request", user)
			}
			if !errors.Is(err, ErrUnauthenticated) || err.Error() != "unauthenticated: "+tt.reason {
				t.Fatalf("err = %v, want reason %q", err, tt.reason)
			}
			assertNoSecrets(t, err, tt.header)
		})
	}
}

func TestContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := ForContext(ctx); ok {
		t.Fatal("empty context has a user")
	}
	if err := ErrorForContext(ctx); err != nil {
		t.Fatalf("empty context has error %v", err)
	}
	if _, err := Require(ctx); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("Require on empty context: %v", err)
	}

	withUser := WithUser(ctx, User{ID: "u"})
	if u, err := Require(withUser); err != nil || u.ID != "u" {
		t.Fatalf("Require = %+v, %v", u, err)
	}

	recorded := unauthenticated("token expired")
	withErr := WithError(ctx, recorded)
	if _, err := Require(withErr); err != recorded {
		t.Fatalf("Require err = %v, want the recorded error", err)
	}
}

// TestVerifiedTokenCache: a token verified once is taken again from the cache, but only
// within the times its claims allow (with the same leeway) and for at most verifiedFor;
// a token that failed is never remembered.
// A caller knows when its token stops being accepted, so that a connection can end then:
// at exp plus the leeway, whether the token was parsed or remembered. A service key never
// expires.
func TestValidUntil(t *testing.T) {
	tok := issue(t, testSecret, IssueOptions{Subject: "alice", TTL: 10 * time.Minute})
	for _, c := range []struct {
		name   string
		cfg    Config
		leeway time.Duration
	}{
		{"default leeway", Config{}, DefaultLeeway},
		{"configured leeway", Config{Leeway: time.Second}, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newTestVerifier(t, c.cfg)
			want := testNow.Add(10*time.Minute + c.leeway)
			for _, from := range []string{"parsed", "remembered"} {
				if u, err := v.Verify(tok); err != nil || !u.ValidUntil.Equal(want) {
					t.Errorf("%s: Verify = %+v, %v; want ValidUntil %v", from, u, err, want)
				}
			}
			// The instant itself is refused.
			v.now = func() time.Time { return want }
			if _, err := v.Verify(tok); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("at ValidUntil: %v; want ErrUnauthenticated", err)
			}
		})
	}
	t.Run("service key", func(t *testing.T) {
		v := newTestVerifier(t, Config{ServiceKeys: testServices})
		if u, err := v.Verify(testServiceKey); err != nil || !u.ValidUntil.IsZero() {
			t.Errorf("Verify = %+v, %v; want no ValidUntil", u, err)
		}
	})
}

func TestVerifiedTokenCache(t *testing.T) {
	v := newTestVerifier(t, Config{})
	now := testNow
	v.now = func() time.Time { return now }
	tok := issue(t, testSecret, IssueOptions{Subject: "alice", TTL: 10 * time.Minute})
	for range 2 {
		if u, err := v.Verify(tok); err != nil || u.ID != "alice" {
			t.Fatalf("Verify = %+v, %v", u, err)
		}
	}
	if _, ok := v.verified.Get(tok); !ok {
		t.Fatal("a verified token was not remembered")
	}

	// Within the leeway after exp it is still taken; past it, refused as a parsed one is.
	now = testNow.Add(10*time.Minute + DefaultLeeway - time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("within the leeway: %v", err)
	}
	now = testNow.Add(10*time.Minute + DefaultLeeway + time.Second)
	if _, err := v.Verify(tok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("expired cached token: %v; want ErrUnauthenticated", err)
	}
	if _, ok := v.verified.Get(tok); ok {
		t.Error("an expired token stayed remembered")
	}

	// A token expiring before its entry does is refused by the entry's own times.
	now = testNow
	short := issue(t, testSecret, IssueOptions{Subject: "carol", TTL: 5 * time.Second})
	if _, err := v.Verify(short); err != nil {
		t.Fatal(err)
	}
	now = testNow.Add(5*time.Second + DefaultLeeway + time.Second)
	if e, ok := v.verified.Get(short); !ok || !now.Before(e.until) {
		t.Fatalf("entry %+v, %v: the check below would not reach it", e, ok)
	}
	if _, err := v.Verify(short); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("expired token from the cache: %v; want ErrUnauthenticated", err)
	}

	// An entry lives verifiedFor: then the token is verified in full again.
	now = testNow
	long := issue(t, testSecret, IssueOptions{Subject: "bob", TTL: time.Hour})
	if _, err := v.Verify(long); err != nil {
		t.Fatal(err)
	}
	first, _ := v.verified.Get(long)
	now = testNow.Add(verifiedFor + time.Second)
	if _, err := v.Verify(long); err != nil {
		t.Fatal(err)
	}
	if again, _ := v.verified.Get(long); !again.until.After(first.until) {
		t.Errorf("entry not renewed after verifiedFor: %v then %v", first.until, again.until)
	}

	// Forged tokens are refused every time and never enter the cache.
	forged := issue(t, []byte("another-secret-of-the-same-length!!"), IssueOptions{Subject: "mallory"})
	for range 2 {
		if _, err := v.Verify(forged); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("forged: %v", err)
		}
	}
	if _, ok := v.verified.Get(forged); ok {
		t.Error("a forged token was remembered")
	}
}
