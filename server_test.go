package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/auth"
	terragate "github.com/terragate/terragate/internal/gateway"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

// Test credentials. They are long and distinctive so that a leak is easy to spot.
const (
	testDevID         = "terragate-test-dev"
	testAPIKey        = "tk_live_APIKEY_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
	testWebhookSecret = "whsec_SECRET_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	testJWTSecret     = "jwt_SECRET_1234567890abcdef1234567890abcdef"
	appOrigin         = "https://app.example.com"
)

// syncBuffer collects what a running server writes, safe to read while it writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// public is the gateway's PUBLIC_URL: its default, http://localhost:<port>.
func (g *gateway) public() string { return strings.Replace(g.url, "127.0.0.1", "localhost", 1) }

// gateway is terragate's real run() serving on loopback, with the Terra emulator as a real
// HTTP server beside it.
type gateway struct {
	t      *testing.T
	url    string
	emu    *terrasim.Emulator
	emuURL string
	stdout *syncBuffer
	logs   *syncBuffer
	// seen collects every response body the tests read, for the leak check.
	seen *syncBuffer
	// stop begins the gateway's graceful shutdown, as SIGTERM would.
	stop func()
	// exited is closed once run has returned.
	exited chan struct{}
}

// setup is what a test may change before the gateway and the emulator start.
type setup struct {
	env map[string]string
	emu terrasim.Config
}

type option func(*setup)

func withEnv(k, v string) option { return func(s *setup) { s.env[k] = v } }

// withEmulator adjusts the emulator's configuration (its webhook URL is set afterwards
// unless the option clears noWebhooks).
func withEmulator(f func(*terrasim.Config)) option { return func(s *setup) { f(&s.emu) } }

// withoutWebhooks keeps the emulator from posting webhooks, as when they are delayed.
func withoutWebhooks() option { return func(s *setup) { s.emu.WebhookURL = "-" } }

// startGateway runs the gateway and an emulator that posts its webhooks to it.
func startGateway(t *testing.T, opts ...option) *gateway {
	t.Helper()
	emuLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, emuURL: "http://" + emuLn.Addr().String(), stdout: &syncBuffer{}, logs: &syncBuffer{}, seen: &syncBuffer{}}
	// The emulator needs the gateway's address for its webhooks, which is known only once
	// the gateway listens; the handler is set before any request can reach it.
	var emuHandler http.Handler
	emuSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { emuHandler.ServeHTTP(w, r) }), ReadHeaderTimeout: 5 * time.Second}

	env := map[string]string{
		"ADDR":                 "127.0.0.1:0",
		"DATABASE_URL":         testDatabaseURL(t),
		"TERRA_DEV_ID":         testDevID,
		"TERRA_API_KEY":        testAPIKey,
		"TERRA_WEBHOOK_SECRET": testWebhookSecret,
		"AUTH_JWT_SECRET":      testJWTSecret,
		"TERRA_API_URL":        g.emuURL + "/v2",
		"TERRA_WIDGET_URL":     g.emuURL + "/api/widget/session",
		"TERRA_TIMEOUT":        "2s",
		// One-shot faults below expect one attempt; TestTerraResilience turns retries on.
		"TERRA_RETRIES":        "0",
		"CORS_ALLOWED_ORIGINS": appOrigin,
		"LOG_LEVEL":            "debug",
		// The suite makes many calls quickly; TestRateLimits turns the limits on.
		"RATE_LIMIT_USER":           "off",
		"RATE_LIMIT_IP":             "off",
		"RATE_LIMIT_CREATE_SESSION": "off",
		"RATE_LIMIT_TERRA_CALLS":    "off",
		"RATE_LIMIT_SERVICE":        "off",
	}
	set := setup{env: env, emu: terrasim.Config{
		DevID:         testDevID,
		APIKey:        testAPIKey,
		WebhookSecret: testWebhookSecret,
		PublicURL:     g.emuURL,
		RetryDelays:   []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond},
	}}
	for _, o := range opts {
		o(&set)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	g.exited = make(chan struct{})
	go func() {
		done <- run(ctx, nil, func(k string) string { return env[k] }, g.stdout, g.logs)
		close(g.exited)
	}()
	g.url = waitListening(t, g.stdout, done)
	g.stop = cancel

	switch set.emu.WebhookURL {
	case "":
		set.emu.WebhookURL = g.url + "/webhooks/terra"
	case "-":
		set.emu.WebhookURL = ""
	}
	g.emu = terrasim.New(set.emu)
	emuHandler = g.emu
	go func() { _ = emuSrv.Serve(emuLn) }()

	t.Cleanup(func() {
		g.emu.Close()
		_ = emuSrv.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("gateway did not shut down")
		}
	})
	return g
}

// testEngineVar picks the store the end-to-end suite runs on: unset or "sqlite" for a
// SQLite file per test, "postgres" for a schema per test on the test PostgreSQL server.
// CI runs the suite both ways.
const testEngineVar = "TERRAGATE_TEST_DATABASE"

func testDatabaseURL(t *testing.T) string {
	t.Helper()
	switch e := os.Getenv(testEngineVar); e {
	case "", "sqlite":
		return "sqlite:" + filepath.Join(t.TempDir(), "terragate.db")
	case "postgres":
		return pgtest.NewSchema(t)
	default:
		t.Fatalf("%s=%q: want sqlite or postgres", testEngineVar, e)
		return ""
	}
}

var listeningLine = regexp.MustCompile(`listening on (http://\S+)`)

