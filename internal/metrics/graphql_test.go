package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

const queryOp = ast.Query

// everyone lets every operation's name take a place under the cap.
func everyone(context.Context) bool { return true }

func okResponse() *graphql.Response { return &graphql.Response{Data: []byte(`{"name":"test"}`)} }

func errResponse(code string) *graphql.Response {
	return &graphql.Response{Errors: gqlerror.List{{Message: "failed", Extensions: map[string]any{"code": code}}}}
}

// runOperation drives the extension as gqlgen's executor does for an operation that
// validated: operation middleware around response middleware, the response handler called
// with the context the operation middleware passed on.
func runOperation(t *testing.T, ext gqlExtension, name string, op ast.Operation, resp *graphql.Response) *graphql.Response {
	t.Helper()
	ctx := graphql.WithOperationContext(context.Background(), &graphql.OperationContext{
		OperationName: name,
		Operation:     &ast.OperationDefinition{Name: name, Operation: op},
		Stats:         graphql.Stats{OperationStart: time.Now()},
	})
	inner := ctx
	respond := ext.InterceptOperation(ctx, func(ctx context.Context) graphql.ResponseHandler {
		inner = ctx
		return graphql.OneShot(resp)
	})
	return ext.InterceptResponse(inner, func(context.Context) *graphql.Response { return respond(inner) })
}

// gqlServer is gqlgen's schema-less test server with the extension added first, as
// graph.NewHandler is to add it, behind the HTTP middleware.
func gqlServer(t *testing.T, m *Metrics, ts *testserver.TestServer) *httptest.Server {
	t.Helper()
	ts.Use(m.GraphQL(everyone))
	ts.AddTransport(transport.SSE{})
	ts.AddTransport(transport.POST{})
	// A rate limit refusing inside operation middleware, as graph's rateLimit does.
	ts.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		if graphql.GetOperationContext(ctx).Operation.Name == "Limited" {
			return graphql.OneShot(errResponse("RATE_LIMITED"))
		}
		return next(ctx)
	})
	ts.Use(extension.FixedComplexityLimit(5))
	ts.SetErrorPresenter(func(ctx context.Context, err error) *gqlerror.Error {
		e := graphql.DefaultErrorPresenter(ctx, err)
		if e.Extensions == nil {
			e.Extensions = map[string]any{"code": "INTERNAL"}
		}
		return e
	})
	srv := httptest.NewServer(m.HTTP("/graphql", ts))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string) string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestGraphQLThroughGqlgen(t *testing.T) {
	m := New()
	srv := gqlServer(t, m, testserver.New())

	requests := []struct{ body, wantIn string }{
		{`{"query":"query Viewer { name }"}`, `"name":"test"`},
		{`{"query":"query Viewer { name }"}`, `"name":"test"`},
		{`{"query":"{ name }"}`, `"name":"test"`},
		{`{"query":"query A { name } query B { name }","operationName":"B"}`, `"name":"test"`},
		{`{"query":"mutation Rename { name }"}`, `mutations are not supported`},
		{`{"query":"query Limited { name }"}`, `RATE_LIMITED`},
		{`{"query":"query Broken { name"}`, `GRAPHQL_PARSE_FAILED`},
		{`{"query":"query Typo { nmae }"}`, `GRAPHQL_VALIDATION_FAILED`},
		{`{"query":"query Viewer { nmae }","operationName":"Viewer"}`, `GRAPHQL_VALIDATION_FAILED`},
		{`{"query":"query Viewer { name }","operationName":"Missing"}`, `GRAPHQL_VALIDATION_FAILED`},
	}
	for _, r := range requests {
		if got := post(t, srv.URL, r.body); !strings.Contains(got, r.wantIn) {
			t.Fatalf("%s: answer %s, want it to contain %s", r.body, got, r.wantIn)
		}
	}

	s := scrape(t, m)
	want := []struct {
		op, code string
		n        float64
	}{
		{"Viewer", "ok", 2},
		{"anonymous", "ok", 1},
		{"B", "ok", 1},
		{"Rename", "unknown", 1},       // refused without extensions.code
		{"Limited", "RATE_LIMITED", 1}, // refused by operation middleware inside ours
		// Refused before they ran: a name not seen on a valid operation is not learned...
		{"other", "GRAPHQL_PARSE_FAILED", 1},
		{"other", "GRAPHQL_VALIDATION_FAILED", 2},
		// ...but a known one is kept.
		{"Viewer", "GRAPHQL_VALIDATION_FAILED", 1},
	}
	var total float64
	for _, w := range want {
		total += w.n
		if got := s.value("terragate_graphql_requests_total", l("operation", w.op, "code", w.code)); got != w.n {
			t.Errorf("requests{operation=%q,code=%q} = %v, want %v", w.op, w.code, got, w.n)
		}
	}
	var counted float64
	for _, mf := range s.families["terragate_graphql_requests_total"].GetMetric() {
		counted += mf.GetCounter().GetValue()
	}
	if counted != total || total != float64(len(requests)) {
		t.Errorf("%v operations counted, want one per request (%d): one was missed or counted twice\n%s", counted, len(requests), s.body)
	}
	// Latency by outcome too: a refusal is fast and must not pass for a quick success.
	for _, w := range []struct {
		op, code string
		n        float64
	}{{"Viewer", "ok", 2}, {"Viewer", "GRAPHQL_VALIDATION_FAILED", 1}, {"Limited", "RATE_LIMITED", 1}} {
		if got := s.value("terragate_graphql_request_duration_seconds", l("operation", w.op, "code", w.code)); got != w.n {
			t.Errorf("duration{operation=%q,code=%q} timed %v times, want %v", w.op, w.code, got, w.n)
		}
	}
	if got := s.value("terragate_http_requests_total", l("route", "/graphql", "status", "2xx")); got < 6 {
		t.Errorf("HTTP middleware around gqlgen counted %v 2xx, want >= 6", got)
	}
}

