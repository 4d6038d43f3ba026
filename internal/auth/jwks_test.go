package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://idp.example.com/"
	testAudience = "terragate"
)

// Keys are generated once per test binary: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() (k struct {
	rsa1, rsa2, rogueRSA, weakRSA *rsa.PrivateKey
	ec1, rogueEC, ec384           *ecdsa.PrivateKey
}) {
	mustRSA := func(bits int) *rsa.PrivateKey {
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return key
	}
	mustEC := func(c elliptic.Curve) *ecdsa.PrivateKey {
		key, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		return key
	}
	k.rsa1, k.rsa2, k.rogueRSA, k.weakRSA = mustRSA(2048), mustRSA(2048), mustRSA(2048), mustRSA(1024)
	k.ec1, k.rogueEC, k.ec384 = mustEC(elliptic.P256()), mustEC(elliptic.P256()), mustEC(elliptic.P384())
	return k
})

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rsaJWK is the public JWK of key, written out by hand so the tests do not
// trust the library under test to encode what it then decodes.
func rsaJWK(kid string, key *rsa.PrivateKey, extra ...string) map[string]any {
	m := map[string]any{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}
	return with(m, extra...)
}

func ecJWK(kid string, key *ecdsa.PrivateKey, extra ...string) map[string]any {
	point, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	size := (len(point) - 1) / 2
	crv := map[int]string{32: "P-256", 48: "P-384"}[size]
	m := map[string]any{
		"kty": "EC", "kid": kid, "use": "sig", "crv": crv,
		"x": b64(point[1 : 1+size]), "y": b64(point[1+size:]),
	}
	if crv == "P-256" {
		m["alg"] = "ES256"
	}
	return with(m, extra...)
}

// with sets key/value pairs on m; an empty value removes the key.
func with(m map[string]any, kv ...string) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(m, kv[i])
		} else {
			m[kv[i]] = kv[i+1]
		}
	}
	return m
}

// jwksServer serves a JWKS that tests can change, stop serving, or slow down,
// and counts the fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []map[string]any
	body    []byte // when set, served instead of keys
	fetches atomic.Int32
	down    atomic.Bool
	delay   atomic.Int64 // time.Duration
}

