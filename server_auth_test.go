package main

// Identity attacks on the running gateway with a real identity provider (a JWKS served over
// HTTP), production mode, and what service callers see and leave behind: admin filters,
// the audit log, and a scan for their key.

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
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/terrasim"
)

const (
	idpIssuer   = "https://idp.example.com/"
	idpAudience = "terragate-api"
)

// idpKeys are generated once per test binary: RSA generation is slow under -race.
var idpKeys = sync.OnceValue(func() (k struct {
	rsa, rotated, rogueRSA *rsa.PrivateKey
	ec, rogueEC            *ecdsa.PrivateKey
}) {
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.rotated, &k.rogueRSA} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	}
	for _, p := range []**ecdsa.PrivateKey{&k.ec, &k.rogueEC} {
		if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	}
	return k
})

// idp is an identity provider's JWKS endpoint, served over real HTTP on loopback (which
// the verifier accepts without TLS; any other address must be https).
type idp struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []map[string]any
	fetches atomic.Int32
}

func startIDP(t *testing.T) *idp {
	t.Helper()
	k := idpKeys()
	p := &idp{keys: []map[string]any{rsaJWK("rsa-1", &k.rsa.PublicKey), ecJWK("ec-1", &k.ec.PublicKey)}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	}))
	t.Cleanup(p.Close)
	return p
}

// publish adds a key, as a provider does before it starts signing with it.
func (p *idp) publish(jwk map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, jwk)
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// The JWKs are written out by hand, so the test does not trust the library that parses
// them to have encoded them.
func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64url(pub.N.Bytes()), "e": b64url(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	point, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	return map[string]any{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
		"x": b64url(point[1:33]), "y": b64url(point[33:])}
}

