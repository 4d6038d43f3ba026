package main

// Attacks on the running gateway, each expected to fail. Token forgery, cross-user access
// and redirect bypasses are in server_test.go and server_lifecycle_test.go beside the
// features they attack, identity-provider tokens and service keys in server_auth_test.go;
// the ones here are about request shape, CSRF, limits and webhook replay.

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

// post sends body to /graphql as JSON and returns the response (its body read) and body.
func (g *gateway) post(body string, header http.Header) (*http.Response, string) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	g.seen.Write(b)
	return resp, string(b)
}

func (g *gateway) raw(method, contentType, body string, header http.Header) (int, string) {
	g.t.Helper()
	req, _ := http.NewRequest(method, g.url+"/graphql", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAttackQueryShape(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	calls := len(g.emu.Requests())

	deep := `{ widgetSession(id: "x") { terraUser { userId } } }`
	if r := g.gql(alice, deep, nil); len(r.Errors) > 0 {
		t.Fatalf("an honest nested query was refused: %+v", r.Errors)
	}
	// The playground's own introspection query (graphql-js's, with its 7-deep ofType chain)
	// must pass.
	if r := g.gql(alice, graphiqlIntrospection, nil); len(r.Errors) > 0 {
		t.Fatalf("the playground's introspection was refused: %+v", r.Errors)
	}
	// Fragments cannot hide depth or aliases.
	var spread strings.Builder
	spread.WriteString(`query { connectedUsers { ...a } } fragment a on TerraUser { userId `)
	for i := 0; i < 20; i++ {
		spread.WriteString(`a` + string(rune('a'+i)) + `: userId `)
	}
	spread.WriteString(`}`)

	var aliases strings.Builder
	aliases.WriteString("mutation {")
	for i := 0; i < 30; i++ {
		aliases.WriteString(" s" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `: createWidgetSession { url }`)
	}
	aliases.WriteString("}")

	for name, c := range map[string]struct{ query, code string }{
		"aliases in a fragment":  {spread.String(), CodeTooManyAliasesForTest},
		"alias-amplified Terra":  {aliases.String(), CodeTooManyAliasesForTest},
		"introspection too deep": {`{ __schema { types { fields { type { ` + strings.Repeat("ofType { ", 14) + "name" + strings.Repeat(" }", 18) + " }", "QUERY_TOO_DEEP"},
	} {
		r := g.gql(alice, c.query, nil)
		if r.code() != c.code {
			t.Errorf("%s: got %+v, want %s", name, r, c.code)
		}
	}
	// Costly fields: few aliases, but each calls Terra.
	var costly strings.Builder
	costly.WriteString("mutation {")
	for i := 0; i < 12; i++ {
		costly.WriteString(" s" + string(rune('a'+i)) + `: syncConnections { userId }`)
	}
	costly.WriteString("}")
	if r := g.gql(alice, costly.String(), nil); r.code() != "COMPLEXITY_LIMIT_EXCEEDED" {
		t.Errorf("12 syncs in one operation: %+v", r)
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("refused operations reached Terra %d times", n-calls)
	}

	// Batched requests (a JSON array of operations) are not supported at all, and neither
	// a batch nor a malformed body is quoted back: it may carry a token or a user's data.
	const marker = "MARKER_d41d8cd98f00b204"
	for name, c := range map[string]struct {
		body, code string
	}{
		"batch":            {`[{"query":"{ connectedUsers { userId } }"},{"query":"mutation { createWidgetSession { url } }","variables":{"m":"` + marker + `"}}]`, "BATCHING_NOT_SUPPORTED"},
		"batch of one":     {`[{"query":"mutation { createWidgetSession { url } }","variables":{"m":"` + marker + `"}}]`, "BATCHING_NOT_SUPPORTED"},
		"truncated JSON":   {`{"query":"mutation { createWidgetSession { url } }","variables":{"m":"` + marker, "MALFORMED_REQUEST"},
		"two objects":      {`{"query":"mutation { createWidgetSession { url } }"}{"query":"` + marker + `"}`, "MALFORMED_REQUEST"},
		"query not string": {`{"query":{"m":"` + marker + `"}}`, "MALFORMED_REQUEST"},
		"variables a list": {`{"query":"{ connectedUsers { userId } }","variables":["` + marker + `"]}`, "MALFORMED_REQUEST"},
		"not an object":    {`"` + marker + `"`, "MALFORMED_REQUEST"},
		"an empty body":    {``, "MALFORMED_REQUEST"},
	} {
		code, body := g.raw(http.MethodPost, "application/json", c.body, http.Header{"Authorization": {"Bearer " + alice}})
		r := decodeGQL(t, body)
		if code != http.StatusBadRequest || r.code() != c.code || r.Errors[0].Message == "" || r.Data != nil {
			t.Errorf("%s: answered %d %s, want 400 %s", name, code, body, c.code)
		}
		if strings.Contains(body, marker) || strings.Contains(body, alice) {
			t.Errorf("%s: the request was echoed: %s", name, body)
		}
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("batched or malformed requests reached Terra %d times", n-calls)
	}
	if strings.Contains(g.logs.String(), marker) {
		t.Error("a refused body reached the logs")
	}
}

// decodeGQL parses a GraphQL response body, failing the test when it is not one.
func decodeGQL(t *testing.T, body string) gqlResponse {
	t.Helper()
	var r gqlResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil || len(r.Errors) == 0 {
		t.Fatalf("not a GraphQL error response: %q", body)
	}
	return r
}

// CodeTooManyAliasesForTest is the alias refusal's code, spelled out so a rename fails here.
const CodeTooManyAliasesForTest = "TOO_MANY_ALIASES"

func TestAttackCSRF(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	calls := len(g.emu.Requests())
	mutation := `mutation { createWidgetSession { url } }`
	// A plain HTML form can only send these content types; none may run an operation.
	for _, ct := range []string{"application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"} {
		body := "query=" + mutation
		if strings.HasPrefix(ct, "text/plain") {
			b, _ := json.Marshal(map[string]string{"query": mutation})
			body = string(b)
		}
		code, resp := g.raw(http.MethodPost, ct, body, http.Header{"Authorization": {"Bearer " + alice}, "Origin": {"https://evil.example.com"}})
		if code != http.StatusUnsupportedMediaType || decodeGQL(t, resp).code() != "UNSUPPORTED_MEDIA_TYPE" || strings.Contains(resp, `"url"`) {
			t.Errorf("%s: answered %d %s", ct, code, resp)
		}
	}
	// Nor can other methods.
	if code, resp := g.raw(http.MethodPut, "application/json", `{"query":"mutation { createWidgetSession { url } }"}`, http.Header{"Authorization": {"Bearer " + alice}}); code != http.StatusMethodNotAllowed || decodeGQL(t, resp).code() != "METHOD_NOT_ALLOWED" {
		t.Errorf("PUT: answered %d %s", code, resp)
	}
	// GET carries queries only.
	req, _ := http.NewRequest(http.MethodGet, g.url+"/graphql?query="+strings.ReplaceAll(mutation, " ", "%20"), nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), `"url"`) {
		t.Errorf("a GET mutation ran: %s", b)
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("CSRF-shaped requests reached Terra %d times", n-calls)
	}
}

func TestAttackWebhookReplayAndDowngrade(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	body := authEvent("u-replay", "OURA", "alice")
	now := time.Now()

	// A captured delivery replayed later: the timestamp is signed, so it goes stale.
	captured := signedHeader(body, now.Add(-10*time.Minute), "trace-captured")
	if resp, raw := g.postWebhook(body, captured); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replay of a 10-minute-old delivery: %d %s", resp.StatusCode, raw)
	}
	// Re-signing with a fresh timestamp needs the secret; swapping t breaks the signature.
	sig := captured.Get("terra-signature")
	fresh := strings.Replace(sig, sig[2:strings.Index(sig, ",")], "9999999999", 1)
	if resp, _ := g.postWebhook(body, http.Header{"Terra-Signature": {fresh}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a timestamp swapped into a captured signature: %d", resp.StatusCode)
	}
	// Downgrade: only a v0 (or unknown scheme) signature.
	v1 := terra.Sign([]byte(testWebhookSecret), now, body)
	for _, h := range []string{strings.Replace(v1, "v1=", "v0=", 1), strings.Replace(v1, "v1=", "v2=", 1), "t=" + v1[2:strings.Index(v1, ",")]} {
		if resp, _ := g.postWebhook(body, http.Header{"Terra-Signature": {h}}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("downgraded header %q: %d", h, resp.StatusCode)
		}
	}
	// A valid delivery sent twice is applied once.
	ok := signedHeader(body, now, "trace-once")
	for i := 0; i < 3; i++ {
		if resp, raw := g.postWebhook(body, ok); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, raw)
		}
	}
	if users := g.connectedUsers(alice, true); len(users) != 1 {
		t.Errorf("after replays: %+v", users)
	}
	// Secrets never appear in what the attacker sees.
	if strings.Contains(g.seen.String(), testWebhookSecret) {
		t.Error("a response carried the webhook secret")
	}
}