// waitListening waits for run to print its address, then for /healthz to answer 200.
func waitListening(t *testing.T, stdout *syncBuffer, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("run stopped early: %v", err)
		default:
		}
		if m := listeningLine.FindStringSubmatch(stdout.String()); m != nil {
			resp, err := http.Get(m[1] + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return m[1]
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("gateway did not start; stdout: %s", stdout.String())
	return ""
}

// token signs an end-user token the gateway accepts.
func token(t *testing.T, sub string) string {
	t.Helper()
	tok, err := auth.Issue([]byte(testJWTSecret), auth.IssueOptions{Subject: sub, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

func (r gqlResponse) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// gql posts one GraphQL operation with the given bearer token ("" for none).
func (g *gateway) gql(bearer, query string, vars map[string]any) gqlResponse {
	g.t.Helper()
	out, _ := g.gqlWithHeaders(nil, bearer, query, vars)
	return out
}

// gqlWithHeaders posts one GraphQL operation with extra request headers, and returns the answer
// and the response's headers.
func (g *gateway) gqlWithHeaders(header http.Header, bearer, query string, vars map[string]any) (gqlResponse, http.Header) {
	g.t.Helper()
	out, h, err := g.tryGQL(header, bearer, query, vars)
	if err != nil {
		g.t.Fatal(err)
	}
	return out, h
}

// tryGQL is gqlWithHeaders returning its failure instead of ending the test, for requests made
// from other goroutines (where t.Fatal would only end that goroutine).
func (g *gateway) tryGQL(header http.Header, bearer, query string, vars map[string]any) (gqlResponse, http.Header, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gqlResponse{}, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	g.seen.Write(raw)
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return gqlResponse{}, nil, fmt.Errorf("graphql answered %d %s", resp.StatusCode, raw)
	}
	return out, resp.Header, nil
}

type widgetSession struct {
	SessionID string    `json:"sessionId"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expiresAt"`
	CreatedAt time.Time `json:"createdAt"`
}

const createSession = `mutation($in: CreateWidgetSessionInput) {
  createWidgetSession(input: $in) { sessionId url expiresAt createdAt }
}`

func (g *gateway) createSession(bearer string, in map[string]any) widgetSession {
	g.t.Helper()
	r := g.gql(bearer, createSession, map[string]any{"in": in})
	if len(r.Errors) > 0 {
		g.t.Fatalf("createWidgetSession: %+v", r.Errors)
	}
	var d struct {
		S widgetSession `json:"createWidgetSession"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		g.t.Fatal(err)
	}
	return d.S
}

type terraUser struct {
	UserID            string     `json:"userId"`
	Provider          string     `json:"provider"`
	ReferenceID       *string    `json:"referenceId"`
	Active            bool       `json:"active"`
	Status            string     `json:"status"`
	Scopes            []string   `json:"scopes"`
	ConnectedAt       time.Time  `json:"connectedAt"`
	LastWebhookUpdate *time.Time `json:"lastWebhookUpdate"`
	UpdatedAt         time.Time  `json:"updatedAt"`
}

const listUsers = `query($all: Boolean) {
  connectedUsers(includeInactive: $all) {
    userId provider referenceId active status scopes connectedAt lastWebhookUpdate updatedAt
  }
}`

func (g *gateway) connectedUsers(bearer string, includeInactive bool) []terraUser {
	g.t.Helper()
	r := g.gql(bearer, listUsers, map[string]any{"all": includeInactive})
	if len(r.Errors) > 0 {
		g.t.Fatalf("connectedUsers: %+v", r.Errors)
	}
	var d struct {
		Users []terraUser `json:"connectedUsers"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		g.t.Fatal(err)
	}
	return d.Users
}

// waitUsers polls connectedUsers until cond holds: webhooks arrive asynchronously.
func (g *gateway) waitUsers(bearer string, includeInactive bool, what string, cond func([]terraUser) bool) []terraUser {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var users []terraUser
	for time.Now().Before(deadline) {
		users = g.connectedUsers(bearer, includeInactive)
		if cond(users) {
			return users
		}
		time.Sleep(25 * time.Millisecond)
	}
	g.t.Fatalf("timed out waiting for %s; last: %+v", what, users)
	return nil
}

var providerLink = regexp.MustCompile(`<a class="provider" href="([^"]+)">([^<]+)</a>`)

// connectInBrowser walks the widget as a browser would: the provider list, the provider's
// consent page, then Allow or Deny. It returns the redirect the widget answers with.
func connectInBrowser(t *testing.T, widgetURL, providerName, decision string) *url.URL {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(widgetURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("widget page: %d", resp.StatusCode)
	}
	var consent string
	for _, m := range providerLink.FindAllStringSubmatch(string(page), -1) {
		if m[2] == providerName {
			consent = m[1]
		}
	}
	if consent == "" {
		t.Fatalf("no %q button on the widget page:\n%s", providerName, page)
	}
	base, _ := url.Parse(widgetURL)
	ref, _ := url.Parse(strings.ReplaceAll(consent, "&amp;", "&"))
	consentURL := base.ResolveReference(ref).String()
	resp, err = client.Get(consentURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Allow") || !strings.Contains(string(page), "Deny") {
		t.Fatalf("consent page lacks Allow/Deny:\n%s", page)
	}
	resp, err = client.PostForm(consentURL, url.Values{"decision": {decision}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("consent answer: %d, want 303", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestWholeLoop(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")

	before := time.Now()
	s := g.createSession(alice, map[string]any{
		"providers":          []string{"oura", "GARMIN"},
		"language":           "en",
		"successRedirectUrl": appOrigin + "/connected?tab=devices",
		"failureRedirectUrl": appOrigin + "/failed",
	})
	if !strings.HasPrefix(s.URL, g.emuURL+"/widget/session/") || s.SessionID == "" {
		t.Fatalf("session = %+v", s)
	}
	if d := s.ExpiresAt.Sub(before); d < 899*time.Second || d > 901*time.Second+time.Since(before) {
		t.Errorf("expiresAt %v is not now + 900 s", s.ExpiresAt)
	}

	// What reached Terra: the server's credentials (checked by the emulator), the
	// authenticated user as reference_id, the providers joined by commas.
	reqs := g.emu.Requests()
	last := reqs[len(reqs)-1]
	if last.Path != "/api/widget/session" || last.Body["reference_id"] != "alice" ||
		last.Body["providers"] != "OURA,GARMIN" || last.Body["language"] != "en" {
		t.Errorf("Terra got %+v", last)
	}

	// Terra sends the browser back through terragate, which sends it on to the app.
	back := connectInBrowser(t, s.URL, "Oura", "allow")
	if !strings.HasPrefix(back.String(), g.public()+"/widget/return/"+s.SessionID) {
		t.Fatalf("widget redirect = %s", back)
	}
	_, loc := follow(t, back.String())
	q := loc.Query()
	if loc.Scheme+"://"+loc.Host+loc.Path != appOrigin+"/connected" || q.Get("tab") != "devices" ||
		q.Get("provider") != "OURA" || q.Get("status") != "COMPLETED" || q.Get("user_id") == "" {
		t.Fatalf("redirect = %s", loc)
	}

	users := g.waitUsers(alice, false, "the Oura connection", func(u []terraUser) bool { return len(u) == 1 })
	u := users[0]
	if u.UserID != q.Get("user_id") || u.Provider != "OURA" || u.Status != "CONNECTED" || !u.Active ||
		u.ReferenceID == nil || *u.ReferenceID != "alice" || len(u.Scopes) == 0 || u.LastWebhookUpdate == nil {
		t.Errorf("connected user = %+v", u)
	}
}

func TestUsersAreIsolated(t *testing.T) {
	g := startGateway(t)
	alice, bob := token(t, "alice"), token(t, "bob")

	sa := g.createSession(alice, map[string]any{"providers": []string{"OURA"}})
	sb := g.createSession(bob, map[string]any{"providers": []string{"GARMIN"}})
	if _, err := g.emu.Complete(terraSessionID(t, sa), "OURA", true); err != nil {
		t.Fatal(err)
	}
	if _, err := g.emu.Complete(terraSessionID(t, sb), "GARMIN", true); err != nil {
		t.Fatal(err)
	}
	ua := g.waitUsers(alice, true, "alice's connection", func(u []terraUser) bool { return len(u) == 1 })
	ub := g.waitUsers(bob, true, "bob's connection", func(u []terraUser) bool { return len(u) == 1 })
	if ua[0].Provider != "OURA" || ub[0].Provider != "GARMIN" || ua[0].UserID == ub[0].UserID {
		t.Errorf("alice sees %+v, bob sees %+v", ua, ub)
	}
	// A third user sees nothing at all.
	if got := g.connectedUsers(token(t, "carol"), true); len(got) != 0 {
		t.Errorf("carol sees %+v", got)
	}
}

func TestClientCannotChooseReferenceID(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	calls := len(g.emu.Requests())

	for name, q := range map[string]string{
		"input field":      `mutation { createWidgetSession(input: {referenceId: "bob"}) { url } }`,
		"snake case field": `mutation { createWidgetSession(input: {reference_id: "bob"}) { url } }`,
		"argument":         `mutation { createWidgetSession(referenceId: "bob") { url } }`,
	} {
		t.Run(name, func(t *testing.T) {
			r := g.gql(alice, q, nil)
			if len(r.Errors) == 0 || r.code() != "GRAPHQL_VALIDATION_FAILED" {
				t.Errorf("got %+v, want a validation error", r)
			}
		})
	}
	// Variables with extra fields are refused the same way.
	r := g.gql(alice, createSession, map[string]any{"in": map[string]any{"reference_id": "bob"}})
	if len(r.Errors) == 0 {
		t.Errorf("extra input field accepted: %+v", r)
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("Terra was called %d times", n-calls)
	}
	g.createSession(alice, nil)
	reqs := g.emu.Requests()
	if got := reqs[len(reqs)-1].Body["reference_id"]; got != "alice" {
		t.Errorf("reference_id sent = %v, want the token's sub", got)
	}
}

func TestAuthentication(t *testing.T) {
	g := startGateway(t, withEnv("AUTH_ISSUER", "https://auth.example.com"), withEnv("AUTH_AUDIENCE", "terragate"))
	issue := func(o auth.IssueOptions) string {
		t.Helper()
		tok, err := auth.Issue([]byte(testJWTSecret), o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := auth.IssueOptions{Subject: "alice", Issuer: "https://auth.example.com", Audience: "terragate", TTL: time.Hour}
	forged, _ := auth.Issue([]byte("another-secret-another-secret-xx"), valid)
	expired := valid
	expired.Now = time.Now().Add(-2 * time.Hour)
	future := valid
	future.Now = time.Now().Add(time.Hour)
	wrongIss := valid
	wrongIss.Issuer = "https://evil.example.com"
	wrongAud := valid
	wrongAud.Audience = "someone-else"

	calls := len(g.emu.Requests())
	for name, tok := range map[string]string{
		"missing":         "",
		"garbage":         "not-a-jwt",
		"forged":          forged,
		"expired":         issue(expired),
		"not yet valid":   issue(future),
		"wrong issuer":    issue(wrongIss),
		"wrong audience":  issue(wrongAud),
		"alg none":        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.",
		"truncated token": issue(valid)[:40],
	} {
		t.Run(name, func(t *testing.T) {
			for _, q := range []string{createSession, listUsers} {
				r := g.gql(tok, q, nil)
				if r.code() != "UNAUTHENTICATED" {
					t.Errorf("got %+v, want UNAUTHENTICATED", r)
				}
				if tok != "" && strings.Contains(r.Errors[0].Message, tok) {
					t.Errorf("error echoes the token")
				}
			}
		})
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("Terra was called %d times without a valid token", n-calls)
	}
	if r := g.gql(issue(valid), listUsers, nil); len(r.Errors) != 0 {
		t.Errorf("valid token refused: %+v", r.Errors)
	}
}

func TestRedirectAllowlist(t *testing.T) {
	g := startGateway(t, withEnv("ALLOWED_REDIRECT_URLS", appOrigin+"/connected, myapp://connected"))
	alice := token(t, "alice")
	calls := len(g.emu.Requests())
	for _, bad := range []string{
		"https://app.example.com.evil.net/connected",
		"https://evil.net/https://app.example.com/connected",
		"http://app.example.com/connected",
		"https://app.example.com:8443/connected",
		"https://app.example.com/connectedx",
		"https://app.example.com/other",
		"https://app.example.com@evil.net/connected",
		"https://app.example.com/connected/../admin",
		"javascript:alert(1)",
		"//evil.net/connected",
		"otherapp://connected",
		"not a url",
	} {
		for _, field := range []string{"successRedirectUrl", "failureRedirectUrl"} {
			r := g.gql(alice, createSession, map[string]any{"in": map[string]any{field: bad}})
			if r.code() != "BAD_USER_INPUT" || r.Errors[0].Extensions["field"] != field {
				t.Errorf("%s=%q: got %+v, want BAD_USER_INPUT on the field", field, bad, r)
			}
		}
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("Terra was called %d times for refused redirects", n-calls)
	}
	for _, good := range []string{
		"https://app.example.com/connected",
		"https://APP.example.com:443/connected/done?x=1",
		"myapp://connected?from=terra",
	} {
		g.createSession(alice, map[string]any{"successRedirectUrl": good, "failureRedirectUrl": good})
	}
}

func TestRedirectAllowlistDefaultsToCORSOrigins(t *testing.T) {
	g := startGateway(t) // ALLOWED_REDIRECT_URLS unset; CORS_ALLOWED_ORIGINS = appOrigin
	alice := token(t, "alice")
	g.createSession(alice, map[string]any{"successRedirectUrl": appOrigin + "/anything/at/all"})
	r := g.gql(alice, createSession, map[string]any{"in": map[string]any{"successRedirectUrl": "https://other.example.com/"}})
	if r.code() != "BAD_USER_INPUT" {
		t.Errorf("got %+v", r)
	}
}

func TestInputValidation(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	calls := len(g.emu.Requests())
	for name, in := range map[string]map[string]any{
		"provider with a comma": {"providers": []string{"OURA,GARMIN"}},
		"empty provider":        {"providers": []string{""}},
		"provider junk":         {"providers": []string{"<script>"}},
		"language junk":         {"language": "en; drop table"},
	} {
		r := g.gql(alice, createSession, map[string]any{"in": in})
		if r.code() != "BAD_USER_INPUT" {
			t.Errorf("%s: got %+v", name, r)
		}
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("Terra was called %d times for bad input", n-calls)
	}
}

// Every mutation that calls Terra presents the same failure the same way: Terra down, slow
// or unreachable (5xx, a timeout, no answer, an open circuit) is UPSTREAM_UNAVAILABLE, and
// a 4xx answer is UPSTREAM_ERROR; either carries Terra's status when it answered, and the
// wait as retryAfter when Terra gave one.
func TestTerraFailures(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	oura, err := g.emu.Connect("OURA", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if r := g.gql(alice, `mutation { syncConnections { userId } }`, nil); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	mutations := []struct {
		name, path, query string
		vars              map[string]any
	}{
		{"createWidgetSession", "/api/widget/session", createSession, nil},
		{"syncConnections", "/v2/userInfo", `mutation { syncConnections { userId } }`, nil},
		{"disconnectUser", "/v2/auth/deauthenticateUser", `mutation($id: ID!) { disconnectUser(userId: $id) { userId } }`, map[string]any{"id": oura.UserID}},
	}
	cases := []struct {
		name       string
		fault      terrasim.Fault
		code       string
		status     float64
		retryAfter float64
	}{
		{"400 legacy", terrasim.Fault{Status: 400, Body: `{"status":"error","message":"providers invalid"}`, ContentType: "application/json"}, "UPSTREAM_ERROR", 400, 0},
		{"401 problem", terrasim.Fault{Status: 401, Body: `{"type":"about:blank","title":"unauthorized","instance":"/v2/x","detail":"dev-id or x-api-key headers are missing"}`, ContentType: "application/problem+json"}, "UPSTREAM_ERROR", 401, 0},
		{"403", terrasim.Fault{Status: 403, Body: `{"status":"error","message":"invalid credentials"}`, ContentType: "application/json"}, "UPSTREAM_ERROR", 403, 0},
		{"429", terrasim.Fault{Status: 429, Body: `{"detail":"rate limit exceeded"}`, ContentType: "application/json", Header: http.Header{"Retry-After": {"30"}}}, "UPSTREAM_ERROR", 429, 30},
		{"500 empty", terrasim.Fault{Status: 500}, "UPSTREAM_UNAVAILABLE", 500, 0},
		{"502 html", terrasim.Fault{Status: 502, Body: "<html><body><h1>502 Bad Gateway</h1></body></html>", ContentType: "text/html"}, "UPSTREAM_UNAVAILABLE", 502, 0},
		{"503 with Retry-After", terrasim.Fault{Status: 503, Header: http.Header{"Retry-After": {"7"}}}, "UPSTREAM_UNAVAILABLE", 503, 7},
		{"timeout", terrasim.Fault{Delay: 3 * time.Second}, "UPSTREAM_UNAVAILABLE", 0, 0},
	}
	for _, c := range cases {
		for _, m := range mutations {
			t.Run(c.name+"/"+m.name, func(t *testing.T) {
				c.fault.Times = 1
				g.emu.Fail(m.path, c.fault)
				r := g.gql(alice, m.query, m.vars)
				if r.code() != c.code {
					t.Fatalf("got %+v, want %s", r, c.code)
				}
				e := r.Errors[0]
				if e.Extensions["status"] != c.status && (c.status != 0 || e.Extensions["status"] != nil) {
					t.Errorf("status = %v, want %v", e.Extensions["status"], c.status)
				}
				if c.retryAfter != 0 && e.Extensions["retryAfter"] != c.retryAfter {
					t.Errorf("retryAfter = %v, want %v", e.Extensions["retryAfter"], c.retryAfter)
				}
				if _, ok := e.Extensions["retryAfterSeconds"]; ok {
					t.Errorf("the wait under a second name: %v", e.Extensions)
				}
				if strings.Contains(e.Message, "<html") || strings.Contains(e.Message, testAPIKey) {
					t.Errorf("message leaks: %q", e.Message)
				}
			})
		}
	}
	// Terra down altogether.
	g.emu.Close()
	bad := startGateway(t, withEnv("TERRA_API_URL", "http://127.0.0.1:1/v2"), withEnv("TERRA_WIDGET_URL", "http://127.0.0.1:1/api/widget/session"))
	if r := bad.gql(alice, createSession, nil); r.code() != "UPSTREAM_UNAVAILABLE" {
		t.Errorf("closed port: got %+v", r)
	}
}

// An argument the store refuses is BAD_USER_INPUT saying which argument and why, and
// naming it in extensions.field; only a bad page size speaks of page sizes.
func TestInvalidArguments(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey))
	for _, c := range []struct {
		query, field, says string
	}{
		{`{ users(first: 0) { totalCount } }`, "first", "1 to 100"},
		{`{ users(after: "bm90LWEtY3Vyc29y") { totalCount } }`, "after", "cursor"},
		{`{ webhookEvents(outcome: "lost") { pageInfo { hasNextPage } } }`, "outcome", "lost"},
		{`{ webhookEvents(source: "carrier-pigeon") { pageInfo { hasNextPage } } }`, "source", "carrier-pigeon"},
		{`{ auditLog(action: "session.exploded") { pageInfo { hasNextPage } } }`, "action", "session.exploded"},
		{`{ auditLog(after: "bm90LWEtY3Vyc29y") { pageInfo { hasNextPage } } }`, "after", "cursor"},
	} {
		r := g.gql(testServiceKey, c.query, nil)
		if r.code() != "BAD_USER_INPUT" {
			t.Errorf("%s: %+v", c.query, r)
			continue
		}
		e := r.Errors[0]
		if e.Extensions["field"] != c.field || !strings.Contains(e.Message, c.field) || !strings.Contains(e.Message, c.says) {
			t.Errorf("%s: %q %v, want it to name %s and say %q", c.query, e.Message, e.Extensions, c.field, c.says)
		}
		if c.field != "first" && strings.Contains(e.Message, "page size") {
			t.Errorf("%s: a paging message for another argument: %q", c.query, e.Message)
		}
	}
}

// TestWidgetEndpointOrder: the 2026 widget endpoint is asked first; the legacy one only
// once the new one answers 404 (an account not moved yet) or 410, and then for good.
func TestWidgetEndpointOrder(t *testing.T) {
	count := func(g *gateway) (legacy, current int) {
		for _, r := range g.emu.Requests() {
			switch r.Path {
			case "/v2/auth/generateWidgetSession":
				legacy++
			case "/api/widget/session":
				current++
			}
		}
		return legacy, current
	}
	providers := []string{"OURA", "GARMIN", "FITBIT"} // different input: no session is reused
	t.Run("new endpoint first", func(t *testing.T) {
		g := startGateway(t, withEmulator(func(c *terrasim.Config) { c.LegacyGone = true }))
		alice := token(t, "alice")
		for _, p := range providers {
			if s := g.createSession(alice, map[string]any{"providers": []string{p}, "showDisconnect": true}); s.URL == "" {
				t.Fatal("no url")
			}
		}
		if legacy, current := count(g); legacy != 0 || current != 3 {
			t.Errorf("legacy calls = %d, new endpoint calls = %d; want 0 and 3", legacy, current)
		}
		if got := g.emu.Requests()[0].Body["show_disconnect"]; got != true {
			t.Errorf("show_disconnect sent as %v", got)
		}
	})
	for _, c := range []struct {
		name string
		emu  func(*terrasim.Config)
	}{
		{"legacy after a 404", func(c *terrasim.Config) { c.LegacyOnly = true }},
		{"legacy after a 410", func(*terrasim.Config) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, withEmulator(c.emu))
			if c.name == "legacy after a 410" {
				g.emu.Fail("/api/widget/session", terrasim.Fault{Status: http.StatusGone, Body: `{"status":"error","message":"gone"}`, ContentType: "application/json", Times: 100})
			}
			alice := token(t, "alice")
			for _, p := range providers {
				if s := g.createSession(alice, map[string]any{"providers": []string{p}}); s.URL == "" {
					t.Fatal("no url")
				}
			}
			if legacy, current := count(g); legacy != 3 || current != 1 {
				t.Errorf("legacy calls = %d, new endpoint calls = %d; want 3 and 1", legacy, current)
			}
			if got := g.emu.Requests()[1].Body["show_disconnect"]; got != nil {
				t.Errorf("show_disconnect sent unasked: %v", got)
			}
			if n := strings.Count(g.logs.String(), "using the legacy generateWidgetSession"); n != 1 {
				t.Errorf("the switch was logged %d times, want once", n)
			}
		})
	}
}

// signed posts a webhook body signed at time at.
func (g *gateway) postWebhook(body []byte, header http.Header) (*http.Response, string) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.url+"/webhooks/terra", bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	g.seen.Write(raw)
	return resp, string(raw)
}

func signedHeader(body []byte, at time.Time, traceID string) http.Header {
	h := http.Header{}
	h.Set("terra-signature", terra.Sign([]byte(testWebhookSecret), at, body))
	if traceID != "" {
		h.Set("X-Terra-Trace-Id", traceID)
	}
	return h
}

func authEvent(userID, provider, ref string) []byte {
	b, _ := json.Marshal(map[string]any{
		"type": "auth", "status": "success", "reference_id": ref, "widget_session_id": nil,
		"message": "User has successfully authenticated", "version": "2022-03-16",
		"user": map[string]any{"user_id": userID, "provider": provider, "reference_id": ref, "active": true,
			"scopes": "activity:read,sleep:read", "created_at": "2026-11-25T10:00:00.000000+00:00", "last_webhook_update": nil},
	})
	return b
}

func userEvent(typ, status, userID, provider, ref string) []byte {
	b, _ := json.Marshal(map[string]any{
		"type": typ, "status": status, "message": typ,
		"user": map[string]any{"user_id": userID, "provider": provider, "reference_id": ref, "active": typ != "deauth" && typ != "access_revoked"},
	})
	return b
}

func TestWebhookEndpoint(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	now := time.Now()
	body := authEvent("u-1", "OURA", "alice")

	cases := []struct {
		name   string
		body   []byte
		header http.Header
		status int
	}{
		{"no signature", body, http.Header{}, 401},
		{"wrong secret", body, http.Header{"Terra-Signature": {terra.Sign([]byte("not-the-secret"), now, body)}}, 401},
		{"tampered body", bytes.Replace(body, []byte("u-1"), []byte("u-2"), 1), signedHeader(body, now, ""), 401},
		// Signed times are whole seconds and the server reads its clock a little later, so
		// these stay a few seconds clear of 300 s; internal/terra tests the exact boundary.
		{"stale, 305 s old", body, signedHeader(body, now.Add(-305*time.Second), ""), 401},
		{"from the future, 305 s", body, signedHeader(body, now.Add(305*time.Second), ""), 401},
		{"garbage header", body, http.Header{"Terra-Signature": {"t=abc,v1=zz"}}, 401},
		{"not JSON", []byte("hello"), signedHeader([]byte("hello"), now, ""), 400},
		{"auth without user", []byte(`{"type":"auth","status":"success"}`), signedHeader([]byte(`{"type":"auth","status":"success"}`), now, ""), 400},
		// Streamed, not refused (over WEBHOOK_MAX_BYTES is: TestLargeBodyRelayedByteForByte).
		{"over 1 MiB, not JSON", bytes.Repeat([]byte("x"), 1<<20+1), signedHeader(bytes.Repeat([]byte("x"), 1<<20+1), now, ""), 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, raw := g.postWebhook(c.body, c.header)
			if resp.StatusCode != c.status {
				t.Errorf("status %d %s, want %d", resp.StatusCode, raw, c.status)
			}
			var msg map[string]string
			if err := json.Unmarshal([]byte(raw), &msg); err != nil || msg["error"] == "" {
				t.Errorf("body %q is not a JSON error", raw)
			}
		})
	}
	if got := g.connectedUsers(alice, true); len(got) != 0 {
		t.Fatalf("refused webhooks changed the store: %+v", got)
	}

	// Accepted: both header names, 300 s either way, several v1 values.
	ok := []struct {
		name   string
		header http.Header
	}{
		{"X-Terra-Signature, 295 s old", http.Header{"X-Terra-Signature": {terra.Sign([]byte(testWebhookSecret), now.Add(-295*time.Second), body)}}},
		{"several v1", http.Header{"Terra-Signature": {strings.Replace(terra.Sign([]byte(testWebhookSecret), now, body), "v1=", "v1=00ff,v0=abc,v1=", 1)}}},
	}
	for _, c := range ok {
		resp, raw := g.postWebhook(body, c.header)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, raw)
		}
	}
	if got := g.connectedUsers(alice, false); len(got) != 1 || got[0].UserID != "u-1" {
		t.Errorf("after a valid auth: %+v", got)
	}

	// Unknown types are acknowledged and ignored.
	for _, typ := range []string{"healthcheck", "activity", "large_request_processing", "something_new"} {
		b := []byte(`{"type":"` + typ + `","status":"success","data":[]}`)
		if resp, raw := g.postWebhook(b, signedHeader(b, now, "")); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", typ, resp.StatusCode, raw)
		}
	}
	// Only POST.
	resp, err := http.Get(g.url + "/webhooks/terra")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

func TestWebhookEventsThroughTheEmulator(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	connect := func(provider string) string {
		t.Helper()
		s := g.createSession(alice, map[string]any{"providers": []string{provider}})
		if _, err := g.emu.Complete(terraSessionID(t, s), provider, true); err != nil {
			t.Fatal(err)
		}
		var id string
		g.waitUsers(alice, true, provider+" connected", func(us []terraUser) bool {
			for _, u := range us {
				if u.Provider == provider && u.Status == "CONNECTED" {
					id = u.UserID
					return true
				}
			}
			return false
		})
		return id
	}
	find := func(us []terraUser, id string) (terraUser, bool) {
		for _, u := range us {
			if u.UserID == id {
				return u, true
			}
		}
		return terraUser{}, false
	}
	waitState := func(id, status string, listed bool) {
		t.Helper()
		g.waitUsers(alice, true, id+" "+status, func(us []terraUser) bool {
			u, ok := find(us, id)
			return ok && u.Status == status
		})
		_, shown := find(g.connectedUsers(alice, false), id)
		if shown != listed {
			t.Errorf("%s %s: listed by default = %v, want %v", id, status, shown, listed)
		}
	}

	oura := connect("OURA")
	if err := g.emu.ChangePermissions(oura, []string{"heart:read"}, []string{"sleep:read"}); err != nil {
		t.Fatal(err)
	}
	g.waitUsers(alice, false, "scopes changed", func(us []terraUser) bool {
		u, _ := find(us, oura)
		return strings.Contains(strings.Join(u.Scopes, ","), "heart:read") && !strings.Contains(strings.Join(u.Scopes, ","), "sleep:read")
	})
	if err := g.emu.ConnectionError(oura); err != nil {
		t.Fatal(err)
	}
	waitState(oura, "ERROR", true)

	garmin := connect("GARMIN")
	if err := g.emu.Deauth(garmin); err != nil {
		t.Fatal(err)
	}
	waitState(garmin, "DISCONNECTED", false)

	fitbit := connect("FITBIT")
	if err := g.emu.RevokeAccess(fitbit); err != nil {
		t.Fatal(err)
	}
	waitState(fitbit, "REVOKED", false)

	withings := connect("WITHINGS")
	newUser, err := g.emu.Reauth(withings)
	if err != nil {
		t.Fatal(err)
	}
	waitState(newUser.UserID, "CONNECTED", true)
	if _, ok := find(g.connectedUsers(alice, true), withings); ok {
		t.Errorf("the replaced user %s is still listed", withings)
	}

	// Deny: auth_cancelled is recorded, nothing connects.
	s := g.createSession(alice, map[string]any{"providers": []string{"POLAR"}})
	if _, err := g.emu.Complete(terraSessionID(t, s), "POLAR", false); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, g.emu, "auth_cancelled")
	for _, u := range g.connectedUsers(alice, true) {
		if u.Provider == "POLAR" {
			t.Errorf("a denied connection is listed: %+v", u)
		}
	}
}

func waitDelivered(t *testing.T, emu *terrasim.Emulator, typ string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, d := range emu.Deliveries() {
			if d.Type == typ && d.Delivered {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s webhook was delivered: %+v", typ, emu.Deliveries())
}

func TestWebhookDuplicatesAndOrder(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey))
	alice := token(t, "alice")
	now := time.Now()

	// The same delivery twice (same trace id): applied once.
	auth := authEvent("u-dup", "OURA", "alice")
	for i := 0; i < 2; i++ {
		if resp, raw := g.postWebhook(auth, signedHeader(auth, now, "trace-1")); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, raw)
		} else if i == 1 && !strings.Contains(raw, `"duplicate":true`) {
			t.Errorf("second delivery not reported as duplicate: %s", raw)
		}
	}
	// Without a trace id, the same body is the same delivery, even signed again later: the
	// second is acknowledged as a duplicate and the inbox holds it once.
	deauth := userEvent("deauth", "success", "u-dup", "OURA", "alice")
	for i, at := range []time.Time{now.Add(time.Second), now.Add(3 * time.Second)} {
		resp, raw := g.postWebhook(deauth, signedHeader(deauth, at, ""))
		if resp.StatusCode/100 != 2 || strings.Contains(raw, `"duplicate":true`) != (i == 1) {
			t.Fatalf("deauth without a trace id, delivery %d: %d %s", i+1, resp.StatusCode, raw)
		}
	}
	r := g.gql(testServiceKey, `{ webhookEvents(type: "deauth") { edges { node { traceId outcome body } } } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("webhookEvents: %+v", r.Errors)
	}
	var inbox struct {
		W struct {
			Edges []struct {
				Node struct {
					TraceID *string `json:"traceId"`
					Outcome string  `json:"outcome"`
					Body    string  `json:"body"`
				} `json:"node"`
			} `json:"edges"`
		} `json:"webhookEvents"`
	}
	if err := json.Unmarshal(r.Data, &inbox); err != nil {
		t.Fatal(err)
	}
	if e := inbox.W.Edges; len(e) != 1 || e[0].Node.Body != string(deauth) || e[0].Node.TraceID != nil || e[0].Node.Outcome != "applied" {
		t.Errorf("inbox after the same body twice: %s", r.Data)
	}
	// A late retry of the auth, under a new trace id and a newer signature, must not
	// revive the disconnected user.
	g.postWebhook(auth, signedHeader(auth, now.Add(2*time.Second), "trace-late"))
	us := g.connectedUsers(alice, true)
	if len(us) != 1 || us[0].Status != "DISCONNECTED" || us[0].Active {
		t.Errorf("after auth, deauth, late auth: %+v", us)
	}

	// Deauth before auth (out of order): the user never shows as connected.
	d2 := userEvent("deauth", "success", "u-ooo", "GARMIN", "alice")
	g.postWebhook(d2, signedHeader(d2, now.Add(5*time.Second), ""))
	a2 := authEvent("u-ooo", "GARMIN", "alice")
	g.postWebhook(a2, signedHeader(a2, now, ""))
	for _, u := range g.connectedUsers(alice, false) {
		if u.UserID == "u-ooo" {
			t.Errorf("deauth-then-auth left the user listed: %+v", u)
		}
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	s := g.createSession(alice, map[string]any{"providers": []string{"OURA"}, "successRedirectUrl": appOrigin + "/ok"})
	connectInBrowser(t, s.URL, "Oura", "allow")
	g.waitUsers(alice, false, "connection", func(u []terraUser) bool { return len(u) == 1 })
	// Failures too: Terra errors, bad tokens, bad webhooks.
	g.emu.Fail("/api/widget/session", terrasim.Fault{Status: 403, Body: `{"status":"error","message":"bad key"}`, ContentType: "application/json", Times: 1})
	g.gql(alice, createSession, nil)
	g.gql("garbage."+testJWTSecret, listUsers, nil)
	b := []byte(`{"type":"auth"}`)
	g.postWebhook(b, http.Header{"Terra-Signature": {"t=1,v1=" + testWebhookSecret}})
	// Playground page.
	resp, err := http.Get(g.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g.seen.Write(page)

	// Each operation's line carries the request id and the caller only as a hash.
	ops := 0
	for _, line := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"graphql operation"`) {
			ops++
			if !strings.Contains(line, `"request_id":"`) || strings.Contains(line, `"alice"`) {
				t.Errorf("operation log line: %s", line)
			}
		}
	}
	if ops == 0 || !strings.Contains(g.logs.String(), `"user_hash":"`+graph.UserHash(terragate.UserHashKey(testWebhookSecret), "alice")+`"`) {
		t.Errorf("no operation lines with alice's hash (%d lines)", ops)
	}
	everything := g.logs.String() + g.stdout.String() + g.seen.String()
	if !strings.Contains(g.logs.String(), "webhook received") {
		t.Fatal("the log capture saw nothing; the check would prove nothing")
	}
	for name, secret := range map[string]string{"API key": testAPIKey, "webhook secret": testWebhookSecret, "JWT secret": testJWTSecret, "bearer token": alice} {
		if strings.Contains(everything, secret) {
			t.Errorf("the %s appears in a log line or a response", name)
		}
	}
}