// idpClaims are what the provider puts in a token for sub; edit the copy to forge.
func idpClaims(sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": idpIssuer, "aud": idpAudience, "sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// sign makes a token with method and key; kid "" leaves the header without one.
func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// referenceIDSent is the reference_id of Terra's last widget session request: who the
// gateway took the caller to be.
func (g *gateway) referenceIDSent() any {
	reqs := g.emu.Requests()
	if len(reqs) == 0 {
		return nil
	}
	return reqs[len(reqs)-1].Body["reference_id"]
}

func TestIdentityProviderTokens(t *testing.T) {
	k := idpKeys()
	p := startIDP(t)
	idpEnv := []option{withEnv("AUTH_JWKS_URL", p.URL+"/.well-known/jwks.json"), withEnv("AUTH_ISSUER", idpIssuer), withEnv("AUTH_AUDIENCE", idpAudience)}
	// One gateway trusts the provider alone; the other also has an HS256 secret, the
	// setting in which HS/RS confusion would bite if algorithms were not pinned to keys.
	jwksOnly := startGateway(t, append(idpEnv, withEnv("AUTH_JWT_SECRET", ""))...)
	mixed := startGateway(t, idpEnv...)

	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})
	expired := idpClaims("alice")
	expired["iat"], expired["exp"] = time.Now().Add(-3*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
	notYet := idpClaims("alice")
	notYet["nbf"] = time.Now().Add(time.Hour).Unix()
	wrongAud := idpClaims("alice")
	wrongAud["aud"] = "another-app"
	wrongIss := idpClaims("alice")
	wrongIss["iss"] = "https://evil.example.com/"
	noExp := idpClaims("alice")
	delete(noExp, "exp")
	none := jwt.NewWithClaims(jwt.SigningMethodNone, idpClaims("alice"))
	none.Header["kid"] = "rsa-1"
	noneTok, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	forged := map[string]string{
		"alg none":                                     noneTok,
		"HS256 with the RSA public key":                sign(t, jwt.SigningMethodHS256, rsaPEM, "rsa-1", idpClaims("alice")),
		"HS256 with the RSA modulus":                   sign(t, jwt.SigningMethodHS256, k.rsa.PublicKey.N.Bytes(), "rsa-1", idpClaims("alice")),
		"RS256 by another key, same kid":               sign(t, jwt.SigningMethodRS256, k.rogueRSA, "rsa-1", idpClaims("alice")),
		"RS256 by another key, no kid":                 sign(t, jwt.SigningMethodRS256, k.rogueRSA, "", idpClaims("alice")),
		"ES256 by another key, same kid":               sign(t, jwt.SigningMethodES256, k.rogueEC, "ec-1", idpClaims("alice")),
		"ES256 naming the RSA key":                     sign(t, jwt.SigningMethodES256, k.ec, "rsa-1", idpClaims("alice")),
		"RS256 naming the EC key":                      sign(t, jwt.SigningMethodRS256, k.rsa, "ec-1", idpClaims("alice")),
		"PS256, not an accepted algorithm":             sign(t, jwt.SigningMethodPS256, k.rsa, "rsa-1", idpClaims("alice")),
		"expired":                                      sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", expired),
		"not valid yet":                                sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", notYet),
		"wrong audience":                               sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", wrongAud),
		"wrong issuer":                                 sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", wrongIss),
		"no expiry":                                    sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", noExp),
		"HS256 with the shared secret, wrong audience": sign(t, jwt.SigningMethodHS256, []byte(testJWTSecret), "", wrongAud),
	}
	for _, g := range []*gateway{jwksOnly, mixed} {
		calls := len(g.emu.Requests())
		for name, tok := range forged {
			for _, q := range []string{listUsers, createSession} {
				r := g.gql(tok, q, nil)
				if r.code() != "UNAUTHENTICATED" || r.Data != nil && string(r.Data) != "null" {
					t.Errorf("%s: got %+v %s, want UNAUTHENTICATED", name, r.Errors, r.Data)
				} else if strings.Contains(r.Errors[0].Message, tok) {
					t.Errorf("%s: the error echoes the token", name)
				}
			}
		}
		if n := len(g.emu.Requests()); n != calls {
			t.Errorf("forged tokens reached Terra %d times", n-calls)
		}
	}

	// What the provider really issued is accepted, and names the end user Terra is told of.
	for name, c := range map[string]struct {
		tok, sub string
	}{
		"RS256":        {sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", idpClaims("idp-alice")), "idp-alice"},
		"ES256":        {sign(t, jwt.SigningMethodES256, k.ec, "ec-1", idpClaims("idp-bob")), "idp-bob"},
		"RS256 no kid": {sign(t, jwt.SigningMethodRS256, k.rsa, "", idpClaims("idp-carol")), "idp-carol"},
	} {
		for _, g := range []*gateway{jwksOnly, mixed} {
			g.createSession(c.tok, nil)
			if got := g.referenceIDSent(); got != c.sub {
				t.Errorf("%s: Terra was told of %v, want %s", name, got, c.sub)
			}
		}
	}
	// HS256 from the shared secret still works beside the provider, and only there.
	hs := sign(t, jwt.SigningMethodHS256, []byte(testJWTSecret), "", idpClaims("hs-dave"))
	if r := mixed.gql(hs, listUsers, nil); len(r.Errors) > 0 {
		t.Errorf("HS256 with the configured secret: %+v", r.Errors)
	}
	if r := jwksOnly.gql(hs, listUsers, nil); r.code() != "UNAUTHENTICATED" {
		t.Errorf("HS256 where no secret is configured: %+v", r)
	}

	// Key rotation: a key published after start is fetched on first sight of its kid. Made-up
	// kids after that cost the provider nothing more: unknown-kid fetches are rate limited.
	before := p.fetches.Load()
	if before == 0 {
		t.Fatal("the gateway never fetched the JWKS")
	}
	p.publish(rsaJWK("rsa-2", &k.rotated.PublicKey))
	rotated := sign(t, jwt.SigningMethodRS256, k.rotated, "rsa-2", idpClaims("idp-erin"))
	if r := jwksOnly.gql(rotated, listUsers, nil); len(r.Errors) > 0 {
		t.Fatalf("a token from the rotated key: %+v", r.Errors)
	}
	afterRotation := p.fetches.Load()
	for i := range 20 {
		tok := sign(t, jwt.SigningMethodRS256, k.rogueRSA, fmt.Sprintf("made-up-%d", i), idpClaims("alice"))
		if r := jwksOnly.gql(tok, listUsers, nil); r.code() != "UNAUTHENTICATED" {
			t.Fatalf("unknown kid %d: %+v", i, r)
		}
	}
	// One fetch for rsa-2, none for the flood (the next is allowed five minutes on).
	if n := p.fetches.Load(); afterRotation != before+1 || n != afterRotation {
		t.Errorf("JWKS fetches: %d at start, %d after the rotation, %d after 20 unknown kids", before, afterRotation, n)
	}
}

func TestSubjectClaim(t *testing.T) {
	k := idpKeys()
	p := startIDP(t)
	g := startGateway(t, withEnv("AUTH_JWKS_URL", p.URL), withEnv("AUTH_ISSUER", idpIssuer), withEnv("AUTH_AUDIENCE", idpAudience),
		withEnv("AUTH_SUBJECT_CLAIM", "app_user_id"))
	withClaim := func(sub, appUser string) string {
		c := idpClaims(sub)
		if appUser != "" {
			c["app_user_id"] = appUser
		}
		return sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", c)
	}
	b := authEvent("u-claim", "OURA", "alice")
	if resp, raw := g.postWebhook(b, signedHeader(b, time.Now(), "")); resp.StatusCode != 200 {
		t.Fatalf("webhook: %d %s", resp.StatusCode, raw)
	}

	// The provider's sub is its own opaque id; the app's user id is in app_user_id.
	alice := withClaim("auth0|5f2c9e", "alice")
	if u := g.connectedUsers(alice, false); len(u) != 1 || u[0].UserID != "u-claim" {
		t.Errorf("alice by app_user_id sees %+v", u)
	}
	g.createSession(alice, nil)
	if got := g.referenceIDSent(); got != "alice" {
		t.Errorf("Terra was told of %v, want alice", got)
	}
	// sub no longer names anyone: a token whose sub is "alice" is mallory's.
	if u := g.connectedUsers(withClaim("alice", "mallory"), false); len(u) != 0 {
		t.Errorf("sub=alice, app_user_id=mallory sees alice's connections: %+v", u)
	}
	for name, tok := range map[string]string{
		"claim missing":    withClaim("alice", ""),
		"claim not string": sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", func() jwt.MapClaims { c := idpClaims("alice"); c["app_user_id"] = 42; return c }()),
		"service prefix":   withClaim("x", "svc:backend"),
	} {
		if r := g.gql(tok, listUsers, nil); r.code() != "UNAUTHENTICATED" {
			t.Errorf("%s: %+v", name, r)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Strong secrets, as production requires: long, and none of the words of examples.
const (
	prodJWTSecret     = "pj_9f8e7d6c5b4a39281706f5e4d3c2b1a0f0e1d2c3"
	prodWebhookSecret = "wh_1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
)

func TestProduction(t *testing.T) {
	prod := []option{withEnv("ENV", "production"), withEnv("AUTH_JWT_SECRET", prodJWTSecret),
		withEnv("TERRA_WEBHOOK_SECRET", prodWebhookSecret), withEmulator(func(c *terrasim.Config) { c.WebhookSecret = prodWebhookSecret })}
	g := startGateway(t, prod...)
	alice, err := auth.Issue([]byte(prodJWTSecret), auth.IssueOptions{Subject: "alice", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	// The playground is off, and so is introspection, for signed-in callers too.
	resp, err := http.Get(g.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(page), "graphiql") {
		t.Errorf("production playground: %d %s", resp.StatusCode, page)
	}
	for _, q := range []string{`{ __schema { queryType { name } } }`, `{ __type(name: "Query") { fields { name } } }`} {
		r := g.gql(alice, q, nil)
		if len(r.Errors) == 0 || strings.Contains(string(r.Data), "queryType") || strings.Contains(string(r.Data), "connectedUsers") {
			t.Errorf("production introspection %s: %+v %s", q, r.Errors, r.Data)
		}
	}
	if r := g.gql(alice, listUsers, nil); len(r.Errors) > 0 {
		t.Fatalf("an ordinary query in production: %+v", r.Errors)
	}

	// What Terra says about a failure is for the operator, not the client: production shows
	// only Terra's status; development shows the detail, which proves the fault carries one.
	const detail = "developer account 7731 suspended by compliance"
	fault := terrasim.Fault{Status: 400, Body: `{"status":"error","message":"` + detail + `"}`, ContentType: "application/json", Times: 1}
	dev := startGateway(t)
	for _, c := range []struct {
		g          *gateway
		bearer     string
		showDetail bool
	}{{g, alice, false}, {dev, token(t, "alice"), true}} {
		c.g.emu.Fail("/api/widget/session", fault)
		r := c.g.gql(c.bearer, createSession, nil)
		if r.code() != "UPSTREAM_ERROR" || r.Errors[0].Extensions["status"] != float64(400) {
			t.Fatalf("Terra's 400: %+v", r)
		}
		if shown := strings.Contains(r.Errors[0].Message, detail); shown != c.showDetail {
			t.Errorf("detail shown = %v, want %v: %q", shown, c.showDetail, r.Errors[0].Message)
		}
	}
	if strings.Contains(g.seen.String(), detail) {
		t.Error("a production response carried Terra's detail")
	}

	// Asked for explicitly, the playground comes back.
	on := startGateway(t, append(prod, withEnv("PLAYGROUND", "true"))...)
	resp, err = http.Get(on.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("PLAYGROUND=true in production: %d", resp.StatusCode)
	}
}

func TestProductionRefusesUnsafeSettings(t *testing.T) {
	base := map[string]string{
		"ENV": "production", "ADDR": "127.0.0.1:0", "TERRA_DEV_ID": testDevID, "TERRA_API_KEY": testAPIKey,
		"TERRA_WEBHOOK_SECRET": prodWebhookSecret, "AUTH_JWT_SECRET": prodJWTSecret, "CORS_ALLOWED_ORIGINS": appOrigin,
	}
	for name, c := range map[string]struct{ key, value, want string }{
		"example JWT secret":     {"AUTH_JWT_SECRET", testJWTSecret, "AUTH_JWT_SECRET"},
		"short JWT secret":       {"AUTH_JWT_SECRET", "k7Qp2", "AUTH_JWT_SECRET"},
		"example webhook secret": {"TERRA_WEBHOOK_SECRET", prodWebhookSecret + ",changeme", "TERRA_WEBHOOK_SECRET"},
		"no CORS origins":        {"CORS_ALLOWED_ORIGINS", "", "CORS_ALLOWED_ORIGINS"},
	} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "x.db")}
			for k, v := range base {
				env[k] = v
			}
			env[c.key] = c.value
			stdout, logs := &syncBuffer{}, &syncBuffer{}
			err := run(context.Background(), nil, func(k string) string { return env[k] }, stdout, logs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %s", err, c.want)
			}
			if strings.Contains(stdout.String(), "listening") {
				t.Error("it started listening")
			}
			if c.value != "" && strings.Contains(err.Error()+logs.String(), c.value) {
				t.Error("the refusal quotes the secret")
			}
		})
	}
}

// Everything a service caller does, and every way its key can be got wrong, leaves the key
// out of every response and every log line.
func TestServiceKeyNeverLeaks(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey))
	key := testServiceKey
	wrong := []string{
		strings.Replace(key, "KEY", "KEX", 1), // one character off
		key[:len(key)-1],                      // truncated
		key + "0",                             // extended
		strings.ToUpper(key),
	}

	r := g.gql(key, `mutation { createWidgetSession(actAs: "alice", input: {providers: ["OURA"]}) { sessionId url } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("service acting for alice: %+v", r.Errors)
	}
	var created struct {
		S widgetSession `json:"createWidgetSession"`
	}
	if err := json.Unmarshal(r.Data, &created); err != nil {
		t.Fatal(err)
	}
	if _, err := g.emu.Complete(terraSessionID(t, created.S), "OURA", true); err != nil {
		t.Fatal(err)
	}
	alice := token(t, "alice")
	users := g.waitUsers(alice, false, "alice's connection", func(u []terraUser) bool { return len(u) == 1 })
	ops := map[string]string{
		"connectedUsers": `{ connectedUsers(actAs: "alice") { userId } }`,
		"sync":           `mutation { syncConnections(actAs: "alice") { userId } }`,
		"users":          `{ users(first: 5, referenceId: "alice") { totalCount edges { node { userId } } } }`,
		"webhookEvents":  `{ webhookEvents(first: 5) { edges { node { type body } } } }`,
		"auditLog":       `{ auditLog(first: 50) { edges { node { actor action subject clientIp detail { key value } } } } }`,
		"disconnect":     `mutation { disconnectUser(actAs: "alice", userId: "` + users[0].UserID + `") { status } }`,
	}
	for name, q := range ops {
		if r := g.gql(key, q, nil); len(r.Errors) > 0 {
			t.Errorf("%s: %+v", name, r.Errors)
		}
	}
	// Refusals: the service without actAs, actAs a reserved id, a batch and a malformed body.
	for name, q := range map[string]string{
		"no actAs":        `mutation { createWidgetSession { url } }`,
		"actAs a service": `{ connectedUsers(actAs: "svc:backend") { userId } }`,
	} {
		if r := g.gql(key, q, nil); len(r.Errors) == 0 {
			t.Errorf("%s was accepted: %s", name, r.Data)
		}
	}
	for _, body := range []string{`[{"query":"{ users { totalCount } }","variables":{"k":"` + key + `"}}]`, `{"query":"` + key} {
		if resp, raw := g.post(body, http.Header{"Authorization": {"Bearer " + key}}); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %d %s", body, resp.StatusCode, raw)
		}
	}
	// Wrong keys, by header and over WebSocket, and the key in the wrong place.
	for _, bad := range wrong {
		if r := g.gql(bad, ops["users"], nil); r.code() != "UNAUTHENTICATED" {
			t.Errorf("a wrong key: %+v", r)
		}
		if _, err := g.dialWS(bad, nil); err == nil {
			t.Error("a WebSocket with a wrong key was accepted")
		} else {
			g.seen.Write([]byte(err.Error()))
		}
	}
	for _, h := range []http.Header{{"Authorization": {"Basic " + key}}, {"Authorization": {"Bearer " + key, "Bearer " + key}}, {"X-Api-Key": {key}}} {
		resp, raw := g.post(`{"query":"{ users { totalCount } }"}`, h)
		if r := decodeGQL(t, raw); resp.StatusCode != 200 || r.code() != "UNAUTHENTICATED" {
			t.Errorf("key in %v: %d %s", h, resp.StatusCode, raw)
		}
	}

	// The scan proves something only if the logs saw the service's operations.
	opLines := strings.Count(g.logs.String(), `"msg":"graphql operation"`)
	if opLines < len(ops)+4 {
		t.Fatalf("only %d operation log lines; the scan would prove little", opLines)
	}
	everything := g.logs.String() + g.stdout.String() + g.seen.String()
	for _, secret := range append([]string{key, testAPIKey, testWebhookSecret, testJWTSecret, alice}, wrong...) {
		if i := strings.Index(everything, secret); i >= 0 {
			around := everything[max(0, i-80):min(len(everything), i+len(secret)+20)]
			t.Errorf("%.12s... appears in a log line or response: %q", secret, strings.ReplaceAll(around, secret, "<the secret>"))
		}
	}
}