// graphiqlIntrospection is the shape of the introspection query GraphiQL sends.
const graphiqlIntrospection = `query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}`

func TestRateLimits(t *testing.T) {
	g := startGateway(t, withEnv("RATE_LIMIT_CREATE_SESSION", "2/m"), withEnv("RATE_LIMIT_USER", "6/m"), withEnv("RATE_LIMIT_IP", "off"))
	alice, bob := token(t, "alice"), token(t, "bob")
	for i, p := range []string{"OURA", "GARMIN"} {
		if r := g.gql(alice, createSession, map[string]any{"in": map[string]any{"providers": []string{p}}}); len(r.Errors) > 0 {
			t.Fatalf("session %d: %+v", i, r.Errors)
		}
	}
	calls := len(g.emu.Requests())
	r := g.gql(alice, createSession, map[string]any{"in": map[string]any{"providers": []string{"FITBIT"}}})
	if r.code() != "RATE_LIMITED" || r.Errors[0].Extensions["retryAfter"] == nil {
		t.Errorf("third session in a minute: %+v", r)
	}
	if len(g.emu.Requests()) != calls {
		t.Error("a rate-limited session reached Terra")
	}
	// Each user has a budget of their own: bob is unaffected by alice.
	if r := g.gql(bob, createSession, nil); len(r.Errors) > 0 {
		t.Errorf("bob: %+v", r.Errors)
	}
	// The per-user operation budget: alice has used 3 of 6.
	limited := 0
	for i := 0; i < 5; i++ {
		if g.gql(alice, listUsers, nil).code() == "RATE_LIMITED" {
			limited++
		}
	}
	if limited != 2 {
		t.Errorf("%d of alice's next 5 operations were limited, want 2", limited)
	}

	// Per IP, before anything else: 429 with Retry-After, and a GraphQL error like the
	// per-user limit's, so clients back off from both the same way.
	ip := startGateway(t, withEnv("RATE_LIMIT_IP", "3/m"))
	codes := []int{}
	var last *http.Response
	var lastBody string
	for i := 0; i < 4; i++ {
		last, lastBody = ip.post(`{"query":"mutation { createWidgetSession { url } }"}`, http.Header{"Authorization": {"Bearer " + alice}})
		codes = append(codes, last.StatusCode)
		if i == 2 {
			calls = len(ip.emu.Requests())
		}
	}
	if codes[2] != 200 || codes[3] != http.StatusTooManyRequests {
		t.Errorf("per-IP codes: %v", codes)
	}
	limitedIP := decodeGQL(t, lastBody)
	retry, _ := limitedIP.Errors[0].Extensions["retryAfter"].(float64)
	if limitedIP.code() != "RATE_LIMITED" || retry < 1 || retry > 60 || limitedIP.Data != nil {
		t.Errorf("per-IP refusal: %s", lastBody)
	}
	if h := last.Header.Get("Retry-After"); h != strconv.Itoa(int(retry)) {
		t.Errorf("Retry-After %q, body says %v", h, retry)
	}
	if last.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(last.Header.Get("Content-Type"), "application/json") {
		t.Errorf("per-IP refusal headers: %v", last.Header)
	}
	if n := len(ip.emu.Requests()) - calls; n != 0 {
		t.Errorf("a request over the IP's budget reached Terra %d times", n)
	}
	// Webhooks are not limited by user or IP: Terra retries what it cannot deliver.
	for i := 0; i < 5; i++ {
		b := []byte(`{"type":"healthcheck","status":"success"}`)
		if resp, _ := ip.postWebhook(b, signedHeader(b, time.Now(), "")); resp.StatusCode != 200 {
			t.Errorf("webhook %d: %d", i, resp.StatusCode)
		}
	}
}

