package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terrasim"
)

// Operations seen from outside: request ids, log formats, the metrics address, and what an
// app sees while Terra misbehaves in each of the emulator's ways. Timing bounds are
// functional (a clear answer within the deadline), with slack for a busy CI machine.

const opsSlack = time.Second

// opsTimed runs f and says how long it took.
func opsTimed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// opsLogLines decodes the gateway's JSON log lines.
func opsLogLines(t *testing.T, g *gateway) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(g.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func opsCalls(emu *terrasim.Emulator, path string) int {
	n := 0
	for _, r := range emu.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// An incoming X-Request-Id is used as the request's id: echoed in the response header and in
// every GraphQL error's extensions.requestId. Without one (or with one a proxy should not
// have let through) the gateway makes its own and returns it the same way.
func TestOpsRequestID(t *testing.T) {
	g := startGateway(t)
	cases := []struct {
		name, sent string
		keep       bool
	}{
		{"accepted", "req-7f3a.9_B", true},
		{"absent", "", false},
		{"with spaces", "two words", false},
		{"too long", strings.Repeat("a", 65), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.sent != "" {
				h.Set("X-Request-Id", c.sent)
			}
			// No token: an UNAUTHENTICATED error, which carries the id.
			r, got := g.gqlWithHeaders(h, "", listUsers, nil)
			id := got.Get("X-Request-Id")
			switch {
			case c.keep && id != c.sent:
				t.Errorf("X-Request-Id %q came back as %q", c.sent, id)
			case !c.keep && !generatedID.MatchString(id):
				t.Errorf("sent %q, got %q: want a generated id", c.sent, id)
			}
			if r.code() != "UNAUTHENTICATED" {
				t.Fatalf("got %+v, want an UNAUTHENTICATED error", r)
			}
			if ext := r.Errors[0].Extensions["requestId"]; ext != id {
				t.Errorf("extensions.requestId = %v, header %q", ext, id)
			}
		})
	}
	// Two requests without an id get two ids.
	_, a := g.gqlWithHeaders(nil, "", listUsers, nil)
	_, b := g.gqlWithHeaders(nil, "", listUsers, nil)
	if a.Get("X-Request-Id") == b.Get("X-Request-Id") {
		t.Errorf("two requests share the generated id %q", a.Get("X-Request-Id"))
	}
}

// The lines the Terra client writes while serving a request (each attempt, the retry) carry
// the id of the GraphQL request that caused them, so one id finds the whole story.
func TestOpsTerraLogLinesCarryTheRequestID(t *testing.T) {
	g := startGateway(t, withEnv("TERRA_RETRIES", "2"))
	g.emu.Fail("/api/widget/session", terrasim.Fault{Status: 503, Times: 1})
	const id = "ops-terra-log-1"
	r, _ := g.gqlWithHeaders(http.Header{"X-Request-Id": {id}}, token(t, "alice"), createSession, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("after one 503: %+v", r.Errors)
	}
	var retries, calls int
	for _, line := range opsLogLines(t, g) {
		msg, _ := line["msg"].(string)
		// Background work (the sync sweep at start) calls Terra too, without a request.
		if (msg != "terra: retrying" && msg != "terra call") || line["op"] != "generateWidgetSession" {
			continue
		}
		if line["request_id"] != id {
			t.Errorf("%q without the request id: %v", msg, line)
			continue
		}
		if msg == "terra call" {
			calls++
		} else {
			retries++
		}
	}
	if retries != 1 || calls != 2 {
		t.Errorf("%d retry and %d call lines with the request id, want 1 and 2:\n%s", retries, calls, g.logs)
	}
	if strings.Contains(g.logs.String(), testAPIKey) {
		t.Error("the API key reached the log")
	}
}

// LOG_FORMAT=text gives logfmt lines, request ids included, and no JSON.
func TestOpsTextLogs(t *testing.T) {
	g := startGateway(t, withEnv("LOG_FORMAT", "text"))
	g.gqlWithHeaders(http.Header{"X-Request-Id": {"ops-text-1"}}, "", listUsers, nil)
	lines := strings.Split(strings.TrimSpace(g.logs.String()), "\n")
	var request bool
	for _, line := range lines {
		if strings.HasPrefix(line, "{") || json.Valid([]byte(line)) {
			t.Errorf("a JSON line with LOG_FORMAT=text: %s", line)
		}
		if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=") {
			t.Errorf("not a text line: %s", line)
		}
		if strings.Contains(line, `msg="http request"`) && strings.Contains(line, "request_id=ops-text-1") {
			request = true
		}
	}
	if !request {
		t.Errorf("no text access line with the request id:\n%s", g.logs)
	}
}

