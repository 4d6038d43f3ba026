package limit

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/terragate/terragate/internal/httplog"
)

type gqlBody struct {
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// decodeGraphQL checks that w holds exactly one GraphQL error and returns it.
func decodeGraphQL(t *testing.T, w *httptest.ResponseRecorder) (msg string, ext map[string]any) {
	t.Helper()
	var b gqlBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || len(b.Errors) != 1 {
		t.Fatalf("not one GraphQL error: %q (%v)", w.Body, err)
	}
	if strings.Contains(w.Body.String(), `"data"`) {
		t.Fatalf("a refusal carries data: %s", w.Body)
	}
	return b.Errors[0].Message, b.Errors[0].Extensions
}

func TestPerIPGraphQL(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 1.0 / 30, Burst: 1, Now: c.Now})
	h := httplog.Middleware(slog.New(slog.DiscardHandler), PerIP(l, func(*http.Request) netip.Addr {
		return netip.MustParseAddr("192.0.2.1")
	}, GraphQL, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })))
	do := func(accept string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
		r.Header.Set("X-Request-Id", "req-1")
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do(""); w.Code != 200 {
		t.Fatalf("first request: %d", w.Code)
	}
	c.Advance(15 * time.Second)
	w := do("")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "15" {
		t.Fatalf("status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	msg, ext := decodeGraphQL(t, w)
	if ext["code"] != CodeRateLimited || ext["retryAfter"] != float64(15) || ext["requestId"] != "req-1" || !strings.Contains(msg, "15 s") {
		t.Errorf("refusal %q %v", msg, ext)
	}
	// A client that asks for the GraphQL-over-HTTP media type gets it.
	if ct := do("application/graphql-response+json;charset=utf-8, application/json;q=0.9").Header().Get("Content-Type"); ct != "application/graphql-response+json" {
		t.Errorf("with Accept graphql-response+json: Content-Type %q", ct)
	}
}

func TestMaxBodyGraphQL(t *testing.T) {
	called := false
	h := MaxBody(16, GraphQL, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	for _, chunked := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`{"query":"{ a b c d }"}`))
		if chunked {
			r.ContentLength = -1
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusRequestEntityTooLarge || called {
			t.Fatalf("chunked=%v: status %d, next ran: %v", chunked, w.Code, called)
		}
		msg, ext := decodeGraphQL(t, w)
		if ext["code"] != CodeRequestTooLarge || ext["maxBytes"] != float64(16) || msg != "request body larger than 16 bytes" {
			t.Errorf("chunked=%v: %q %v", chunked, msg, ext)
		}
		if strings.Contains(w.Body.String(), "a b c d") {
			t.Errorf("the body was echoed: %s", w.Body)
		}
	}
}

func TestSingleOperation(t *testing.T) {
	const secret = "Bearer-eyJSECRETtoken"
	var seen string
	var called bool
	h := SingleOperation(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		b, _ := io.ReadAll(r.Body)
		seen = string(b)
	}))
	tests := []struct {
		name, method, contentType, body, query string
		wantStatus                             int
		wantCode                               string
	}{
		{name: "one operation", body: `{"query":"{ a }"}`},
		{name: "every field", body: `{"query":"query Q($x: Int) { a(x: $x) }","operationName":"Q","variables":{"x":1,"s":"` + secret + `"},"extensions":{"persistedQuery":{"version":1}}}`},
		{name: "null fields", body: ` {"query":"{ a }","operationName":null,"variables":null,"extensions":null}` + "\n"},
		{name: "persisted query without a query", body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`},
		{name: "persisted document", body: `{"documentId":"sha256:abc","variables":{"x":1}}`},
		{name: "documentId an object", body: `{"documentId":{"s":"` + secret + `"}}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "charset", contentType: "application/json; charset=utf-8", body: `{"query":"{ a }"}`},
		{name: "batch", body: `[{"query":"{ a }"},{"query":"{ b }","variables":{"s":"` + secret + `"}}]`, wantStatus: 400, wantCode: CodeBatchingNotSupported},
		{name: "batch of one", body: " \n\t[{\"query\":\"{ a }\"}]", wantStatus: 400, wantCode: CodeBatchingNotSupported},
		{name: "empty", body: "", wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "truncated", body: `{"query":"{ a }","variables":{"s":"` + secret, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "two objects", body: `{"query":"{ a }"}{"query":"{ b }"}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "a string", body: `"` + secret + `"`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "null", body: `null`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "query a number", body: `{"query":5}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "query in other case", body: `{"QUERY":{"x":"` + secret + `"}}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "operationName an object", body: `{"query":"{ a }","operationName":{}}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "variables a string", body: `{"query":"{ a }","variables":"` + secret + `"}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "variables an array", body: `{"query":"{ a }","variables":["` + secret + `"]}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "extensions an array", body: `{"query":"{ a }","extensions":[]}`, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "a form", contentType: "application/x-www-form-urlencoded", body: "query=" + secret, wantStatus: 415, wantCode: CodeUnsupportedMediaType},
		{name: "text/plain JSON", contentType: "text/plain", body: `{"query":"{ a }"}`, wantStatus: 415, wantCode: CodeUnsupportedMediaType},
		{name: "no content type", contentType: "-", body: `{"query":"{ a }"}`, wantStatus: 415, wantCode: CodeUnsupportedMediaType},
		{name: "GET", method: http.MethodGet, query: "query=%7Ba%7D&variables=%7B%22x%22%3A1%7D"},
		{name: "GET without parameters", method: http.MethodGet},
		{name: "GET variables not JSON", method: http.MethodGet, query: "query=%7Ba%7D&variables=" + secret, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "GET extensions an array", method: http.MethodGet, query: "query=%7Ba%7D&extensions=%5B%5D", wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "GET bad escape", method: http.MethodGet, query: "query=%zz" + secret, wantStatus: 400, wantCode: CodeMalformedRequest},
		{name: "OPTIONS", method: http.MethodOptions},
		{name: "PUT", method: http.MethodPut, body: `{"query":"{ a }"}`, wantStatus: 405, wantCode: CodeMethodNotAllowed},
		{name: "HEAD", method: http.MethodHead, wantStatus: 405, wantCode: CodeMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called, seen = false, ""
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, "/graphql?"+tt.query, strings.NewReader(tt.body))
			switch tt.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if tt.wantCode == "" {
				if !called || w.Code != 200 {
					t.Fatalf("refused: %d %s", w.Code, w.Body)
				}
				if method != http.MethodGet && seen != tt.body {
					t.Fatalf("next read %q, want the body unchanged", seen)
				}
				return
			}
			if called {
				t.Fatal("the next handler ran")
			}
			if w.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tt.wantStatus)
			}
			msg, ext := decodeGraphQL(t, w)
			if ext["code"] != tt.wantCode || msg == "" {
				t.Errorf("refusal %q %v, want code %s", msg, ext, tt.wantCode)
			}
			if strings.Contains(w.Body.String(), secret) || strings.Contains(w.Body.String(), "zz") {
				t.Errorf("the request was echoed: %s", w.Body)
			}
		})
	}
}

