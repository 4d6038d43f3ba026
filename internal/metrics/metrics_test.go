package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/terragate/terragate/internal/buildinfo"
)

// scraped is one scrape of a Metrics' handler, parsed.
type scraped struct {
	body     string
	families map[string]*dto.MetricFamily
}

// scrape fetches the exposition through a real HTTP server, as Prometheus would.
func scrape(t *testing.T, m *Metrics) scraped {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, body)
	}
	return scraped{body: string(body), families: families}
}

// value is the value of the series of name with exactly these labels: a counter's or
// gauge's value, a histogram's sample count; 0 when the series does not exist.
func (s scraped) value(name string, labels map[string]string) float64 {
	f := s.families[name]
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// series counts the series of name.
func (s scraped) series(name string) int {
	return len(s.families[name].GetMetric())
}

// labelValues lists the distinct values of one label of name.
func (s scraped) labelValues(name, label string) map[string]bool {
	out := map[string]bool{}
	for _, m := range s.families[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] = true
			}
		}
	}
	return out
}

func l(kv ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestHandlerExposesRuntimeAndOwnInstruments(t *testing.T) {
	m := New()
	m.SubscriptionOpened()
	s := scrape(t, m)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "terragate_graphql_subscriptions_open"} {
		if s.families[name] == nil {
			t.Errorf("%s missing from the exposition", name)
		}
	}
	if runtime.GOOS == "linux" && s.families["process_cpu_seconds_total"] == nil {
		t.Error("process_cpu_seconds_total missing: the process collector is not registered")
	}
	// The handler counts its own scrapes; this one is in flight, the next sees it.
	if got := scrape(t, m).value("promhttp_metric_handler_requests_total", l("code", "200")); got < 1 {
		t.Errorf("scrapes counted = %v, want >= 1", got)
	}
	for name, f := range s.families {
		if strings.HasPrefix(name, "terragate_") && f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
	}
}

// TestBuildInfo checks that every scrape says which build is running, with the labels a
// dashboard joins on.
func TestBuildInfo(t *testing.T) {
	s := scrape(t, New())
	info := buildinfo.Read()
	want := map[string]string{"version": info.Version, "goversion": runtime.Version(), "revision": info.Revision}
	if s.series("terragate_build_info") != 1 || s.value("terragate_build_info", want) != 1 {
		t.Errorf("terragate_build_info%v is not the one series at 1:\n%s", want, s.body)
	}

	// The labels come from what the toolchain recorded.
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfo(buildinfo.Info{Version: "v1.4.0", GoVersion: "go1.26.1", Revision: "56925b6f"}))
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || len(families[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, %v", families, err)
	}
	m := families[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if want := map[string]string{"version": "v1.4.0", "goversion": "go1.26.1", "revision": "56925b6f"}; !maps.Equal(labels, want) || m.GetGauge().GetValue() != 1 {
		t.Errorf("%s%v = %v, want %v = 1", families[0].GetName(), labels, m.GetGauge().GetValue(), want)
	}
}

func TestInstancesAreIndependent(t *testing.T) {
	a, b := New(), New() // a shared registry would panic here on duplicate registration
	a.Webhook("auth", WebhookApplied)
	if got := scrape(t, a).value("terragate_webhook_events_total", l("type", "auth", "outcome", "applied")); got != 1 {
		t.Errorf("a: %v, want 1", got)
	}
	if got := scrape(t, b).value("terragate_webhook_events_total", l("type", "auth", "outcome", "applied")); got != 0 {
		t.Errorf("b sees a's count: %v", got)
	}
}

func TestTerraCall(t *testing.T) {
	tests := []struct {
		status int
		err    error
		want   string
	}{
		{200, nil, "2xx"},
		{204, nil, "2xx"},
		{200, errors.New("body is not a user"), "2xx"},
		{302, errors.New("redirect"), "3xx"},
		{404, errors.New("not found"), "4xx"},
		{410, errors.New("gone"), "4xx"},
		{429, errors.New("rate limited"), "429"},
		{500, errors.New("boom"), "5xx"},
		{503, errors.New("unavailable"), "5xx"},
		{0, errors.New("dial tcp: connection refused"), "error"},
		{0, nil, "error"},
		{42, errors.New("nonsense status"), "error"},
		{700, nil, "other"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %v", tt.status, tt.err), func(t *testing.T) {
			m := New()
			m.TerraCall("userInfo", tt.status, tt.err, 120*time.Millisecond)
			s := scrape(t, m)
			if got := s.value("terragate_terra_requests_total", l("op", "userInfo", "status", tt.want)); got != 1 {
				t.Errorf("requests{status=%q} = %v, want 1\n%s", tt.want, got, s.body)
			}
			if got := s.value("terragate_terra_request_duration_seconds", l("op", "userInfo")); got != 1 {
				t.Errorf("duration samples = %v, want 1", got)
			}
		})
	}
}

