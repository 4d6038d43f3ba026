package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/admin"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/httplog"
	"github.com/terragate/terragate/internal/provider"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
	"github.com/terragate/terragate/internal/widget"
)

// Credentials are long and distinctive so that a leak is easy to spot.
const (
	testDevID     = "graph-test-dev"
	testAPIKey    = "tk_graph_APIKEY_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	testJWTSecret = "jwt_graph_SECRET_abcdef0123456789abcdef0123456789"
	testStateKey  = "state_graph_KEY_0123456789abcdef"
)

// syncBuffer collects log output, safe to read while the server writes.
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

// server is the GraphQL handler wired as the gateway wires it (request ids, the caller
// from the bearer token, JSON logs through httplog's context handler) over a SQLite file,
// with the Terra emulator as a real HTTP server.
type server struct {
	t     *testing.T
	url   string
	emu   *terrasim.Emulator
	store *sqlite.DB
	logs  *syncBuffer
}

// start serves the handler with opts; change may alter the resolver's dependencies first.
// opts.Verifier, when nil, accepts tokens signed with testJWTSecret.
func start(t *testing.T, opts graph.Options, change func(*graph.Resolver)) *server {
	t.Helper()
	return startOver(t, opts, nil, change)
}

// startOver is start with the domain services over wrap(the store) when wrap is not nil.
func startOver(t *testing.T, opts graph.Options, wrap func(store.Store) store.Store, change func(*graph.Resolver)) *server {
	t.Helper()
	s := &server{t: t, logs: &syncBuffer{}}
	log := slog.New(httplog.ContextHandler(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "terragate.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s.store = st
	s.emu = terrasim.New(terrasim.Config{DevID: testDevID, APIKey: testAPIKey})
	emuSrv := httptest.NewServer(s.emu)
	t.Cleanup(emuSrv.Close)
	t.Cleanup(s.emu.Close)

	tc := terra.New(terra.Config{BaseURL: emuSrv.URL + "/v2", WidgetURL: emuSrv.URL + "/api/widget/session", DevID: testDevID, APIKey: testAPIKey, Timeout: 2 * time.Second, BreakerDisabled: true}, nil, log)
	bus := events.NewLocal(log)
	var over store.Store = st
	if wrap != nil {
		over = wrap(st)
	}
	conns := connection.New(tc, over, bus, nil, nil, log)
	r := &graph.Resolver{
		Widgets:     widget.NewService(tc, over, conns, widget.Config{PublicURL: "http://gateway.test", StateKey: []byte(testStateKey)}, log),
		Connections: conns,
		Admin:       admin.New(over, conns, log),
		Catalog:     provider.NewCatalog(tc, time.Hour, log),
		Bus:         bus,
		Log:         log,
	}
	if change != nil {
		change(r)
	}
	verifier := opts.Verifier
	if verifier == nil {
		verifier, err = auth.NewVerifierContext(context.Background(), auth.Config{Secret: []byte(testJWTSecret)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = verifier.Close() })
	}
	opts.Verifier, opts.Log = verifier, log
	opts.Secrets = append(opts.Secrets, testAPIKey)
	srv := httptest.NewServer(httplog.Middleware(log, verifier.Middleware(graph.NewHandler(r, opts))))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

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

type response struct {
	Data      json.RawMessage `json:"data"`
	Errors    []gqlError      `json:"errors"`
	raw       string
	requestID string // the X-Request-Id the gateway answered with
}

// post sends one operation as alice.
func (s *server) post(query string) response {
	s.t.Helper()
	return s.postAs(token(s.t, "alice"), query, nil)
}

// postAs sends one operation with the bearer credential given (none when empty).
func (s *server) postAs(bearer, query string, vars map[string]any) response {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{raw: string(raw), requestID: resp.Header.Get("X-Request-Id")}
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatalf("answered %d %s", resp.StatusCode, raw)
	}
	return out
}

// onlyError returns the response's single error.
func onlyError(t *testing.T, r response) gqlError {
	t.Helper()
	if len(r.Errors) != 1 {
		t.Fatalf("want one error, got %s", r.raw)
	}
	return r.Errors[0]
}

// logLines returns the JSON log lines whose msg is msg.
func (s *server) logLines(msg string) []string {
	var out []string
	for line := range strings.SplitSeq(s.logs.String(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			out = append(out, line)
		}
	}
	return out
}

// topLevelValues returns every value of key at the top level of a JSON object, repeats
// included (decoding into a map would keep only the last).
func topLevelValues(t *testing.T, line, key string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", line)
	}
	var out []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if k == key {
			var s string
			_ = json.Unmarshal(v, &s)
			out = append(out, s)
		}
	}
	return out
}

// An error of no known kind (here the database going away) reaches the client as INTERNAL
// with a generic message, and the operator's log as the real cause under the request id.
func TestUnknownErrorIsInternal(t *testing.T) {
	s := start(t, graph.Options{}, nil)
	if err := s.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := s.post(`{ connectedUsers { userId } }`)
	e := onlyError(t, r)
	if e.Extensions["code"] != graph.CodeInternal || e.Message != "internal error" {
		t.Errorf("error %+v, want INTERNAL with a generic message", e)
	}
	if e.Extensions["requestId"] != r.requestID || r.requestID == "" {
		t.Errorf("requestId %v, want the X-Request-Id %q", e.Extensions["requestId"], r.requestID)
	}
	for _, internal := range []string{"sql", "database", "closed", "sqlite"} {
		if strings.Contains(strings.ToLower(r.raw), internal) {
			t.Errorf("the response shows %q: %s", internal, r.raw)
		}
	}
	lines := s.logLines("graphql internal error")
	if len(lines) != 1 || !strings.Contains(lines[0], "closed") {
		t.Fatalf("log lines for the internal error: %v", lines)
	}
}