func TestGraphQLPresentedErrorCode(t *testing.T) {
	m := New()
	srv := gqlServer(t, m, testserver.NewError())
	post(t, srv.URL, `{"query":"query Viewer { name }"}`)
	if got := scrape(t, m).value("terragate_graphql_requests_total", l("operation", "Viewer", "code", "INTERNAL")); got != 1 {
		t.Errorf("requests{Viewer,INTERNAL} = %v, want 1: the presenter's code is not read", got)
	}
}

func TestGraphQLComplexityLimit(t *testing.T) {
	m := New()
	ts := testserver.New()
	srv := gqlServer(t, m, ts)
	post(t, srv.URL, `{"query":"query Cheap { name }"}`)
	ts.SetCalculatedComplexity(100)
	post(t, srv.URL, `{"query":"query Cheap { name }"}`)
	post(t, srv.URL, `{"query":"query Costly { name }"}`)
	s := scrape(t, m)
	for _, w := range []struct{ op, code string }{{"Cheap", "ok"}, {"Cheap", "COMPLEXITY_LIMIT_EXCEEDED"}, {"other", "COMPLEXITY_LIMIT_EXCEEDED"}} {
		if got := s.value("terragate_graphql_requests_total", l("operation", w.op, "code", w.code)); got != 1 {
			t.Errorf("requests{%s,%s} = %v, want 1\n%s", w.op, w.code, got, s.body)
		}
	}
}

// TestGraphQLSubscriptionCountsOnce streams a subscription over server-sent events: three
// messages make one operation, and it is not timed.
func TestGraphQLSubscriptionCountsOnce(t *testing.T) {
	m := New()
	ts := testserver.New()
	srv := gqlServer(t, m, ts)

	req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"query":"subscription Watch { name }"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan string)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "event:") {
				events <- strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			}
		}
	}()
	for range 3 {
		ts.SendNextSubscriptionMessage()
		if ev := <-events; ev != "next" {
			t.Fatalf("event %q, want next", ev)
		}
	}
	ts.SendCompleteSubscriptionMessage()
	if ev := <-events; ev != "complete" {
		t.Fatalf("event %q, want complete", ev)
	}

	s := scrape(t, m)
	if got := s.value("terragate_graphql_requests_total", l("operation", "Watch", "code", "ok")); got != 1 {
		t.Errorf("subscription counted %v times, want once\n%s", got, s.body)
	}
	if got := s.value("terragate_graphql_request_duration_seconds", l("operation", "Watch", "code", "ok")); got != 0 {
		t.Errorf("subscription timed %v times: time to an event measures the events", got)
	}
}