// METRICS_ADDR moves /metrics to its own listener, off the public address.
func TestOpsMetricsAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the gateway takes the port over
	g := startGateway(t, withEnv("METRICS_ADDR", addr))
	g.gql("", listUsers, nil)

	get := func(u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, page := get("http://" + addr + "/metrics")
	if code != http.StatusOK || !strings.Contains(page, `terragate_graphql_requests_total{code="UNAUTHENTICATED"`) || !strings.Contains(page, "go_goroutines") {
		t.Errorf("METRICS_ADDR /metrics: %d\n%.500s", code, page)
	}
	if code, page := get(g.url + "/metrics"); code != http.StatusNotFound || strings.Contains(page, "terragate_") {
		t.Errorf("ADDR still serves /metrics: %d %.200s", code, page)
	}
	if code, _ := get("http://" + addr + "/graphql"); code != http.StatusNotFound {
		t.Errorf("the metrics address serves /graphql: %d", code)
	}
	if code, _ := get("http://" + addr + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("the profiler is served without DEBUG_PPROF: %d", code)
	}
}

// TestOpsPprof: DEBUG_PPROF serves Go's profiler on METRICS_ADDR only, and is refused
// without it, so the profiler can never reach the public address.
func TestOpsPprof(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := startGateway(t, withEnv("METRICS_ADDR", addr), withEnv("DEBUG_PPROF", "true"))
	for _, c := range []struct {
		url  string
		want int
	}{
		{"http://" + addr + "/debug/pprof/", http.StatusOK},
		{"http://" + addr + "/debug/pprof/goroutine?debug=1", http.StatusOK},
		{g.url + "/debug/pprof/", http.StatusNotFound},
		{g.url + "/debug/pprof/goroutine?debug=1", http.StatusNotFound},
	} {
		resp, err := http.Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s = %d; want %d", c.url, resp.StatusCode, c.want)
		}
	}

	var stdout, stderr bytes.Buffer
	env := map[string]string{"TERRA_DEV_ID": "d", "TERRA_API_KEY": "k", "TERRA_WEBHOOK_SECRET": "s", "AUTH_JWT_SECRET": "j",
		"ADDR": "127.0.0.1:0", "DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "t.db"), "DEBUG_PPROF": "true"}
	err = run(t.Context(), nil, func(k string) string { return env[k] }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "DEBUG_PPROF") || !strings.Contains(err.Error(), "METRICS_ADDR") {
		t.Errorf("DEBUG_PPROF without METRICS_ADDR: run = %v; want a refusal naming both", err)
	}
}