// Every line one request causes carries its request id once: httplog's handler adds it,
// and a second copy would be a duplicate JSON key that log tools read differently.
func TestOneRequestIDPerLogLine(t *testing.T) {
	s := start(t, graph.Options{}, func(r *graph.Resolver) { r.Catalog = nil })
	ok := s.post(`{ connectedUsers { userId } }`)
	if len(ok.Errors) > 0 {
		t.Fatalf("connectedUsers: %s", ok.raw)
	}
	panicked := s.post(`{ providers { name } }`)
	if err := s.store.Close(); err != nil {
		t.Fatal(err)
	}
	internal := s.post(`{ connectedUsers { userId } }`)

	for _, c := range []struct {
		msg string
		r   response
	}{
		{"graphql operation", ok},
		{"http request", ok},
		{"graphql panic", panicked},
		{"graphql internal error", internal},
		{"graphql operation", internal},
	} {
		found := false
		for _, line := range s.logLines(c.msg) {
			ids := topLevelValues(t, line, "request_id")
			if len(ids) != 1 {
				t.Errorf("%d request_id keys in %s", len(ids), line)
			}
			if len(ids) > 0 && ids[0] == c.r.requestID {
				found = true
			}
		}
		if !found {
			t.Errorf("no %q line for request %s:\n%s", c.msg, c.r.requestID, s.logs.String())
		}
	}
}

// A resolver that panics (here one whose dependency was never wired) answers INTERNAL,
// without the panic's text, and the server keeps serving.
func TestResolverPanicIsInternal(t *testing.T) {
	s := start(t, graph.Options{}, func(r *graph.Resolver) { r.Catalog = nil })
	r := s.post(`{ providers { name } }`)
	e := onlyError(t, r)
	if e.Extensions["code"] != graph.CodeInternal || e.Message != "internal error" {
		t.Errorf("error %+v, want INTERNAL with a generic message", e)
	}
	for _, internal := range []string{"nil pointer", "runtime error", "goroutine", ".go:"} {
		if strings.Contains(r.raw, internal) {
			t.Errorf("the response shows %q: %s", internal, r.raw)
		}
	}
	if lines := s.logLines("graphql panic"); len(lines) != 1 || !strings.Contains(lines[0], "nil pointer") {
		t.Errorf("panic log lines: %v", lines)
	}
	if again := s.post(`{ connectedUsers { userId } }`); len(again.Errors) > 0 {
		t.Errorf("after the panic: %s", again.raw)
	}
}

// What Terra says about a refusal helps in development, and stays out of production
// answers (HideDetails); the status is always shown.
func TestTerraDetailsHiddenInProduction(t *testing.T) {
	const detail = "providers WHOOP not enabled for dev id"
	for _, c := range []struct {
		name string
		hide bool
		want string
	}{
		{"development", false, "Terra answered 400 Bad Request: " + detail},
		{"production", true, "Terra answered 400 Bad Request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, graph.Options{HideDetails: c.hide}, nil)
			s.emu.Fail("/api/widget/session", terrasim.Fault{
				Status: http.StatusBadRequest, ContentType: "application/json",
				Body: `{"status":"error","message":"` + detail + ` (key ` + testAPIKey + `)"}`,
			})
			r := s.post(`mutation { createWidgetSession(input: {providers: ["WHOOP"]}) { sessionId } }`)
			e := onlyError(t, r)
			if e.Extensions["code"] != graph.CodeUpstreamError || e.Extensions["status"] != float64(400) {
				t.Errorf("extensions %v", e.Extensions)
			}
			if !strings.HasPrefix(e.Message, c.want) || (c.hide && e.Message != c.want) {
				t.Errorf("message %q, want %q", e.Message, c.want)
			}
			if strings.Contains(r.raw, testAPIKey) {
				t.Errorf("the API key reached the client: %s", r.raw)
			}
		})
	}
}

// dialWS opens a WebSocket to the handler in the given subprotocol and completes
// connection_init as alice.
func (s *server) dialWS(subprotocol string) *websocket.Conn {
	s.t.Helper()
	return s.dialWSAs(subprotocol, token(s.t, "alice"))
}

// dialWSAs is dialWS with the bearer credential given.
func (s *server) dialWSAs(subprotocol, bearer string) *websocket.Conn {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/graphql", &websocket.DialOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = conn.CloseNow() })
	if conn.Subprotocol() != subprotocol {
		s.t.Fatalf("subprotocol %q, want %q", conn.Subprotocol(), subprotocol)
	}
	write(s.t, conn, map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + bearer}})
	if m := read(s.t, conn); m.Type != "connection_ack" {
		s.t.Fatalf("got %q instead of connection_ack", m.Type)
	}
	return conn
}

type wsMessage struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

func write(t *testing.T, conn *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, conn *websocket.Conn) wsMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m wsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return m
}