func newJWKSServer(t testing.TB, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if s.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if s.body != nil {
			_, _ = w.Write(s.body)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(keys ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func (s *jwksServer) setBody(body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = []byte(body)
}

func defaultJWKS() []map[string]any {
	k := testKeys()
	return []map[string]any{rsaJWK("rsa-1", k.rsa1), ecJWK("ec-1", k.ec1)}
}

var quietLogger = slog.New(slog.DiscardHandler)

// jwksConfig is a JWKS configuration for srv (unless cfg names another URL)
// with the test issuer and audience; cfg's other fields are kept.
func jwksConfig(srv *jwksServer, cfg Config) Config {
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = srv.URL
	}
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	return cfg
}

func newJWKSVerifier(t testing.TB, srv *jwksServer, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifierContext(t.Context(), jwksConfig(srv, cfg))
	if err != nil {
		t.Fatalf("NewVerifierContext: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	v.now = func() time.Time { return testNow }
	return v
}

// idpClaims are valid claims from the identity provider.
func idpClaims(changes ...any) jwt.MapClaims {
	c := validClaims()
	c["iss"] = testIssuer
	c["aud"] = testAudience
	for i := 0; i+1 < len(changes); i += 2 {
		if changes[i+1] == nil {
			delete(c, changes[i].(string))
		} else {
			c[changes[i].(string)] = changes[i+1]
		}
	}
	return c
}

// signKID signs claims with method and key, naming kid in the header (none
// when kid is empty); extra header fields are set from header.
func signKID(t testing.TB, method jwt.SigningMethod, kid string, claims jwt.Claims, key any, header ...any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	for i := 0; i+1 < len(header); i += 2 {
		tok.Header[header[i].(string)] = header[i+1]
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// publicPEM is the RSA public key as a sign-in page would publish it: the
// bytes an HS/RS confusion attack uses as the HMAC secret.
func publicPEM(t testing.TB, key *rsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestVerifyJWKS(t *testing.T) {
	k := testKeys()
	srv := newJWKSServer(t, append(defaultJWKS(),
		rsaJWK("rsa-enc", k.rsa2, "use", "enc"),
		rsaJWK("rsa-weak", k.weakRSA),
		rsaJWK("rsa-noalg", k.rsa2, "alg", "", "kid", "rsa-noalg"),
		rsaJWK("rsa-ps", k.rsa2, "alg", "PS256"),
		ecJWK("ec-384", k.ec384),
		map[string]any{"kty": "oct", "kid": "hmac-1", "k": b64(testSecret)},
	)...)
	jwksOnly := newJWKSVerifier(t, srv, Config{})
	both := newJWKSVerifier(t, srv, Config{Secret: testSecret})
	custom := newJWKSVerifier(t, srv, Config{SubjectClaim: "uid"})
	strict := newJWKSVerifier(t, srv, Config{Leeway: time.Second})
	pemBytes := publicPEM(t, k.rsa1)
	none := signKID(t, jwt.SigningMethodNone, "rsa-1", idpClaims(), jwt.UnsafeAllowNoneSignatureType)

	tests := []struct {
		name   string
		v      *Verifier
		token  string
		wantID string // empty means an error is expected
		reason string
	}{
		{name: "RS256", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims(), k.rsa1), wantID: "user-1"},
		{name: "ES256", v: jwksOnly, token: signKID(t, jwt.SigningMethodES256, "ec-1", idpClaims(), k.ec1), wantID: "user-1"},
		{name: "RS256 without kid", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "", idpClaims(), k.rsa1), wantID: "user-1"},
		{name: "ES256 without kid", v: jwksOnly, token: signKID(t, jwt.SigningMethodES256, "", idpClaims(), k.ec1), wantID: "user-1"},
		{name: "key without alg parameter", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-noalg", idpClaims(), k.rsa2), wantID: "user-1"},
		{name: "RS256 with secret also configured", v: both, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims(), k.rsa1), wantID: "user-1"},
		{name: "HS256 with JWKS also configured", v: both, token: sign(t, jwt.SigningMethodHS256, idpClaims(), testSecret), wantID: "user-1"},

		{name: "alg none", v: jwksOnly, token: none, reason: "token algorithm not allowed"},
		{name: "alg none with secret", v: both, token: none, reason: "token algorithm not allowed"},
		{name: "HS256 signed with the RSA public key, JWKS only", v: jwksOnly, token: signKID(t, jwt.SigningMethodHS256, "rsa-1", idpClaims(), pemBytes), reason: "token algorithm not allowed"},
		{name: "HS256 signed with the RSA public key, secret too", v: both, token: signKID(t, jwt.SigningMethodHS256, "rsa-1", idpClaims(), pemBytes), reason: "token signature invalid"},
		{name: "HS256 signed with a JWKS oct key", v: both, token: signKID(t, jwt.SigningMethodHS256, "hmac-1", idpClaims(), []byte("other")), reason: "token signature invalid"},
		{name: "HS256 token does not reach the JWKS", v: jwksOnly, token: signKID(t, jwt.SigningMethodHS256, "hmac-1", idpClaims(), testSecret), reason: "token algorithm not allowed"},
		{name: "RS256 naming an oct key", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "hmac-1", idpClaims(), k.rsa1), reason: "token algorithm not allowed"},
		{name: "ES256 header on an RSA kid", v: jwksOnly, token: signKID(t, jwt.SigningMethodES256, "rsa-1", idpClaims(), k.ec1), reason: "token algorithm not allowed"},
		{name: "RS256 header on an EC kid", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "ec-1", idpClaims(), k.rsa1), reason: "token algorithm not allowed"},
		{name: "ES256 on a P-384 key", v: jwksOnly, token: signKID(t, jwt.SigningMethodES256, "ec-384", idpClaims(), k.ec1), reason: "token algorithm not allowed"},
		{name: "key alg parameter disagrees", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-ps", idpClaims(), k.rsa2), reason: "token algorithm not allowed"},
		{name: "RS384", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS384, "rsa-1", idpClaims(), k.rsa1), reason: "token algorithm not allowed"},
		{name: "PS256", v: jwksOnly, token: signKID(t, jwt.SigningMethodPS256, "rsa-1", idpClaims(), k.rsa1), reason: "token algorithm not allowed"},
		{name: "ES384", v: jwksOnly, token: signKID(t, jwt.SigningMethodES384, "ec-384", idpClaims(), k.ec384), reason: "token algorithm not allowed"},
		{name: "encryption key", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-enc", idpClaims(), k.rsa2), reason: "token signing key unusable"},
		{name: "weak RSA key", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-weak", idpClaims(), k.weakRSA), reason: "token signing key unusable"},
		{name: "forged RS256", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims(), k.rogueRSA), reason: "token signature invalid"},
		{name: "forged ES256", v: jwksOnly, token: signKID(t, jwt.SigningMethodES256, "ec-1", idpClaims(), k.rogueEC), reason: "token signature invalid"},
		{name: "forged without kid", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "", idpClaims(), k.rogueRSA), reason: "token signature invalid"},
		{name: "unknown kid", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-9", idpClaims(), k.rsa1), reason: "token signing key unknown"},
		{name: "kid not a string", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "", idpClaims(), k.rsa1, "kid", 7), reason: "token signing key unknown"},
		{name: "empty kid", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "", idpClaims(), k.rsa1, "kid", ""), reason: "token signing key unknown"},
		{name: "critical header", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims(), k.rsa1, "crit", []string{"exp"}), reason: "token has unsupported critical headers"},
		{name: "embedded jwk header ignored", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "", idpClaims(), k.rogueRSA, "jwk", rsaJWK("x", k.rogueRSA)), reason: "token signature invalid"},

		{name: "expired", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("exp", testNow.Add(-time.Minute).Unix()), k.rsa1), reason: "token expired"},
		{name: "within leeway", v: jwksOnly, token: signKID(t, jwt.SigningMethodES256, "ec-1", idpClaims("exp", testNow.Add(-10*time.Second).Unix()), k.ec1), wantID: "user-1"},
		{name: "beyond custom leeway", v: strict, token: signKID(t, jwt.SigningMethodES256, "ec-1", idpClaims("exp", testNow.Add(-10*time.Second).Unix()), k.ec1), reason: "token expired"},
		{name: "not yet valid", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("nbf", testNow.Add(time.Minute).Unix()), k.rsa1), reason: "token not valid yet"},
		{name: "no expiry", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("exp", nil), k.rsa1), reason: "token has no expiry"},
		{name: "wrong issuer", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("iss", "https://evil.example/"), k.rsa1), reason: "issuer mismatch"},
		{name: "missing issuer", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("iss", nil), k.rsa1), reason: "issuer mismatch"},
		{name: "wrong audience", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("aud", "another-app"), k.rsa1), reason: "audience mismatch"},
		{name: "audience among several", v: jwksOnly, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("aud", []string{"another-app", testAudience}), k.rsa1), wantID: "user-1"},

		{name: "subject claim override", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", " user-42 "), k.rsa1), wantID: "user-42"},
		{name: "override ignores sub", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", nil), k.rsa1), reason: "token has no subject"},
		{name: "override null", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", json.RawMessage("null")), k.rsa1), reason: "token has no subject"},
		{name: "override not a string", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", 42), k.rsa1), reason: "token subject invalid"},
		{name: "override blank", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", "  "), k.rsa1), reason: "token has no subject"},
		{name: "override too long", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", strings.Repeat("u", MaxSubjectLen+1)), k.rsa1), reason: "token subject too long"},
		{name: "override control character", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", "a\x00b"), k.rsa1), reason: "token subject invalid"},
		{name: "override service prefix", v: custom, token: signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims("uid", "svc:billing"), k.rsa1), reason: "token subject invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := tt.v.Verify(tt.token)
			if tt.wantID != "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if user.ID != tt.wantID || user.Service || user.Actor != "" {
					t.Fatalf("user = %+v, want end user %q", user, tt.wantID)
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("err = %v, want ErrUnauthenticated", err)
			}
			if want := "unauthenticated: " + tt.reason; err.Error() != want {
				t.Fatalf("err = %q, want %q", err, want)
			}
			assertNoSecrets(t, err, tt.token, string(pemBytes))
		})
	}
}

func TestJWKSRefresh(t *testing.T) {
	k := testKeys()
	rs := func(kid string, key *rsa.PrivateKey) string {
		return signKID(t, jwt.SigningMethodRS256, kid, idpClaims(), key)
	}
	verify := func(t *testing.T, v *Verifier, token, reason string) {
		t.Helper()
		_, err := v.Verify(token)
		switch {
		case reason == "" && err != nil:
			t.Fatalf("Verify: %v", err)
		case reason != "" && (err == nil || err.Error() != "unauthenticated: "+reason):
			t.Fatalf("err = %v, want %q", err, reason)
		}
	}
	fetches := func(t *testing.T, srv *jwksServer, want int32) {
		t.Helper()
		if got := srv.fetches.Load(); got != want {
			t.Fatalf("JWKS fetched %d times, want %d", got, want)
		}
	}

	t.Run("unknown kid refreshes and picks up a rotated key", func(t *testing.T) {
		srv := newJWKSServer(t, rsaJWK("rsa-1", k.rsa1))
		v := newJWKSVerifier(t, srv, Config{})
		fetches(t, srv, 1)
		verify(t, v, rs("rsa-1", k.rsa1), "")
		fetches(t, srv, 1) // a known kid is served from the cache

		srv.setKeys(rsaJWK("rsa-2", k.rsa2)) // rotation: rsa-1 retired
		verify(t, v, rs("rsa-2", k.rsa2), "")
		fetches(t, srv, 2)
		verify(t, v, rs("rsa-2", k.rsa2), "")
		verify(t, v, rs("rsa-1", k.rsa1), "token signing key unknown") // revoked with the refresh
		fetches(t, srv, 2)
	})

	t.Run("refreshes for unknown kids are rate limited", func(t *testing.T) {
		srv := newJWKSServer(t, rsaJWK("rsa-1", k.rsa1))
		v := newJWKSVerifier(t, srv, Config{JWKSRefreshLimit: time.Hour})
		verify(t, v, rs("made-up-1", k.rogueRSA), "token signing key unknown")
		fetches(t, srv, 2)

		// A flood of made-up kids, concurrently: no further fetch, no waiting.
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				_, err := v.Verify(rs("made-up-"+string(rune('a'+i)), k.rogueRSA))
				if err == nil || err.Error() != "unauthenticated: token signing key unknown" {
					t.Errorf("err = %v", err)
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("refused kids took %v: requests waited for the limiter", d)
		}
		fetches(t, srv, 2)

		// Even a genuine new key waits for the limit to pass; cached keys work.
		srv.setKeys(rsaJWK("rsa-1", k.rsa1), rsaJWK("rsa-2", k.rsa2))
		verify(t, v, rs("rsa-2", k.rsa2), "token signing key unknown")
		verify(t, v, rs("rsa-1", k.rsa1), "")
		fetches(t, srv, 2)
	})

	t.Run("refresh allowed again after the limit", func(t *testing.T) {
		srv := newJWKSServer(t, rsaJWK("rsa-1", k.rsa1))
		v := newJWKSVerifier(t, srv, Config{JWKSRefreshLimit: 50 * time.Millisecond})
		verify(t, v, rs("made-up", k.rogueRSA), "token signing key unknown")
		fetches(t, srv, 2)
		time.Sleep(100 * time.Millisecond)
		srv.setKeys(rsaJWK("rsa-2", k.rsa2))
		verify(t, v, rs("rsa-2", k.rsa2), "")
		fetches(t, srv, 3)
	})

	t.Run("periodic refresh drops revoked keys", func(t *testing.T) {
		srv := newJWKSServer(t, rsaJWK("rsa-1", k.rsa1), rsaJWK("rsa-2", k.rsa2))
		v := newJWKSVerifier(t, srv, Config{JWKSRefreshInterval: 20 * time.Millisecond, JWKSRefreshLimit: time.Hour})
		verify(t, v, rs("rsa-1", k.rsa1), "")
		srv.setKeys(rsaJWK("rsa-2", k.rsa2))
		waitFor(t, func() bool { return srv.fetches.Load() >= 3 })
		verify(t, v, rs("rsa-1", k.rsa1), "token signing key unknown")
		verify(t, v, rs("rsa-2", k.rsa2), "")
	})

	t.Run("cached keys survive the provider going down", func(t *testing.T) {
		srv := newJWKSServer(t, defaultJWKS()...)
		v := newJWKSVerifier(t, srv, Config{JWKSRefreshInterval: 20 * time.Millisecond})
		srv.down.Store(true)
		waitFor(t, func() bool { return srv.fetches.Load() >= 3 }) // failed periodic refreshes
		verify(t, v, rs("rsa-1", k.rsa1), "")
		verify(t, v, signKID(t, jwt.SigningMethodES256, "ec-1", idpClaims(), k.ec1), "")
		verify(t, v, rs("rsa-2", k.rsa2), "token signing key unknown")

		srv.Close() // gone altogether
		verify(t, v, rs("rsa-1", k.rsa1), "")
	})

	t.Run("close stops refreshing but keeps cached keys", func(t *testing.T) {
		srv := newJWKSServer(t, rsaJWK("rsa-1", k.rsa1))
		v := newJWKSVerifier(t, srv, Config{JWKSRefreshInterval: 20 * time.Millisecond})
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
		if err := v.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		n := srv.fetches.Load()
		srv.setKeys(rsaJWK("rsa-2", k.rsa2))
		verify(t, v, rs("rsa-2", k.rsa2), "token signing key unknown")
		time.Sleep(100 * time.Millisecond)
		fetches(t, srv, n)
		verify(t, v, rs("rsa-1", k.rsa1), "")
	})
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewVerifierJWKS(t *testing.T) {
	k := testKeys()
	slow := newJWKSServer(t, defaultJWKS()...)
	slow.delay.Store(int64(5 * time.Second))
	failing := newJWKSServer(t)
	failing.down.Store(true)
	empty := newJWKSServer(t)
	discovery := newJWKSServer(t)
	discovery.setBody(`{"issuer":"https://idp.example.com/","jwks_uri":"https://idp.example.com/keys"}`)
	huge := newJWKSServer(t)
	huge.setBody(`{"keys":[` + strings.Repeat(`{"kty":"RSA"},`, maxJWKSSize/10) + `{}]}`)
	onlyUnusable := newJWKSServer(t, rsaJWK("weak", k.weakRSA), ecJWK("p384", k.ec384), rsaJWK("enc", k.rsa1, "use", "enc"))
	ok := newJWKSServer(t, defaultJWKS()...)
	// Closed last: a server started after it could be given its port, and then the
	// "unreachable" cases would reach that server (seen with the slow one, which serves
	// keys after 5 s).
	closed := newJWKSServer(t, defaultJWKS()...)
	closed.Close()

	tests := []struct {
		name string
		cfg  Config
		want string // part of the error; empty means success
	}{
		{name: "ok", cfg: jwksConfig(ok, Config{})},
		{name: "ok with secret and service keys", cfg: jwksConfig(ok, Config{Secret: testSecret, ServiceKeys: []ServiceKey{{"billing", testServiceKey}}})},
		{name: "unreachable", cfg: jwksConfig(closed, Config{}), want: "auth: fetch JWKS"},
		{name: "unreachable, query left out", cfg: jwksConfig(closed, Config{JWKSURL: closed.URL + "/keys?api_key=hunter2hunter2#hunter2hunter2"}), want: closed.URL + "/keys"},
		{name: "slow", cfg: jwksConfig(slow, Config{JWKSTimeout: 200 * time.Millisecond}), want: "auth: fetch JWKS"},
		{name: "error status", cfg: jwksConfig(failing, Config{}), want: "auth: fetch JWKS"},
		{name: "empty set", cfg: jwksConfig(empty, Config{}), want: "no usable"},
		{name: "discovery document instead of set", cfg: jwksConfig(discovery, Config{}), want: "no usable"},
		{name: "response too large", cfg: jwksConfig(huge, Config{}), want: "too large"},
		{name: "only unusable keys", cfg: jwksConfig(onlyUnusable, Config{}), want: "no usable"},
		{name: "no issuer", cfg: Config{JWKSURL: ok.URL, Audience: testAudience}, want: "issuer and audience are required"},
		{name: "no audience", cfg: Config{JWKSURL: ok.URL, Issuer: testIssuer}, want: "issuer and audience are required"},
		{name: "plain http off loopback", cfg: jwksConfig(ok, Config{JWKSURL: "http://idp.example.com/keys"}), want: "must be https"},
		{name: "other scheme", cfg: jwksConfig(ok, Config{JWKSURL: "file:///etc/keys.json"}), want: "JWKS URL"},
		{name: "credentials in URL", cfg: jwksConfig(ok, Config{JWKSURL: "https://user:hunter2hunter2@idp.example.com/keys"}), want: "must not carry credentials"},
		{name: "not a URL", cfg: jwksConfig(ok, Config{JWKSURL: "::"}), want: "JWKS URL is invalid"},
		{name: "negative refresh limit", cfg: jwksConfig(ok, Config{JWKSRefreshLimit: -time.Second}), want: "must not be negative"},
		{name: "negative timeout", cfg: jwksConfig(ok, Config{JWKSTimeout: -time.Second}), want: "must not be negative"},
		{name: "subject claim iss", cfg: jwksConfig(ok, Config{SubjectClaim: "iss"}), want: "does not identify a user"},
		{name: "subject claim with spaces", cfg: jwksConfig(ok, Config{SubjectClaim: " uid"}), want: "subject claim name is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			v, err := NewVerifierContext(t.Context(), tt.cfg)
			if v != nil {
				t.Cleanup(func() { _ = v.Close() })
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("NewVerifierContext: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v to fail", d)
			}
			for _, s := range []string{string(testSecret), testServiceKey, "hunter2hunter2"} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q reveals a secret", err)
				}
			}
		})
	}
}