// adminUser is a TerraUser node as the admin users query returns it.
type adminUser struct {
	UserID      string `json:"userId"`
	Provider    string `json:"provider"`
	ReferenceID string `json:"referenceId"`
	Status      string `json:"status"`
}

type usersPage struct {
	Users struct {
		TotalCount int `json:"totalCount"`
		Edges      []struct {
			Cursor string    `json:"cursor"`
			Node   adminUser `json:"node"`
		} `json:"edges"`
		PageInfo struct {
			HasNextPage bool    `json:"hasNextPage"`
			EndCursor   *string `json:"endCursor"`
		} `json:"pageInfo"`
	} `json:"users"`
}

const usersQuery = `query($first: Int, $after: String, $ref: String, $provider: String, $status: ConnectionStatus) {
  users(first: $first, after: $after, referenceId: $ref, provider: $provider, status: $status) {
    totalCount edges { cursor node { userId provider referenceId status } } pageInfo { hasNextPage endCursor }
  }
}`

func (g *gateway) usersPage(vars map[string]any) usersPage {
	g.t.Helper()
	r := g.gql(testServiceKey, usersQuery, vars)
	if len(r.Errors) > 0 {
		g.t.Fatalf("users(%v): %+v", vars, r.Errors)
	}
	var p usersPage
	if err := json.Unmarshal(r.Data, &p); err != nil {
		g.t.Fatal(err)
	}
	return p
}