// The mutations that call Terra share one budget per end user, so one user cannot spend the
// account's Terra allowance, or trip its breakers, for everyone. createWidgetSession keeps
// its own, tighter budget as well.
func TestRateLimitTerraCalls(t *testing.T) {
	g := startGateway(t, withEnv("RATE_LIMIT_TERRA_CALLS", "3/m"), withEnv("RATE_LIMIT_CREATE_SESSION", "10/m"))
	alice, bob := token(t, "alice"), token(t, "bob")
	const sync = `mutation { syncConnections { userId } }`
	const disconnect = `mutation($id: ID!) { disconnectUser(userId: $id) { userId } }`
	oura, err := g.emu.Connect("OURA", "alice")
	if err != nil {
		t.Fatal(err)
	}
	session := func(provider string) map[string]any {
		return map[string]any{"in": map[string]any{"providers": []string{provider}}}
	}
	// One of each, in this order: the sync finds the connection, which is then disconnected.
	calls := func() []struct {
		name string
		do   func() gqlResponse
	} {
		return []struct {
			name string
			do   func() gqlResponse
		}{
			{"sync", func() gqlResponse { return g.gql(alice, sync, nil) }},
			{"session", func() gqlResponse { return g.gql(alice, createSession, session("GARMIN")) }},
			{"disconnect", func() gqlResponse { return g.gql(alice, disconnect, map[string]any{"id": oura.UserID}) }},
		}
	}
	for _, c := range calls() {
		if r := c.do(); len(r.Errors) > 0 {
			t.Fatalf("%s within the budget: %+v", c.name, r.Errors)
		}
	}
	before := len(g.emu.Requests())
	for _, c := range calls() {
		r := c.do()
		if len(r.Errors) == 0 {
			t.Errorf("%s over the budget succeeded", c.name)
			continue
		}
		if wait, _ := r.Errors[0].Extensions["retryAfter"].(float64); r.code() != "RATE_LIMITED" || wait < 1 || wait > 60 {
			t.Errorf("%s over the budget: %+v", c.name, r)
		}
	}
	if n := len(g.emu.Requests()) - before; n != 0 {
		t.Errorf("calls over the budget reached Terra %d times", n)
	}
	// bob's budget is his own.
	if r := g.gql(bob, sync, nil); len(r.Errors) > 0 {
		t.Errorf("bob: %+v", r.Errors)
	}
}