// Each of the emulator's faults on the widget session endpoint, through the real gateway:
// what the app sees and how soon. Every case has a gateway of its own, so that one case's
// failures cannot trip the circuit breaker for the next. TERRA_TIMEOUT is 2 s and
// TERRA_RETRIES 2, so each attempt has 1 s.
func TestOpsTerraFaults(t *testing.T) {
	const path = "/api/widget/session"
	const timeout = 2 * time.Second
	cases := []struct {
		name   string
		faults []terrasim.Fault
		// code is the error code expected, "" for success.
		code string
		// attempts is how many calls reach Terra.
		attempts int
		// atLeast and within bound the answer's time.
		atLeast, within time.Duration
		check           func(t *testing.T, e gqlError)
	}{
		{name: "success after two 503s", faults: []terrasim.Fault{{Status: 503, Times: 2}},
			attempts: 3, within: opsSlack}, // two backoff waits of at most 100 and 200 ms
		{name: "success after two connection resets", faults: []terrasim.Fault{{Reset: true, Times: 2}},
			attempts: 3, within: opsSlack},
		{name: "429 with Retry-After 1 is waited out", faults: []terrasim.Fault{{Status: 429, Body: `{"detail":"rate limit exceeded"}`,
			ContentType: "application/json", Header: http.Header{"Retry-After": {"1"}}}},
			attempts: 2, atLeast: time.Second, within: time.Second + opsSlack},
		{name: "429 asking for longer than the deadline answers at once", faults: []terrasim.Fault{{Status: 429, Body: `{"detail":"rate limit exceeded"}`,
			ContentType: "application/json", Header: http.Header{"Retry-After": {"30"}}}},
			code: "UPSTREAM_ERROR", attempts: 1, within: opsSlack, check: func(t *testing.T, e gqlError) {
				if e.Extensions["status"] != float64(429) || e.Extensions["retryAfter"] != float64(30) {
					t.Errorf("extensions %v, want status 429 and retryAfter 30", e.Extensions)
				}
			}},
		{name: "garbage JSON", faults: []terrasim.Fault{{Garbage: true}},
			// A 200 that does not decode is not transient: no retry, a clear error.
			code: "UPSTREAM_ERROR", attempts: 1, within: opsSlack, check: func(t *testing.T, e gqlError) {
				if e.Extensions["status"] != float64(200) || strings.Contains(e.Message, "user_id") || !strings.Contains(e.Message, "widget session") {
					t.Errorf("garbage answer presented as %q %v", e.Message, e.Extensions)
				}
			}},
		{name: "connection reset on every attempt", faults: []terrasim.Fault{{Reset: true, Times: 3}},
			code: "UPSTREAM_UNAVAILABLE", attempts: 3, within: opsSlack},
		{name: "slow within the attempt timeout", faults: []terrasim.Fault{{Delay: 500 * time.Millisecond}},
			attempts: 1, atLeast: 500 * time.Millisecond, within: timeout},
		{name: "slow past the deadline", faults: []terrasim.Fault{{Delay: 5 * time.Second, Times: 3}},
			// Attempts of 1 s each until the 2 s deadline: a clear error, not a hang.
			code: "UPSTREAM_UNAVAILABLE", attempts: 2, atLeast: timeout - 100*time.Millisecond, within: timeout + opsSlack},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, withEnv("TERRA_RETRIES", "2"), withEnv("TERRA_TIMEOUT", timeout.String()))
			for _, f := range c.faults {
				g.emu.Fail(path, f)
			}
			var r gqlResponse
			took := opsTimed(func() { r = g.gql(token(t, "alice"), createSession, nil) })
			if r.code() != c.code {
				t.Fatalf("got %+v, want code %q", r, c.code)
			}
			if c.code == "" {
				var d struct {
					S widgetSession `json:"createWidgetSession"`
				}
				if err := json.Unmarshal(r.Data, &d); err != nil || d.S.SessionID == "" || d.S.URL == "" {
					t.Errorf("session %s, %v", r.Data, err)
				}
			} else if c.check != nil {
				c.check(t, r.Errors[0])
			}
			if took < c.atLeast || took > c.within {
				t.Errorf("answered in %v, want between %v and %v", took, c.atLeast, c.within)
			}
			if n := opsCalls(g.emu, path); n != c.attempts {
				t.Errorf("%d calls reached Terra, want %d", n, c.attempts)
			}
			for _, e := range r.Errors {
				if strings.Contains(e.Message, testAPIKey) || strings.Contains(e.Message, "<html") {
					t.Errorf("the error leaks: %q", e.Message)
				}
			}
		})
	}
}

// A failing endpoint trips its breaker: calls fail fast with UPSTREAM_UNAVAILABLE and a
// retryAfter, without reaching Terra. Once that time has passed and Terra is well again, the
// breaker lets probes through (half-open) and closes after they succeed. The breaker's open
// time is the client's default (30 s; the gateway has no setting for it), so this test waits.
func TestOpsCircuitBreakerRecovers(t *testing.T) {
	t.Parallel() // it mostly waits
	// The suite's TERRA_RETRIES=0: one attempt per call, so five failed calls trip it.
	g := startGateway(t)
	alice := token(t, "alice")
	const path = "/v2/userInfo"
	const sync = `mutation { syncConnections { userId } }`
	metric := func(state string) string {
		return `terragate_terra_circuit_state{endpoint="userInfo",state="` + state + `"} 1`
	}
	// The client reports each change as the breaker makes it, before the call that caused
	// it returns, so /metrics shows it at once.
	checkMetric := func(state string) {
		t.Helper()
		resp, err := http.Get(g.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), metric(state)) {
			t.Errorf("/metrics does not show %s", metric(state))
		}
	}

	// Exactly five failures: after them Terra is well, but the breaker does not know yet.
	g.emu.Fail(path, terrasim.Fault{Status: 503, Times: 5})
	for i := range 5 {
		if r := g.gql(alice, sync, nil); r.code() != "UPSTREAM_UNAVAILABLE" || r.Errors[0].Extensions["status"] != float64(503) {
			t.Fatalf("failure %d: %+v", i+1, r)
		}
	}
	calls := opsCalls(g.emu, path)
	var open gqlResponse
	openedAt := time.Now()
	if took := opsTimed(func() { open = g.gql(alice, sync, nil) }); took > 500*time.Millisecond {
		t.Errorf("an open circuit took %v to answer, want it to fail fast", took)
	}
	if open.code() != "UPSTREAM_UNAVAILABLE" {
		t.Fatalf("with the circuit open: %+v", open)
	}
	wait, _ := open.Errors[0].Extensions["retryAfter"].(float64)
	if wait < 1 || wait > 30 {
		t.Fatalf("retryAfter = %v, want 1 to 30 seconds", open.Errors[0].Extensions["retryAfter"])
	}
	if n := opsCalls(g.emu, path); n != calls {
		t.Errorf("the open circuit let %d calls through", n-calls)
	}
	// connectedUsers never needs Terra.
	if r := g.gql(alice, listUsers, nil); len(r.Errors) > 0 {
		t.Errorf("connectedUsers with the circuit open: %+v", r.Errors)
	}
	checkMetric("open")

	// retryAfter is rounded up, so by then the breaker lets probes through.
	time.Sleep(time.Until(openedAt.Add(time.Duration(wait) * time.Second)))
	// Three probes close it; had it stayed half-open, the fourth would be refused.
	for i := range 5 {
		if r := g.gql(alice, sync, nil); len(r.Errors) > 0 {
			t.Fatalf("call %d after Terra recovered: %+v", i+1, r.Errors)
		}
	}
	// Each sync lists the end user twice: by their id and by their mobile SDK reference.
	if n := opsCalls(g.emu, path); n != calls+10 {
		t.Errorf("%d calls reached Terra after it recovered, want 10", n-calls)
	}
	checkMetric("closed")
	for _, msg := range []string{"terra: circuit open, calls fail fast", "terra: circuit half-open", "terra: circuit closed"} {
		if !strings.Contains(g.logs.String(), msg) {
			t.Errorf("the log lacks %q", msg)
		}
	}
}