func TestSetCircuit(t *testing.T) {
	m := New()
	state := func(s scraped, endpoint string) map[string]float64 {
		return map[string]float64{
			CircuitClosed:   s.value("terragate_terra_circuit_state", l("endpoint", endpoint, "state", CircuitClosed)),
			CircuitHalfOpen: s.value("terragate_terra_circuit_state", l("endpoint", endpoint, "state", CircuitHalfOpen)),
			CircuitOpen:     s.value("terragate_terra_circuit_state", l("endpoint", endpoint, "state", CircuitOpen)),
		}
	}
	m.SetCircuit("userInfo", CircuitOpen)
	m.SetCircuit("subscriptions", CircuitClosed)
	want := map[string]float64{CircuitClosed: 0, CircuitHalfOpen: 0, CircuitOpen: 1}
	if got := state(scrape(t, m), "userInfo"); !maps.Equal(got, want) {
		t.Errorf("after open: %v, want %v", got, want)
	}
	m.SetCircuit("userInfo", CircuitHalfOpen)
	m.SetCircuit("userInfo", "exploded") // ignored
	want = map[string]float64{CircuitClosed: 0, CircuitHalfOpen: 1, CircuitOpen: 0}
	s := scrape(t, m)
	if got := state(s, "userInfo"); !maps.Equal(got, want) {
		t.Errorf("after half-open and an unknown state: %v, want %v", got, want)
	}
	if got := state(s, "subscriptions")[CircuitClosed]; got != 1 {
		t.Errorf("another endpoint's state moved: closed = %v", got)
	}
	if states := s.labelValues("terragate_terra_circuit_state", "state"); len(states) != 3 {
		t.Errorf("states exposed: %v, want only closed, half-open, open", states)
	}
}

func TestWebhook(t *testing.T) {
	tests := []struct{ typ, outcome, wantType, wantOutcome string }{
		{"auth", WebhookApplied, "auth", "applied"},
		{"deauth", WebhookDuplicate, "deauth", "duplicate"},
		{"user_reauth", WebhookUnchanged, "user_reauth", "unchanged"},
		{"permission_change", WebhookError, "permission_change", "error"},
		{"sleep", WebhookIgnored, "sleep", "ignored"},
		{"healthcheck", WebhookIgnored, "healthcheck", "ignored"},
		{"", WebhookRefused, "other", "refused"},
		{"AUTH", WebhookApplied, "other", "applied"},
		{"brand_new_event", WebhookIgnored, "other", "ignored"},
		{"auth", "exploded", "auth", "other"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.outcome, func(t *testing.T) {
			m := New()
			m.Webhook(tt.typ, tt.outcome)
			s := scrape(t, m)
			if got := s.value("terragate_webhook_events_total", l("type", tt.wantType, "outcome", tt.wantOutcome)); got != 1 {
				t.Errorf("events{type=%q,outcome=%q} = %v, want 1\n%s", tt.wantType, tt.wantOutcome, got, s.body)
			}
		})
	}
}