// A service acting for end users is limited per end user it acts for, in the same budget
// as their own calls, so one user's traffic through the backend cannot use up the others';
// the service key has a larger budget of its own.
func TestRateLimitsForServices(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey),
		withEnv("RATE_LIMIT_USER", "2/m"), withEnv("RATE_LIMIT_SERVICE", "5/m"))
	as := func(user string) gqlResponse {
		return g.gql(testServiceKey, `query($u: String) { connectedUsers(actAs: $u) { userId } }`, map[string]any{"u": user})
	}
	for i := range 2 {
		if r := as("alice"); len(r.Errors) > 0 {
			t.Fatalf("for alice, %d: %+v", i+1, r.Errors)
		}
	}
	if r := as("alice"); r.code() != "RATE_LIMITED" {
		t.Errorf("alice's third: %+v", r)
	}
	// The same budget whoever asks for alice.
	if r := g.gql(token(t, "alice"), listUsers, nil); r.code() != "RATE_LIMITED" {
		t.Errorf("alice herself after the service spent her budget: %+v", r)
	}
	// The service has spent 3 of its 5, the refused one included.
	for _, u := range []string{"bob", "carol"} {
		if r := as(u); len(r.Errors) > 0 {
			t.Errorf("for %s: %+v", u, r.Errors)
		}
	}
	if r := as("dave"); r.code() != "RATE_LIMITED" {
		t.Errorf("over the service's own budget: %+v", r)
	}
}