func TestCORS(t *testing.T) {
	g := startGateway(t)
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, g.url+"/graphql", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight(appOrigin)
	if resp.Header.Get("Access-Control-Allow-Origin") != appOrigin ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("allowed origin: %v", resp.Header)
	}
	if got := preflight("https://evil.example.com").Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("other origin allowed: %q", got)
	}

	// No origins configured: no cross-origin access at all (rs/cors would allow any).
	closed := startGateway(t, withEnv("CORS_ALLOWED_ORIGINS", ""))
	req, _ := http.NewRequest(http.MethodOptions, closed.url+"/graphql", nil)
	req.Header.Set("Origin", appOrigin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("with no origins configured, %q was allowed", got)
	}
}

func TestPlaygroundAndIntrospection(t *testing.T) {
	const introspect = `{ __schema { queryType { name } } }`
	on := startGateway(t)
	resp, err := http.Get(on.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "graphiql") {
		t.Errorf("playground: %d", resp.StatusCode)
	}
	if r := on.gql("", introspect, nil); len(r.Errors) != 0 {
		t.Errorf("introspection refused: %+v", r.Errors)
	}

	off := startGateway(t, withEnv("PLAYGROUND", "false"))
	resp, err = http.Get(off.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
		t.Errorf("playground off: / answered %d %s", resp.StatusCode, body)
	}
	if r := off.gql(token(t, "alice"), introspect, nil); len(r.Errors) == 0 {
		t.Errorf("introspection allowed with PLAYGROUND=false")
	}
}