func TestGraphQLOperationEdgeCases(t *testing.T) {
	m := New()
	ext := m.GraphQL(everyone).(gqlExtension)

	// A subscription that ends before its first message is counted when it ends.
	ctx := graphql.WithOperationContext(context.Background(), &graphql.OperationContext{
		Operation: &ast.OperationDefinition{Name: "Quiet", Operation: ast.Subscription},
	})
	respond := ext.InterceptOperation(ctx, func(context.Context) graphql.ResponseHandler {
		return func(context.Context) *graphql.Response { return nil }
	})
	respond(ctx)
	respond(ctx)

	// A query whose client left first.
	cctx, cancel := context.WithCancel(graphql.WithOperationContext(context.Background(), &graphql.OperationContext{
		Operation: &ast.OperationDefinition{Name: "Gone", Operation: ast.Query},
	}))
	cancel()
	ext.InterceptOperation(cctx, func(context.Context) graphql.ResponseHandler {
		return func(context.Context) *graphql.Response { return nil }
	})(cctx)

	// A response with no operation context at all (a body that is not JSON).
	ext.InterceptResponse(context.Background(), func(context.Context) *graphql.Response {
		return errResponse("GRAPHQL_PARSE_FAILED")
	})

	// Lower-case or free-text codes are not codes.
	runOperation(t, ext, "Viewer", queryOp, errResponse("something broke at 10:42 for user 7"))
	runOperation(t, ext, "Viewer", queryOp, &graphql.Response{Errors: gqlerror.List{{Message: "no extensions"}}})
	runOperation(t, ext, "Viewer", queryOp, &graphql.Response{Errors: gqlerror.List{{Message: "bad type", Extensions: map[string]any{"code": 42}}}})

	s := scrape(t, m)
	for _, w := range []struct{ op, code string }{
		{"Quiet", "ok"}, {"Gone", "canceled"}, {"other", "GRAPHQL_PARSE_FAILED"},
		{"Viewer", "other"},
	} {
		if got := s.value("terragate_graphql_requests_total", l("operation", w.op, "code", w.code)); got != 1 {
			t.Errorf("requests{%s,%s} = %v, want 1\n%s", w.op, w.code, got, s.body)
		}
	}
	if got := s.value("terragate_graphql_requests_total", l("operation", "Viewer", "code", "unknown")); got != 2 {
		t.Errorf("errors without a string code = %v, want 2", got)
	}
}

func TestGraphQLOperationNameRule(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"Viewer", true},
		{"_private", true},
		{"createWidgetSession2", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"2fast", false},
		{"with space", false},
		{"dash-ed", false},
		{"ünicode", false},
		{"deadbeefdeadbeef00", false}, // hex: a key, not a name
		{"abcdefabcdef1234", false},
		{"deadbeefdeadbeef", true}, // no digit: reads as words
		{"DeadBeef", true},         // short hex-looking words are names
		{"facade", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isName(tt.name, 64); got != tt.ok {
				t.Errorf("isName(%q) = %v, want %v", tt.name, got, tt.ok)
			}
		})
	}
}

func TestGraphQLExtensionRegisters(t *testing.T) {
	// handler.Server.Use panics on an extension with no hooks; a nil *Metrics must still
	// give one that registers.
	for _, m := range []*Metrics{nil, New()} {
		ts := testserver.New()
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("Use(%v.GraphQL()) panicked: %v", m != nil, p)
				}
			}()
			ts.Use(m.GraphQL(everyone))
		}()
	}
	if err := New().GraphQL(everyone).Validate(nil); err != nil {
		t.Error(errors.Join(errors.New("Validate"), err))
	}
}

// Only operations learns admits add names: others keep a name already known, or "other".
func TestGraphQLOnlyLearnsAdmittedNames(t *testing.T) {
	m := New()
	signedIn := m.GraphQL(everyone).(gqlExtension)
	anonymousCaller := m.GraphQL(func(context.Context) bool { return false }).(gqlExtension)
	runOperation(t, signedIn, "Known", queryOp, okResponse())
	for i := range 3 {
		runOperation(t, anonymousCaller, fmt.Sprintf("Random%d", i), queryOp, okResponse())
	}
	runOperation(t, anonymousCaller, "Known", queryOp, okResponse())
	runOperation(t, m.GraphQL(nil).(gqlExtension), "NilLearnsNothing", queryOp, okResponse())
	s := scrape(t, m)
	for op, want := range map[string]float64{"Known": 2, "other": 4} {
		if got := s.value("terragate_graphql_requests_total", l("operation", op, "code", "ok")); got != want {
			t.Errorf("requests{%s} = %v, want %v\n%s", op, got, want, s.body)
		}
	}
	if strings.Contains(s.body, "Random") || strings.Contains(s.body, "NilLearnsNothing") {
		t.Errorf("an unadmitted name became a label:\n%s", s.body)
	}
}