func TestBodyLimitAndHeaders(t *testing.T) {
	g := startGateway(t, withEnv("MAX_BODY_BYTES", "2048"))
	alice := token(t, "alice")
	big := `{"query":"{ connectedUsers { userId } }","variables":{"pad":"` + strings.Repeat("x", 4096) + `"}}`
	// With a length up front, and chunked, with none.
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", strings.NewReader(big))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+alice)
		if chunked {
			req.Body = io.NopCloser(strings.NewReader(big))
			req.ContentLength = -1
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := decodeGQL(t, string(b))
		if resp.StatusCode != http.StatusRequestEntityTooLarge || r.code() != "REQUEST_TOO_LARGE" ||
			r.Errors[0].Extensions["maxBytes"] != float64(2048) || strings.Contains(string(b), "xxxx") {
			t.Errorf("oversized body (chunked %v): %d %s", chunked, resp.StatusCode, b)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("the 413 may be cached: %v", resp.Header)
		}
	}
	// The webhook endpoint has its own cap (1 MiB, Terra's bodies are small) and answers
	// in its own JSON, which Terra logs.
	hook := []byte(`{"type":"auth","pad":"` + strings.Repeat("x", 1<<20) + `"}`)
	resp, raw := g.postWebhook(hook, signedHeader(hook, time.Now(), ""))
	var hookErr map[string]any
	if err := json.Unmarshal([]byte(raw), &hookErr); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge ||
		hookErr["error"] == nil || hookErr["errors"] != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("oversized webhook: %d %s", resp.StatusCode, raw)
	}

	check := func(path string, want map[string]string) {
		t.Helper()
		resp, err := http.Get(g.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, v := range want {
			if got := resp.Header.Get(k); !strings.Contains(got, v) {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
	page := map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Content-Security-Policy": "frame-ancestors 'none'"}
	check("/", page)
	check("/widget/return/x?state=bad", page)
	check("/graphql?query=%7B__typename%7D", map[string]string{"Cache-Control": "no-store"})
}

func TestWebhookAllowedIPs(t *testing.T) {
	g := startGateway(t, withEnv("WEBHOOK_ALLOWED_IPS", "203.0.113.0/24"))
	b := []byte(`{"type":"healthcheck","status":"success"}`)
	if resp, raw := g.postWebhook(b, signedHeader(b, time.Now(), "")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a webhook from outside the allowed ranges: %d %s", resp.StatusCode, raw)
	}
	// Behind a trusted proxy, the forwarded address counts; a client cannot forge it
	// without one.
	p := startGateway(t, withEnv("WEBHOOK_ALLOWED_IPS", "203.0.113.0/24"), withEnv("TRUSTED_PROXIES", "127.0.0.1/32"))
	if resp, raw := p.postWebhook(b, http.Header{"X-Forwarded-For": {"203.0.113.7"}, "Terra-Signature": {terra.Sign([]byte(testWebhookSecret), time.Now(), b)}}); resp.StatusCode != 200 {
		t.Errorf("forwarded from an allowed address: %d %s", resp.StatusCode, raw)
	}
	if resp, _ := g.postWebhook(b, http.Header{"X-Forwarded-For": {"203.0.113.7"}, "Terra-Signature": {terra.Sign([]byte(testWebhookSecret), time.Now(), b)}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a forged X-Forwarded-For without a trusted proxy was believed: %d", resp.StatusCode)
	}
}

const testServiceKey = "svc_KEY_5e4d3c2b1a09f8e7d6c5b4a3928170ff"

func TestServiceCallersAndAdminQueries(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey))
	alice, bob := token(t, "alice"), token(t, "bob")
	admin := map[string]string{
		"users":         `{ users(first: 10) { totalCount edges { cursor node { userId referenceId } } pageInfo { hasNextPage endCursor } } }`,
		"webhookEvents": `{ webhookEvents(first: 10) { edges { node { id type source outcome body } } pageInfo { hasNextPage } } }`,
		"auditLog":      `{ auditLog(first: 50) { edges { node { actor actorKind action subject referenceId clientIp detail { key value } } } } }`,
	}
	// End users never reach admin fields, nor act for someone else.
	for name, q := range admin {
		if r := g.gql(alice, q, nil); r.code() != "FORBIDDEN" {
			t.Errorf("%s with an end-user token: %+v", name, r)
		}
	}
	calls := len(g.emu.Requests())
	if r := g.gql(alice, `mutation { createWidgetSession(actAs: "bob") { url } }`, nil); r.code() != "FORBIDDEN" {
		t.Errorf("an end user acting for bob: %+v", r)
	}
	if r := g.gql(alice, `{ connectedUsers(actAs: "bob") { userId } }`, nil); r.code() != "FORBIDDEN" {
		t.Errorf("an end user reading bob's connections: %+v", r)
	}
	// A service must say whom it acts for; a wrong key is no one.
	if r := g.gql(testServiceKey, `mutation { createWidgetSession { url } }`, nil); r.code() != "FORBIDDEN" {
		t.Errorf("a service without actAs: %+v", r)
	}
	if r := g.gql(strings.Replace(testServiceKey, "KEY", "KEX", 1), admin["users"], nil); r.code() != "UNAUTHENTICATED" {
		t.Errorf("a wrong service key: %+v", r)
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("refused calls reached Terra %d times", n-calls)
	}

	// The service acts for alice: the session is alice's, at Terra too.
	r := g.gql(testServiceKey, `mutation { createWidgetSession(actAs: "alice", input: {providers: ["OURA"]}) { sessionId url } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("service acting for alice: %+v", r.Errors)
	}
	var created struct {
		S widgetSession `json:"createWidgetSession"`
	}
	_ = json.Unmarshal(r.Data, &created)
	if reqs := g.emu.Requests(); reqs[len(reqs)-1].Body["reference_id"] != "alice" {
		t.Errorf("Terra got reference_id %v", reqs[len(reqs)-1].Body["reference_id"])
	}
	if s := g.session(alice, created.S.SessionID); s == nil {
		t.Error("alice cannot see the session made for her")
	}
	if s := g.session(bob, created.S.SessionID); s != nil {
		t.Error("bob sees it")
	}
	if _, err := g.emu.Complete(terraSessionID(t, created.S), "OURA", true); err != nil {
		t.Fatal(err)
	}
	g.waitUsers(alice, false, "the connection", func(u []terraUser) bool { return len(u) == 1 })

	r = g.gql(testServiceKey, admin["users"], nil)
	if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"totalCount":1`) || !strings.Contains(string(r.Data), `"referenceId":"alice"`) {
		t.Errorf("users: %+v %s", r.Errors, r.Data)
	}
	r = g.gql(testServiceKey, admin["webhookEvents"], nil)
	if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"type":"auth"`) || !strings.Contains(string(r.Data), `"outcome":"applied"`) {
		t.Errorf("webhookEvents: %+v %s", r.Errors, r.Data)
	}
	if r := g.gql(testServiceKey, `{ users(first: 1000) { totalCount } }`, nil); r.code() != "BAD_USER_INPUT" && r.code() != "COMPLEXITY_LIMIT_EXCEEDED" {
		t.Errorf("a page of 1000: %+v", r)
	}
	if r := g.gql(testServiceKey, `{ users(after: "not-a-cursor") { totalCount } }`, nil); r.code() != "BAD_USER_INPUT" {
		t.Errorf("a forged cursor: %+v", r)
	}
	r = g.gql(testServiceKey, admin["auditLog"], nil)
	log := string(r.Data)
	for _, want := range []string{`"actor":"svc:backend","actorKind":"service","action":"session.created"`, `"action":"connection.added"`, `"action":"admin.read"`, `"clientIp":"127.0.0.1"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the audit log lacks %s:\n%s", want, log)
		}
	}
	for _, secret := range []string{testServiceKey, testAPIKey, testWebhookSecret, alice} {
		if strings.Contains(log, secret) {
			t.Error("the audit log holds a secret or token")
		}
	}
}