func TestGETQueries(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	get := func(q string) gqlResponse {
		req, _ := http.NewRequest(http.MethodGet, g.url+"/graphql?query="+url.QueryEscape(q), nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out gqlResponse
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	if r := get(`{ connectedUsers { userId } }`); len(r.Errors) != 0 || string(r.Data) != `{"connectedUsers":[]}` {
		t.Errorf("GET query: %+v %s", r.Errors, r.Data)
	}
	calls := len(g.emu.Requests())
	if r := get(`mutation { createWidgetSession { url } }`); len(r.Errors) == 0 {
		t.Errorf("GET mutation accepted")
	}
	if len(g.emu.Requests()) != calls {
		t.Errorf("a GET mutation reached Terra")
	}
}

func TestRequiredSettings(t *testing.T) {
	full := map[string]string{
		"TERRA_DEV_ID": "d", "TERRA_API_KEY": "k", "TERRA_WEBHOOK_SECRET": "w", "AUTH_JWT_SECRET": "j",
		"ADDR": "127.0.0.1:0", "DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "x.db"),
	}
	for _, name := range []string{"TERRA_DEV_ID", "TERRA_API_KEY", "TERRA_WEBHOOK_SECRET", "AUTH_JWT_SECRET"} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range full {
				if k != name {
					env[k] = v
				}
			}
			err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("err = %v, want one naming %s", err, name)
			}
		})
	}
}