// allUsers reads every page of users(vars) and checks the pages agree with each other.
func (g *gateway) allUsers(vars map[string]any, pageSize int) []adminUser {
	g.t.Helper()
	var out []adminUser
	vars["first"] = pageSize
	for pages := 0; ; pages++ {
		if pages > 20 {
			g.t.Fatal("users pages never end")
		}
		p := g.usersPage(vars)
		if len(p.Users.Edges) > pageSize {
			g.t.Fatalf("a page of %d holds %d", pageSize, len(p.Users.Edges))
		}
		for _, e := range p.Users.Edges {
			out = append(out, e.Node)
		}
		if n := p.Users.TotalCount; n < len(out) {
			g.t.Fatalf("totalCount %d, but %d read", n, len(out))
		}
		if !p.Users.PageInfo.HasNextPage {
			if p.Users.TotalCount != len(out) {
				g.t.Fatalf("totalCount %d, %d on all pages", p.Users.TotalCount, len(out))
			}
			return out
		}
		if p.Users.PageInfo.EndCursor == nil || len(p.Users.Edges) == 0 || *p.Users.PageInfo.EndCursor != p.Users.Edges[len(p.Users.Edges)-1].Cursor {
			g.t.Fatalf("pageInfo %+v with %d edges", p.Users.PageInfo, len(p.Users.Edges))
		}
		vars["after"] = *p.Users.PageInfo.EndCursor
	}
}