// sendSlowly opens a raw connection to path, sends the headers of a POST whose body is
// length bytes and the body's first byte, then runs trickle with the connection, and
// returns the gateway's answer.
func sendSlowly(t *testing.T, base, path string, length int, trickle func(c net.Conn)) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Far beyond the gateway's limits: only a gateway that never cuts the body reaches it.
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", path, length)
	trickle(c)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: no answer while the body stalled: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A body that stops arriving is cut after BODY_IDLE_TIMEOUT, on the unauthenticated webhook
// too; a /graphql body that trickles in is cut at GRAPHQL_BODY_TIMEOUT however steady it is.
func TestOpsSlowBodiesAreCut(t *testing.T) {
	g := startGateway(t, withEnv("BODY_IDLE_TIMEOUT", "300ms"), withEnv("GRAPHQL_BODY_TIMEOUT", "1s"))

	code, body := sendSlowly(t, g.url, "/webhooks/terra", 4096, func(net.Conn) {})
	if code != http.StatusRequestTimeout || !strings.Contains(body, `"error"`) {
		t.Errorf("stalled webhook body: %d %s, want 408 with a JSON error", code, body)
	}
	code, body = sendSlowly(t, g.url, "/graphql", 4096, func(net.Conn) {})
	if code != http.StatusRequestTimeout || !strings.Contains(body, `"REQUEST_TIMEOUT"`) {
		t.Errorf("stalled /graphql body: %d %s, want 408 REQUEST_TIMEOUT", code, body)
	}

	// A space every 100 ms never trips the idle limit.
	stop := make(chan struct{})
	defer close(stop)
	code, body = sendSlowly(t, g.url, "/graphql", 4096, func(c net.Conn) {
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
	})
	if code != http.StatusRequestTimeout || !strings.Contains(body, `"REQUEST_TIMEOUT"`) {
		t.Errorf("trickled /graphql body: %d %s, want 408 REQUEST_TIMEOUT", code, body)
	}

	// Nothing was lost for a request that sends its body as usual.
	if r := g.gql(token(t, "alice"), `{ connectedUsers { provider } }`, nil); len(r.Errors) > 0 {
		t.Errorf("an ordinary request after the slow ones: %+v", r.Errors)
	}
}

// Production never serves /metrics on the public address; METRICS_ADDR is where it goes.
func TestOpsProductionKeepsMetricsOffAddr(t *testing.T) {
	g := startGateway(t, withEnv("ENV", "production"), withEnv("AUTH_JWT_SECRET", prodJWTSecret),
		withEnv("TERRA_WEBHOOK_SECRET", prodWebhookSecret), withEmulator(func(c *terrasim.Config) { c.WebhookSecret = prodWebhookSecret }))
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(page), "terragate_") {
		t.Errorf("production /metrics on ADDR: %d %.200s", resp.StatusCode, page)
	}
	if !strings.Contains(g.logs.String(), "METRICS_ADDR") {
		t.Errorf("no log line says where metrics went:\n%s", g.logs)
	}
}

// A demo asked to listen beyond loopback does, and says loudly what that exposes.
func TestOpsExposedDemoWarns(t *testing.T) {
	stdout, logs := &syncBuffer{}, &syncBuffer{}
	env := map[string]string{"DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "demo.db")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-demo", "-addr", "0.0.0.0:0"}, func(k string) string { return env[k] }, stdout, logs)
	}()
	waitListening(t, stdout, done)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"demo mode listens beyond this machine`) {
		t.Errorf("no warning for a demo on every interface:\n%s", logs)
	}
}