// startDemo runs `terragate -demo` on loopback and returns its address, the bearer token it
// printed, and its logs.
func startDemo(t *testing.T) (base, bearer string, logs *syncBuffer) {
	t.Helper()
	stdout := &syncBuffer{}
	logs = &syncBuffer{}
	env := map[string]string{"DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "demo.db")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-demo", "-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, stdout, logs)
	}()
	base = waitListening(t, stdout, done)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	m := regexp.MustCompile(`Bearer token:\s+(\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no token printed:\n%s", stdout.String())
	}
	return base, m[1], logs
}

func TestDemo(t *testing.T) {
	base, bearer, _ := startDemo(t)
	g := &gateway{t: t, url: base, seen: &syncBuffer{}}
	public := strings.Replace(base, "127.0.0.1", "localhost", 1)
	s := g.createSession(bearer, map[string]any{"providers": []string{"OURA", "GARMIN"}, "successRedirectUrl": public + "/demo/return"})
	if !strings.HasPrefix(s.URL, public+"/terra/widget/session/") {
		t.Fatalf("widget url %s is not on the demo's own port", s.URL)
	}
	back := connectInBrowser(t, strings.Replace(s.URL, "localhost", "127.0.0.1", 1), "Oura", "allow")
	_, loc := follow(t, strings.Replace(back.String(), "localhost", "127.0.0.1", 1))
	if loc.Path != "/demo/return" || loc.Query().Get("provider") != "OURA" || loc.Query().Get("status") != "COMPLETED" {
		t.Errorf("redirect = %s", loc)
	}
	resp, err := http.Get(base + loc.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "OURA") {
		t.Errorf("return page: %d", resp.StatusCode)
	}
	users := g.waitUsers(bearer, false, "the demo connection", func(u []terraUser) bool { return len(u) == 1 })
	if users[0].Provider != "OURA" || *users[0].ReferenceID != "demo-user" {
		t.Errorf("demo user's connections: %+v", users)
	}
	// The SDK loop: a token and the issued reference from terragate, then the demo's phone
	// connects Apple Health with them through the emulator.
	tok := g.sdkToken(bearer, nil)
	phone := func(ref string) int {
		body, _ := json.Marshal(map[string]string{"token": tok.Token, "provider": "APPLE", "reference_id": ref})
		resp, err := http.Post(base+"/demo/phone", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := phone(tok.ReferenceID); code != http.StatusOK {
		t.Fatalf("demo phone: status %d", code)
	}
	users = g.waitUsers(bearer, false, "the demo's SDK connection", func(u []terraUser) bool { return len(u) == 2 })
	if !slices.ContainsFunc(users, func(u terraUser) bool { return u.Provider == "APPLE" && *u.ReferenceID == "demo-user" }) {
		t.Errorf("demo user's connections after the phone: %+v", users)
	}
	if code := phone(tok.ReferenceID); code != http.StatusGone {
		t.Errorf("the token worked twice: status %d", code)
	}
	// The playground has the token filled in.
	resp, err = http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Bearer "+bearer) {
		t.Errorf("the playground does not carry the demo token")
	}
}

func TestEmulatorCommand(t *testing.T) {
	stdout := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"terra-emulator", "-addr", "127.0.0.1:0", "-dev-id", "D", "-api-key", "K"}, func(string) string { return "" }, stdout, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var base string
	for i := 0; i < 500 && base == ""; i++ {
		if m := regexp.MustCompile(`listening on (http://\S+?):?\s`).FindStringSubmatch(stdout.String()); m != nil {
			base = strings.TrimSuffix(m[1], ":")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if base == "" {
		t.Fatalf("emulator did not start: %s", stdout.String())
	}
	tc := terra.New(terra.Config{BaseURL: base + "/v2", WidgetURL: base + "/api/widget/session", DevID: "D", APIKey: "K", Timeout: 2 * time.Second}, nil, nil)
	s, err := tc.GenerateWidgetSession(ctx, terra.WidgetSessionParams{ReferenceID: "x", Providers: "OURA"})
	if err != nil || s.URL == "" || s.ExpiresIn != 900 {
		t.Errorf("session = %+v, %v", s, err)
	}
	bad := terra.New(terra.Config{BaseURL: base + "/v2", WidgetURL: base + "/api/widget/session", DevID: "D", APIKey: "wrong", Timeout: 2 * time.Second}, nil, nil)
	if _, err := bad.GenerateWidgetSession(ctx, terra.WidgetSessionParams{}); err == nil {
		t.Error("wrong key accepted")
	}
}