func ids(users []adminUser) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.UserID
	}
	slices.Sort(out)
	return out
}

func TestAdminUsersFiltersAndAudit(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey))
	connect := func(provider, ref string) string {
		u, err := g.emu.Connect(provider, ref)
		if err != nil {
			t.Fatal(err)
		}
		return u.UserID
	}
	aliceOura, aliceGarmin := connect("OURA", "alice"), connect("GARMIN", "alice")
	bobOura, carolFitbit, daveWithings := connect("OURA", "bob"), connect("FITBIT", "carol"), connect("WITHINGS", "dave")
	erinOura := connect("OURA", "erin")
	waitUsers := func(what string, cond func(map[string]adminUser) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			byID := map[string]adminUser{}
			for _, u := range g.allUsers(map[string]any{}, 100) {
				byID[u.UserID] = u
			}
			if cond(byID) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, byID)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	waitUsers("six connections", func(u map[string]adminUser) bool { return len(u) == 6 })

	// Each state a connection can be in: revoked at the provider, an error, removed at Terra
	// (a deauth webhook), and disconnected by the app (through a service acting for alice).
	if err := g.emu.RevokeAccess(bobOura); err != nil {
		t.Fatal(err)
	}
	if err := g.emu.ConnectionError(carolFitbit); err != nil {
		t.Fatal(err)
	}
	if err := g.emu.Deauth(daveWithings); err != nil {
		t.Fatal(err)
	}
	r := g.gql(testServiceKey, `mutation($id: ID!) { disconnectUser(actAs: "alice", userId: $id) { status active } }`, map[string]any{"id": aliceGarmin})
	if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"status":"DISCONNECTED"`) {
		t.Fatalf("disconnectUser: %+v %s", r.Errors, r.Data)
	}
	waitUsers("the new states", func(u map[string]adminUser) bool {
		return u[bobOura].Status == "REVOKED" && u[carolFitbit].Status == "ERROR" && u[daveWithings].Status == "DISCONNECTED"
	})

	for name, c := range map[string]struct {
		vars map[string]any
		want []string
	}{
		"everyone":              {map[string]any{}, []string{aliceOura, aliceGarmin, bobOura, carolFitbit, daveWithings, erinOura}},
		"referenceId":           {map[string]any{"ref": "alice"}, []string{aliceOura, aliceGarmin}},
		"provider":              {map[string]any{"provider": "OURA"}, []string{aliceOura, bobOura, erinOura}},
		"provider in lowercase": {map[string]any{"provider": "oura"}, []string{aliceOura, bobOura, erinOura}},
		"connected":             {map[string]any{"status": "CONNECTED"}, []string{aliceOura, erinOura}},
		"revoked":               {map[string]any{"status": "REVOKED"}, []string{bobOura}},
		"error":                 {map[string]any{"status": "ERROR"}, []string{carolFitbit}},
		"disconnected":          {map[string]any{"status": "DISCONNECTED"}, []string{aliceGarmin, daveWithings}},
		"all three":             {map[string]any{"ref": "alice", "provider": "OURA", "status": "CONNECTED"}, []string{aliceOura}},
		"no match":              {map[string]any{"ref": "alice", "status": "REVOKED"}, []string{}},
		"unknown reference":     {map[string]any{"ref": "nobody"}, []string{}},
	} {
		want := slices.Clone(c.want)
		slices.Sort(want)
		// Page sizes of 1 and 2 cross page boundaries; 100 reads everything at once.
		for _, size := range []int{1, 2, 100} {
			vars := map[string]any{}
			for k, v := range c.vars {
				vars[k] = v
			}
			if got := ids(g.allUsers(vars, size)); !slices.Equal(got, want) {
				t.Errorf("%s, pages of %d: %v, want %v", name, size, got, want)
			}
		}
	}
	// A cursor carries on where its page ended: page two starts after page one.
	p1 := g.usersPage(map[string]any{"first": 2, "provider": "OURA"})
	p2 := g.usersPage(map[string]any{"first": 2, "provider": "OURA", "after": *p1.Users.PageInfo.EndCursor})
	if len(p1.Users.Edges) != 2 || len(p2.Users.Edges) != 1 || !p1.Users.PageInfo.HasNextPage || p2.Users.PageInfo.HasNextPage ||
		p1.Users.TotalCount != 3 || p2.Users.TotalCount != 3 {
		t.Errorf("OURA pages: %+v then %+v", p1.Users, p2.Users)
	}
	for name, vars := range map[string]map[string]any{
		"page of 0":      {"first": 0},
		"page of 101":    {"first": 101},
		"forged cursor":  {"after": "bm90LWEtY3Vyc29y"},
		"unknown status": {"status": "LOST"},
	} {
		if r := g.gql(testServiceKey, usersQuery, vars); len(r.Errors) == 0 {
			t.Errorf("%s accepted: %s", name, r.Data)
		} else if c := r.code(); c != "BAD_USER_INPUT" && c != "GRAPHQL_VALIDATION_FAILED" {
			t.Errorf("%s: %+v", name, r.Errors)
		}
	}
	if r := g.gql(token(t, "alice"), usersQuery, map[string]any{"ref": "alice"}); r.code() != "FORBIDDEN" {
		t.Errorf("an end user listing users: %+v", r)
	}

	// The audit log: the app's disconnect, by the service for alice, and Terra's removal.
	type entry struct {
		Actor       string  `json:"actor"`
		ActorKind   string  `json:"actorKind"`
		Action      string  `json:"action"`
		Subject     *string `json:"subject"`
		ReferenceID *string `json:"referenceId"`
		ClientIP    *string `json:"clientIp"`
		Detail      []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"detail"`
	}
	audit := func(action string) []entry {
		t.Helper()
		r := g.gql(testServiceKey, `query($a: String) { auditLog(first: 100, action: $a) { edges { node { actor actorKind action subject referenceId clientIp detail { key value } } } } }`, map[string]any{"a": action})
		if len(r.Errors) > 0 {
			t.Fatalf("auditLog(%s): %+v", action, r.Errors)
		}
		for _, secret := range []string{testServiceKey, testAPIKey, testWebhookSecret, testJWTSecret, "Bearer"} {
			if strings.Contains(string(r.Data), secret) {
				t.Errorf("the audit log holds %.10s...", secret)
			}
		}
		var d struct {
			A struct {
				Edges []struct {
					Node entry `json:"node"`
				} `json:"edges"`
			} `json:"auditLog"`
		}
		if err := json.Unmarshal(r.Data, &d); err != nil {
			t.Fatal(err)
		}
		var out []entry
		for _, e := range d.A.Edges {
			if e.Node.Action != action {
				t.Errorf("auditLog(action: %s) returned %s", action, e.Node.Action)
			}
			out = append(out, e.Node)
		}
		return out
	}
	find := func(entries []entry, subject string) *entry {
		for i, e := range entries {
			if e.Subject != nil && *e.Subject == subject {
				return &entries[i]
			}
		}
		return nil
	}
	detail := func(e *entry, key string) string {
		for _, d := range e.Detail {
			if d.Key == key {
				return d.Value
			}
		}
		return ""
	}
	disconnected := audit("connection.disconnected")
	if e := find(disconnected, aliceGarmin); e == nil || e.Actor != "svc:backend" || e.ActorKind != "service" ||
		e.ReferenceID == nil || *e.ReferenceID != "alice" || e.ClientIP == nil || *e.ClientIP != "127.0.0.1" || detail(e, "provider") != "GARMIN" {
		t.Errorf("connection.disconnected for alice's Garmin: %+v in %+v", e, disconnected)
	}
	if len(disconnected) != 1 {
		t.Errorf("%d connection.disconnected entries, want 1: %+v", len(disconnected), disconnected)
	}
	var removed []entry
	deadline := time.Now().Add(5 * time.Second)
	for removed = audit("connection.removed"); find(removed, daveWithings) == nil && time.Now().Before(deadline); removed = audit("connection.removed") {
		time.Sleep(25 * time.Millisecond)
	}
	if e := find(removed, daveWithings); e == nil || e.Actor != "terra" || e.ActorKind != "terra" || e.ReferenceID == nil || *e.ReferenceID != "dave" ||
		detail(e, "provider") != "WITHINGS" || detail(e, "source") != "webhook" || detail(e, "status") != "DISCONNECTED" {
		t.Errorf("connection.removed for dave's Withings: %+v in %+v", e, removed)
	}
	if e := find(removed, bobOura); e == nil || detail(e, "status") != "REVOKED" {
		t.Errorf("connection.removed for bob's revoked Oura: %+v", e)
	}
	if e := find(removed, aliceOura); e != nil {
		t.Errorf("a connection still connected is recorded as removed: %+v", e)
	}
	// Every admin read above was recorded, with its filters.
	reads := audit("admin.read")
	filtered := false
	for _, e := range reads {
		if e.Actor != "svc:backend" {
			t.Errorf("admin.read by %s", e.Actor)
		}
		if e.Subject != nil && *e.Subject == "users" && detail(&e, "provider") == "OURA" && detail(&e, "status") == "" {
			filtered = true
		}
	}
	if !filtered {
		t.Errorf("no admin.read of users with provider OURA among %d reads", len(reads))
	}
}

// String shows a response as its JSON, for failure messages (Data is raw bytes otherwise).
func (r gqlResponse) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}