// Terra's bad days, seen from the app: transient failures are retried away, a hung Terra
// gives a clear error within the deadline, and a failing endpoint trips the breaker so
// calls fail fast with a retryAfter instead of piling up.
func TestTerraResilience(t *testing.T) {
	g := startGateway(t, withEnv("TERRA_RETRIES", "2"), withEnv("TERRA_TIMEOUT", "2s"))
	alice := token(t, "alice")
	count := func(path string) int {
		n := 0
		for _, r := range g.emu.Requests() {
			if r.Path == path {
				n++
			}
		}
		return n
	}
	const create = "/api/widget/session"

	before := count(create)
	g.emu.Fail(create, terrasim.Fault{Status: 503, Times: 2})
	if r := g.gql(alice, createSession, map[string]any{"in": map[string]any{"providers": []string{"OURA"}}}); len(r.Errors) > 0 {
		t.Fatalf("after two transient 503s: %+v", r.Errors)
	}
	if n := count(create) - before; n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}

	g.emu.Fail(create, terrasim.Fault{Status: 429, Body: `{"detail":"rate limit exceeded"}`, ContentType: "application/json", Header: http.Header{"Retry-After": {"1"}}, Times: 1})
	start := time.Now()
	if r := g.gql(alice, createSession, map[string]any{"in": map[string]any{"providers": []string{"GARMIN"}}}); len(r.Errors) > 0 {
		t.Fatalf("after a 429: %+v", r.Errors)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("Retry-After: 1 was not honoured (%v)", took)
	}

	g.emu.Fail(create, terrasim.Fault{Hang: true, Times: 5})
	start = time.Now()
	r := g.gql(alice, createSession, map[string]any{"in": map[string]any{"providers": []string{"FITBIT"}}})
	if took := time.Since(start); r.code() != "UPSTREAM_UNAVAILABLE" || took > 3*time.Second {
		t.Errorf("Terra hanging: %s after %v", r.code(), took)
	}

	// userInfo failing again and again: the breaker opens and Terra stops being called.
	const sync = `mutation { syncConnections { userId } }`
	g.emu.Fail("/v2/userInfo", terrasim.Fault{Status: 503, Times: 100})
	for range 4 {
		g.gql(alice, sync, nil)
	}
	calls := count("/v2/userInfo")
	last := g.gql(alice, sync, nil)
	if last.code() != "UPSTREAM_UNAVAILABLE" || last.Errors[0].Extensions["retryAfter"] == nil {
		t.Errorf("with the circuit open: %+v", last)
	}
	if n := count("/v2/userInfo"); n != calls {
		t.Errorf("an open circuit still called Terra %d times", n-calls)
	}
	// connectedUsers never needs Terra.
	if r := g.gql(alice, listUsers, nil); len(r.Errors) > 0 {
		t.Errorf("connectedUsers while Terra is down: %+v", r.Errors)
	}
}

