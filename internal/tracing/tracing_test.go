package tracing_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/terragate/terragate/internal/tracing"
	"github.com/terragate/terragate/internal/tracing/tracingtest"
)

const secret = "secret-user"

// restoreGlobals puts back the global tracer provider and propagator after a test.
func restoreGlobals(t *testing.T) {
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		// The first global provider cannot be set again (it is the delegating one): a
		// test that replaced it leaves a no-op one (and the W3C propagator) behind.
		if otel.GetTracerProvider() != tp {
			otel.SetTracerProvider(noop.NewTracerProvider())
		}
		if otel.GetTextMapPropagator() != prop {
			otel.SetTextMapPropagator(propagation.TraceContext{})
		}
	})
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func gqlServer(ts *testserver.TestServer) *httptest.Server {
	ts.Use(tracing.GraphQL())
	ts.AddTransport(transport.POST{})
	ts.SetErrorPresenter(func(ctx context.Context, err error) *gqlerror.Error {
		e := graphql.DefaultErrorPresenter(ctx, err)
		if e.Extensions == nil {
			e.Extensions = map[string]any{"code": "INTERNAL"}
		}
		return e
	})
	return httptest.NewServer(ts)
}

func postGraphQL(t *testing.T, url, body string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
}

func TestExportsSpansWithoutSecrets(t *testing.T) {
	restoreGlobals(t)
	rc := &tracingtest.Receiver{}
	collector := httptest.NewServer(rc)
	defer collector.Close()

	ctx := context.Background()
	shutdown, _, err := tracing.Setup(ctx, env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}), "terragate", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := otel.GetTextMapPropagator().(propagation.TraceContext); !ok {
		t.Errorf("propagator %T, want the W3C trace context", otel.GetTextMapPropagator())
	}

	// GraphQL: a named query with a variable, an anonymous failing one, an unparsable one.
	ok := gqlServer(testserver.New())
	defer ok.Close()
	postGraphQL(t, ok.URL, `{"query":"query Find($id: Int!) { find(id: $id) }","operationName":"Find","variables":{"id":987654321}}`)
	failing := gqlServer(testserver.NewError())
	defer failing.Close()
	postGraphQL(t, failing.URL, `{"query":"{ name }"}`)
	postGraphQL(t, ok.URL, `{"query":"query Broken { name","operationName":"Broken"}`)

	// Terra: a call inside a store span, with a user id in its query.
	var gotQuery, gotTraceparent string
	terra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQuery, gotTraceparent = r.URL.RawQuery, r.Header.Get("Traceparent")
		_, _ = io.WriteString(w, `{"status":"success"}`)
	}))
	defer terra.Close()
	client := &http.Client{Transport: tracing.Transport(http.DefaultTransport)}
	sctx, end := tracing.Span(ctx, "store.connections")
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, terra.URL+"/v2/userInfo?user_id="+secret+"&x=1", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	end()
	if gotQuery != "user_id="+secret+"&x=1" {
		t.Errorf("Terra got query %q, want the request's whole query", gotQuery)
	}
	if gotTraceparent == "" {
		t.Error("Terra got no traceparent header")
	}

	// A failing call: the caller gets base's error; the span gets no user id.
	errBase := errors.New("refused")
	failingBase := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, errors.Join(errBase, errors.New("calling "+r.URL.String()))
	})
	req, _ = http.NewRequest(http.MethodPost, "http://terra.invalid/v2/deauthenticateUser?user_id="+secret, nil)
	_, err = tracing.Transport(failingBase).RoundTrip(req)
	if !errors.Is(err, errBase) || !strings.Contains(err.Error(), secret) {
		t.Errorf("RoundTrip error %v, want base's own error", err)
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		t.Fatal(err)
	}

	find := rc.Span(t, "graphql Find")
	if tracingtest.Attr(find, "graphql.operation.name") != "Find" || tracingtest.Attr(find, "graphql.operation.type") != "query" {
		t.Errorf("Find span attributes %v", find.Attributes)
	}
	if find.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("Find span kind %v", find.Kind)
	}
	anon := rc.Span(t, "graphql query")
	if tracingtest.Attr(anon, "graphql.error.codes") != "INTERNAL" || anon.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("failing query span: attributes %v, status %v", anon.Attributes, anon.Status)
	}
	broken := rc.Span(t, "graphql Broken")
	if tracingtest.Attr(broken, "graphql.error.codes") != "GRAPHQL_PARSE_FAILED" {
		t.Errorf("unparsable query span attributes %v", broken.Attributes)
	}
	store := rc.Span(t, "store.connections")
	call := rc.Span(t, "GET /v2/userInfo")
	if call.Kind != tracepb.Span_SPAN_KIND_CLIENT || !bytes.Equal(call.ParentSpanId, store.SpanId) {
		t.Errorf("Terra span: kind %v, parent %x, want a client span under the store span %x", call.Kind, call.ParentSpanId, store.SpanId)
	}
	if u := tracingtest.Attr(call, "url.full"); u != terra.URL+"/v2/userInfo" {
		t.Errorf("Terra span url.full %q", u)
	}
	failed := rc.Span(t, "POST /v2/deauthenticateUser")
	if failed.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("failed Terra span status %v", failed.Status)
	}

	if services := rc.Services(); len(services) == 0 || services[0] != "terragate" {
		t.Errorf("service.name %q", services)
	}
	for _, raw := range rc.Raw() {
		for _, leak := range []string{secret, "987654321", "user_id"} {
			if bytes.Contains(raw, []byte(leak)) {
				t.Errorf("exported spans contain %q", leak)
			}
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestOffWithoutEndpoint(t *testing.T) {
	restoreGlobals(t)
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	start := time.Now()
	for _, vars := range []map[string]string{
		nil,
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
	} {
		shutdown, _, err := tracing.Setup(context.Background(), env(vars), "terragate", "dev")
		if err != nil {
			t.Fatal(err)
		}
		if err := shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Setup without an endpoint took %v", took)
	}
	if otel.GetTracerProvider() != tp || otel.GetTextMapPropagator() != prop {
		t.Error("Setup without an endpoint installed a tracer provider or propagator")
	}
	ctx, end := tracing.Span(context.Background(), "store.op")
	defer end()
	if trace.SpanFromContext(ctx).IsRecording() {
		t.Error("spans record without an endpoint")
	}
}

func TestBadEndpoint(t *testing.T) {
	restoreGlobals(t)
	tp := otel.GetTracerProvider()
	_, _, err := tracing.Setup(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318?token=hunter2"}), "terragate", "dev")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Setup error %v, want one that does not repeat the endpoint", err)
	}
	if otel.GetTracerProvider() != tp {
		t.Error("Setup with a bad endpoint installed a tracer provider")
	}
}