// Each applied delivery is one observation, so a burst of late ones shows even between
// scrapes (a gauge of the last one would hide all but the last).
func TestDeliveryLag(t *testing.T) {
	m := New()
	m.ObserveDeliveryLag(90 * time.Second)
	m.ObserveDeliveryLag(20 * time.Millisecond)
	m.ObserveDeliveryLag(-time.Second) // Terra's clock ahead of ours
	h := scrape(t, m).families["terragate_webhook_delivery_lag_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 3 || h.GetSampleSum() != 90.02 {
		t.Errorf("count %d, sum %v; want 3 deliveries adding up to 90.02 s (a negative lag counts as 0)", h.GetSampleCount(), h.GetSampleSum())
	}
	below := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		below[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if below[.01] != 1 || below[.025] != 2 || below[60] != 2 || below[300] != 3 {
		t.Errorf("buckets %v: want the 0, the 20 ms and the 90 s delivery apart", below)
	}
}

func TestSubscriptionsGauge(t *testing.T) {
	m := New()
	m.SubscriptionOpened()
	m.SubscriptionOpened()
	m.SubscriptionOpened()
	m.SubscriptionClosed()
	if got := scrape(t, m).value("terragate_graphql_subscriptions_open", l()); got != 2 {
		t.Errorf("open = %v, want 2", got)
	}
}

func TestSessionFunnel(t *testing.T) {
	m := New()
	m.SessionCreated([]string{"GARMIN", "FITBIT", "GARMIN"}) // duplicates count once
	m.SessionCreated([]string{"GARMIN"})
	m.SessionCreated(nil)
	m.SessionCreated([]string{"garmin", "EVIL PROVIDER", "1PASSWORD", strings.Repeat("A", 41)})
	m.SessionCompleted("GARMIN")
	m.SessionCompleted("")
	s := scrape(t, m)
	created := map[string]float64{"GARMIN": 2, "FITBIT": 1, "any": 1, "other": 1}
	for p, want := range created {
		if got := s.value("terragate_widget_sessions_created_total", l("provider", p)); got != want {
			t.Errorf("created{provider=%q} = %v, want %v", p, got, want)
		}
	}
	if n := s.series("terragate_widget_sessions_created_total"); n != len(created) {
		t.Errorf("%d created series, want %d: %v", n, len(created), s.labelValues("terragate_widget_sessions_created_total", "provider"))
	}
	if got := s.value("terragate_widget_sessions_completed_total", l("provider", "GARMIN")); got != 1 {
		t.Errorf("completed{GARMIN} = %v, want 1", got)
	}
	if got := s.value("terragate_widget_sessions_completed_total", l("provider", "other")); got != 1 {
		t.Errorf("completed{other} = %v, want 1", got)
	}
}

func TestHTTP(t *testing.T) {
	m := New()
	mux := http.NewServeMux()
	mux.Handle("GET /ok", m.HTTP("/ok", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "fine") // implicit 200
	})))
	mux.Handle("GET /silent", m.HTTP("/silent", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	mux.Handle("GET /items/{id}", m.HTTP("/items/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such item", http.StatusNotFound)
	})))
	mux.Handle("GET /limited", m.HTTP("/limited", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	})))
	mux.Handle("GET /panic", m.HTTP("/panic", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler) // net/http's quiet abort, so the test log stays clean
	})))
	mux.Handle("GET /stream", m.HTTP("/stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Error("the recorder hides http.Flusher")
			return
		}
		w.WriteHeader(http.StatusAccepted)
		f.Flush()
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil {
			t.Errorf("ResponseController through the recorder: %v", err)
		}
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("ResponseController does not unwrap the recorder: %v", err)
		}
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// No reused connections: the client would retry the GET the panic aborted.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	for path, n := range map[string]int{"/ok": 3, "/silent": 1, "/items/1": 1, "/items/2": 1, "/limited": 1, "/panic": 1, "/stream": 1} {
		for range n {
			resp, err := client.Get(srv.URL + path)
			if err != nil {
				if path == "/panic" {
					continue // the aborted connection is the point
				}
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	s := scrape(t, m)
	want := []struct {
		route, status string
		n             float64
	}{
		{"/ok", "2xx", 3},
		{"/silent", "2xx", 1},
		{"/items/{id}", "4xx", 2}, // the route, not the path with its id
		{"/limited", "4xx", 1},
		{"/panic", "5xx", 1},
		{"/stream", "2xx", 1},
	}
	for _, w := range want {
		if got := s.value("terragate_http_requests_total", l("route", w.route, "status", w.status)); got != w.n {
			t.Errorf("requests{route=%q,status=%q} = %v, want %v", w.route, w.status, got, w.n)
		}
	}
	if got := s.value("terragate_http_request_duration_seconds", l("route", "/ok")); got != 3 {
		t.Errorf("duration samples of /ok = %v, want 3", got)
	}
	if routes := s.labelValues("terragate_http_requests_total", "route"); routes["/items/1"] || routes["/items/2"] {
		t.Errorf("raw paths became labels: %v", routes)
	}
}

// TestHTTPWebSocket upgrades through the middleware with coder/websocket, as gqlgen's
// WebSocket transport does: the recorder must let it hijack, and the connection is counted
// as 1xx without being timed.
func TestHTTPWebSocket(t *testing.T) {
	m := New()
	srv := httptest.NewServer(m.HTTP("/graphql", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept through the recorder: %v", err)
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		_ = c.Write(r.Context(), typ, msg)
		_, _, _ = c.Read(r.Context()) // until the client closes
	})))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "ping" {
		t.Fatalf("echo: %q, %v", msg, err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")

	// The handler returns, and is recorded, just after the close handshake.
	var s scraped
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s = scrape(t, m); s.value("terragate_http_requests_total", l("route", "/graphql", "status", "1xx")) == 1 {
			break
		}
	}
	if got := s.value("terragate_http_requests_total", l("route", "/graphql", "status", "1xx")); got != 1 {
		t.Errorf("upgrades counted = %v, want 1\n%s", got, s.body)
	}
	if got := s.value("terragate_http_request_duration_seconds", l("route", "/graphql")); got != 0 {
		t.Errorf("an upgrade was timed (%v samples): a connection's lifetime is not a latency", got)
	}
}