func TestNewVerifierContextCancel(t *testing.T) {
	srv := newJWKSServer(t, defaultJWKS()...)
	ctx, cancel := context.WithCancel(t.Context())
	cfg := jwksConfig(srv, Config{JWKSRefreshInterval: 20 * time.Millisecond})
	v, err := NewVerifierContext(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return srv.fetches.Load() >= 2 })
	cancel()
	time.Sleep(50 * time.Millisecond) // let a refresh already under way finish
	n := srv.fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if got := srv.fetches.Load(); got != n {
		t.Fatalf("fetched %d more times after the context ended", got-n)
	}
	v.now = func() time.Time { return testNow }
	if _, err := v.Verify(signKID(t, jwt.SigningMethodRS256, "rsa-1", idpClaims(), testKeys().rsa1)); err != nil {
		t.Fatalf("cached key after cancel: %v", err)
	}
}

func TestJWKSRedirect(t *testing.T) {
	target := newJWKSServer(t, defaultJWKS()...)
	redirect := func(to string) *httptest.Server {
		s := httptest.NewServer(http.RedirectHandler(to, http.StatusFound))
		t.Cleanup(s.Close)
		return s
	}
	tests := []struct {
		name string
		to   string
		ok   bool
	}{
		{"to loopback", target.URL, true},
		{"to plain http elsewhere", "http://idp.example.com/keys", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := redirect(tt.to)
			cfg := jwksConfig(target, Config{JWKSTimeout: 2 * time.Second})
			cfg.JWKSURL = from.URL
			v, err := NewVerifierContext(t.Context(), cfg)
			if v != nil {
				t.Cleanup(func() { _ = v.Close() })
			}
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