// A delivery that cannot be applied (here a user_reauth whose old and new user are the same)
// is acknowledged and kept as a dead letter, does not hold up the events behind it, is
// visible to service callers, and can be replayed.
func TestDeadLetters(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey))
	alice := token(t, "alice")
	bad, _ := json.Marshal(map[string]any{"type": "user_reauth", "status": "warning", "message": "m",
		"new_user": map[string]any{"user_id": "u-same", "provider": "OURA", "reference_id": "alice"},
		"old_user": map[string]any{"user_id": "u-same", "provider": "OURA", "reference_id": "alice"}})
	resp, raw := g.postWebhook(bad, signedHeader(bad, time.Now(), "trace-bad"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(raw, "dead_letter") {
		t.Fatalf("a bad delivery: %d %s", resp.StatusCode, raw)
	}
	// Terra's retry of it is a duplicate, not a second dead letter.
	g.postWebhook(bad, signedHeader(bad, time.Now(), "trace-bad"))
	// The next event goes through.
	good := authEvent("u-good", "GARMIN", "alice")
	if resp, raw := g.postWebhook(good, signedHeader(good, time.Now(), "trace-good")); resp.StatusCode != 200 || strings.Contains(raw, "dead_letter") {
		t.Fatalf("the event behind it: %d %s", resp.StatusCode, raw)
	}
	if u := g.connectedUsers(alice, false); len(u) != 1 || u[0].UserID != "u-good" {
		t.Errorf("after the dead letter: %+v", u)
	}

	r := g.gql(testServiceKey, `{ webhookEvents(outcome: "failed") { edges { node { id type outcome error replays } } } }`, nil)
	var page struct {
		W struct {
			Edges []struct {
				Node struct {
					ID      string  `json:"id"`
					Type    string  `json:"type"`
					Outcome string  `json:"outcome"`
					Error   *string `json:"error"`
					Replays int     `json:"replays"`
				} `json:"node"`
			} `json:"edges"`
		} `json:"webhookEvents"`
	}
	if err := json.Unmarshal(r.Data, &page); err != nil || len(r.Errors) > 0 || len(page.W.Edges) != 1 {
		t.Fatalf("dead letters: %+v %s", r.Errors, r.Data)
	}
	dead := page.W.Edges[0].Node
	if dead.Type != "user_reauth" || dead.Error == nil || *dead.Error == "" {
		t.Errorf("dead letter: %+v", dead)
	}
	if strings.Contains(*dead.Error, testWebhookSecret) {
		t.Error("the reason holds a secret")
	}

	const replay = `mutation($id: ID!) { replayWebhookEvent(id: $id) { outcome replays error } }`
	if r := g.gql(alice, replay, map[string]any{"id": dead.ID}); r.code() != "FORBIDDEN" {
		t.Errorf("an end user replaying: %+v", r)
	}
	// The data is still bad: the replay fails, is counted, and the row stays failed.
	if r := g.gql(testServiceKey, replay, map[string]any{"id": dead.ID}); r.code() != "REPLAY_FAILED" {
		t.Errorf("replaying bad data: %+v", r)
	}
	r = g.gql(testServiceKey, `{ webhookEvents(outcome: "failed") { edges { node { replays } } } }`, nil)
	if !strings.Contains(string(r.Data), `"replays":1`) {
		t.Errorf("after a failed replay: %s", r.Data)
	}
	// An event that is not a dead letter cannot be replayed.
	r = g.gql(testServiceKey, `{ webhookEvents(outcome: "applied") { edges { node { id } } } }`, nil)
	var applied struct {
		W struct {
			Edges []struct {
				Node struct {
					ID string `json:"id"`
				} `json:"node"`
			} `json:"edges"`
		} `json:"webhookEvents"`
	}
	_ = json.Unmarshal(r.Data, &applied)
	if len(applied.W.Edges) == 0 {
		t.Fatalf("no applied events: %s", r.Data)
	}
	if r := g.gql(testServiceKey, replay, map[string]any{"id": applied.W.Edges[0].Node.ID}); r.code() != "CONFLICT" {
		t.Errorf("replaying an applied event: %+v", r)
	}
}