// TestCardinalityCaps feeds 10,000 distinct values to every open label and checks the
// series stay under the caps.
func TestCardinalityCaps(t *testing.T) {
	const n = 10_000
	m := New()
	ext := m.GraphQL(everyone).(gqlExtension)
	for i := range n {
		runOperation(t, ext, fmt.Sprintf("Op%d", i), queryOp, okResponse())
		m.TerraCall(fmt.Sprintf("op%d", i), 200, nil, time.Millisecond)
		m.SetCircuit(fmt.Sprintf("endpoint%d", i), CircuitOpen)
		m.Webhook(fmt.Sprintf("type_%d", i), WebhookIgnored)
		m.SessionCreated([]string{fmt.Sprintf("P%d", i)})
		m.SessionCompleted(fmt.Sprintf("P%d", i))
		runOperation(t, ext, "Op0", queryOp, errResponse(fmt.Sprintf("CODE_%d", i)))
	}
	s := scrape(t, m)
	caps := []struct {
		name, label string
		max         int
	}{
		{"terragate_graphql_requests_total", "operation", maxOperations + 1},
		{"terragate_graphql_requests_total", "code", maxCodes + 2}, // + ok, other
		{"terragate_graphql_request_duration_seconds", "operation", maxOperations + 1},
		{"terragate_graphql_request_duration_seconds", "code", maxCodes + 2},
		{"terragate_terra_requests_total", "op", maxTerraOps + 1},
		{"terragate_terra_circuit_state", "endpoint", maxTerraOps + 1},
		{"terragate_webhook_events_total", "type", 1},
		{"terragate_widget_sessions_created_total", "provider", maxProviders + 1},
		{"terragate_widget_sessions_completed_total", "provider", maxProviders + 1},
	}
	for _, c := range caps {
		values := s.labelValues(c.name, c.label)
		if len(values) > c.max {
			t.Errorf("%s: %d distinct %s values, cap %d", c.name, len(values), c.label, c.max)
		}
		if !values[other] {
			t.Errorf("%s: nothing overflowed into %q", c.name, other)
		}
	}
	// Everything past the cap is still counted, under "other".
	var total float64
	for _, mf := range s.families["terragate_widget_sessions_completed_total"].GetMetric() {
		total += mf.GetCounter().GetValue()
	}
	if total != n {
		t.Errorf("completed sessions total %v, want %d", total, n)
	}
	// Names admitted before the cap keep their own series.
	if got := s.value("terragate_graphql_requests_total", l("operation", "Op0", "code", "ok")); got != 1 {
		t.Errorf("Op0 ok = %v, want 1", got)
	}
	if got := s.value("terragate_graphql_requests_total", l("operation", "other", "code", "ok")); got != n-maxOperations {
		t.Errorf("other ok = %v, want %d", got, n-maxOperations)
	}
	if len(s.body) > 1<<20 {
		t.Errorf("exposition is %d bytes after 10,000 distinct inputs", len(s.body))
	}
}