func TestSingleOperationPassesWebSocket(t *testing.T) {
	called := false
	h := SingleOperation(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	r := httptest.NewRequest(http.MethodGet, "/graphql", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !called {
		t.Fatal("a WebSocket upgrade did not reach the next handler")
	}
	// An Upgrade header alone does not skip the checks.
	called = false
	r = httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`[{"query":"{ a }"}]`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Upgrade", "websocket")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if called || w.Code != http.StatusBadRequest {
		t.Fatalf("a batch with an Upgrade header: %d, next ran: %v", w.Code, called)
	}
}

// FuzzSingleOperation: whatever the body, a request is either passed on unchanged, and then
// decodes as gqlgen decodes it, or refused with one coded GraphQL error. (That refusals do
// not quote the body is checked in TestSingleOperation with a marker.)
func FuzzSingleOperation(f *testing.F) {
	for _, s := range []string{`{"query":"{ a }"}`, `[{"query":"{ a }"}]`, `{"variables":[]}`, `{"query":`, ``, `null`, `{"Variables":{"a":[1,{"b":null}]},"operationName":"x"}`} {
		f.Add(s)
	}
	h := SingleOperation(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body) // echoed only by this stand-in for gqlgen, to compare
	}))
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			if w.Body.String() != body {
				t.Fatalf("body changed: %q -> %q", body, w.Body)
			}
			var p graphql.RawParams
			dec := json.NewDecoder(strings.NewReader(body))
			dec.UseNumber()
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("passed a body gqlgen cannot decode: %q: %v", body, err)
			}
			return
		}
		var b gqlBody
		if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || len(b.Errors) != 1 || b.Errors[0].Extensions["code"] == nil {
			t.Fatalf("refusal %q", w.Body)
		}
	})
}