// TestNoSecretBecomesALabel feeds secret-shaped values wherever a caller passes a string and
// checks none reaches the exposition.
func TestNoSecretBecomesALabel(t *testing.T) {
	secrets := []string{
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl",        // a JWT
		"a3f9c0d1e2b4a5968778695a4b3c2d1e0f9e8d7c6b5a4938",                 // terragate's hex secrets
		"A3F9C0D1E2B4A5968778695A4B3C2D1E",                                 // the same, upper case
		"Bearer abc.def.ghi",                                               // a header pasted whole
		"8c5ab7e4-1f2d-4c3b-9a8e-7d6c5b4a3f21",                             // a Terra user id
		"user@example.com",                                                 // an end user
		"sk_live_" + strings.Repeat("x9", 40),                              // a long API key
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", // a SHA-256
	}
	m := New()
	ext := m.GraphQL(everyone).(gqlExtension)
	for _, secret := range secrets {
		runOperation(t, ext, secret, queryOp, okResponse())
		runOperation(t, ext, "Viewer", queryOp, errResponse(secret))
		m.TerraCall(secret, 200, nil, time.Millisecond)
		m.SetCircuit(secret, CircuitOpen)
		m.SetCircuit("userInfo", secret)
		m.Webhook(secret, WebhookApplied)
		m.Webhook("auth", secret)
		m.SessionCreated([]string{secret})
		m.SessionCompleted(secret)
	}
	s := scrape(t, m)
	for _, secret := range secrets {
		for _, part := range []string{secret, secret[:16]} {
			if strings.Contains(s.body, part) {
				t.Errorf("the exposition contains %q", part)
			}
		}
	}
	if got := s.value("terragate_graphql_requests_total", l("operation", "other", "code", "ok")); got != float64(len(secrets)) {
		t.Errorf("secret-shaped operation names under other = %v, want %d\n%s", got, len(secrets), s.body)
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	m.TerraCall("userInfo", 500, errors.New("boom"), time.Second)
	m.SetCircuit("userInfo", CircuitOpen)
	m.Webhook("auth", WebhookApplied)
	m.ObserveDeliveryLag(time.Minute)
	m.SubscriptionOpened()
	m.SubscriptionClosed()
	m.SessionCreated([]string{"GARMIN"})
	m.SessionCreated(nil)
	m.SessionCompleted("GARMIN")

	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	rec := httptest.NewRecorder()
	m.HTTP("/x", next).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != http.StatusTeapot {
		t.Errorf("nil HTTP middleware changed the answer: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Handler: %d, want 404", rec.Code)
	}
	ext := m.GraphQL(everyone).(gqlExtension)
	if resp := runOperation(t, ext, "Viewer", queryOp, okResponse()); resp == nil {
		t.Error("nil extension lost the response")
	}
}

func TestConcurrentUse(t *testing.T) {
	m := New()
	ext := m.GraphQL(everyone).(gqlExtension)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				name := fmt.Sprintf("Op%d", (g*500+i)%300)
				runOperation(t, ext, name, queryOp, okResponse())
				m.TerraCall(fmt.Sprintf("op%d", i%50), 200, nil, time.Millisecond)
				m.SessionCreated([]string{fmt.Sprintf("P%d", i%200)})
				m.SubscriptionOpened()
				m.SubscriptionClosed()
			}
		})
	}
	wg.Wait()
	s := scrape(t, m)
	if n := len(s.labelValues("terragate_graphql_requests_total", "operation")); n != maxOperations+1 {
		t.Errorf("%d operation values, want exactly %d: the cap raced", n, maxOperations+1)
	}
	if got := s.value("terragate_graphql_subscriptions_open", l()); got != 0 {
		t.Errorf("open subscriptions = %v, want 0", got)
	}
}

// The event bus's figures are read from the bus at each scrape.
func TestObserveEvents(t *testing.T) {
	m := New()
	subscribers, dropped := 3, int64(7)
	m.ObserveEvents(func() int { return subscribers }, func() int64 { return dropped })
	s := scrape(t, m)
	if s.value("terragate_events_subscribers", nil) != 3 || s.value("terragate_events_dropped_total", nil) != 7 {
		t.Fatalf("bus figures:\n%s", s.body)
	}
	subscribers, dropped = 0, 9
	if s := scrape(t, m); s.value("terragate_events_subscribers", nil) != 0 || s.value("terragate_events_dropped_total", nil) != 9 {
		t.Errorf("figures not read again at the next scrape:\n%s", s.body)
	}
}
