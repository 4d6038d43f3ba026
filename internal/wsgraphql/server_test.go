package wsgraphql_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/terragate/terragate/internal/wsgraphql"
)

// The tests' schema: a query answered at once, and a subscription fed by a hub the test
// publishes to, whose resolver takes StreamNotify as terragate's do.
const schemaSDL = `
type Query { hello: String! }
type Subscription { ticks: String! }
`

// testToken is the one bearer token init accepts.
const testToken = "good"

// hub delivers published values to every running ticks subscription.
type hub struct {
	mu      sync.Mutex
	subs    map[*tickSub]struct{}
	changed chan struct{} // closed and replaced whenever subs changes
}

type tickSub struct {
	ch     chan string
	notify func()
}

func newHub() *hub { return &hub{subs: map[*tickSub]struct{}{}, changed: make(chan struct{})} }

// publish offers v to every subscription; one whose last value is still unsent skips it.
func (h *hub) publish(v string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- v:
			s.notify()
		default:
		}
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// await returns once n subscriptions are running, or fails the test after 5 s.
func (h *hub) await(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		h.mu.Lock()
		got, changed := len(h.subs), h.changed
		h.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d subscriptions running, want %d", got, n)
		}
	}
}

func (h *hub) set(s *tickSub, add bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if add {
		h.subs[s] = struct{}{}
	} else {
		delete(h.subs, s)
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

// schema is an executable schema over h, without generated code.
func schema(h *hub) graphql.ExecutableSchema {
	s := gqlparser.MustLoadSchema(&ast.Source{Input: schemaSDL})
	return &graphql.ExecutableSchemaMock{
		SchemaFunc: func() *ast.Schema { return s },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 1, true
		},
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			if graphql.GetOperationContext(ctx).Operation.Operation != ast.Subscription {
				return graphql.OneShot(&graphql.Response{Data: json.RawMessage(`{"hello":"world"}`)})
			}
			// As a generated resolver: subscribe within Exec, stop when ctx ends.
			notify, _ := wsgraphql.StreamNotify(ctx)
			sub := &tickSub{ch: make(chan string, 1), notify: notify}
			h.set(sub, true)
			context.AfterFunc(ctx, func() { h.set(sub, false) })
			return func(ctx context.Context) *graphql.Response {
				select {
				case v := <-sub.ch:
					b, _ := json.Marshal(map[string]string{"ticks": v})
					return &graphql.Response{Data: b}
				case <-ctx.Done():
					return nil
				}
			}
		},
	}
}

// errRefused is init's answer to any credential but testToken.
var errRefused = errors.New("refused")

// init accepts connection_init with {"Authorization": "Bearer good"}.
func initFunc(ctx context.Context, p transport.InitPayload) (context.Context, time.Time, error) {
	if p.Authorization() != "Bearer "+testToken {
		return ctx, time.Time{}, errRefused
	}
	return ctx, time.Time{}, nil
}

// testServer is the transport and gqlgen's POST in front of the tests' schema, served by
// a real http.Server on loopback.
type testServer struct {
	hub *hub
	srv *httptest.Server
	url string // ws://.../graphql
}

func serve(t *testing.T, cfg wsgraphql.Config) *testServer {
	t.Helper()
	h := newHub()
	if cfg.Init == nil {
		cfg.Init = initFunc
	}
	gql := handler.New(schema(h))
	gql.AddTransport(wsgraphql.New(cfg))
	gql.AddTransport(transport.POST{})
	mux := http.NewServeMux()
	mux.Handle("/graphql", gql)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testServer{hub: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/graphql"}
}

type message struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dial opens a connection in subprotocol and completes connection_init.
func (s *testServer) dial(t *testing.T, subprotocol string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, s.url, &websocket.DialOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	if conn.Subprotocol() != subprotocol {
		t.Fatalf("subprotocol %q, want %q", conn.Subprotocol(), subprotocol)
	}
	write(t, conn, map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + testToken}})
	if m := read(t, conn); m.Type != "connection_ack" {
		t.Fatalf("got %q instead of connection_ack", m.Type)
	}
	return conn
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

func read(t *testing.T, conn *websocket.Conn) message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return m
}

// subscribe starts the ticks subscription id in the connection's subprotocol.
func subscribe(t *testing.T, conn *websocket.Conn, id string) {
	t.Helper()
	typ := "subscribe"
	if conn.Subprotocol() == "graphql-ws" {
		typ = "start"
	}
	write(t, conn, map[string]any{"id": id, "type": typ, "payload": map[string]string{"query": `subscription { ticks }`}})
}

// awaitPong pings and reads until the pong. The connection handles its messages in order
// and starts an operation (its resolver included) before reading the next one, so the pong
// says that every operation subscribed before the ping has started.
func awaitPong(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	write(t, conn, map[string]string{"type": "ping"})
	for {
		switch m := read(t, conn); m.Type {
		case "pong":
			return
		case "ping": // the server's own; answered so that it keeps the connection
			write(t, conn, map[string]string{"type": "pong"})
		default:
			t.Fatalf("got %q while waiting for a pong", m.Type)
		}
	}
}

// awaitStarted returns once every operation sent on conn so far has started (see
// awaitPong). The legacy subprotocol has no ping: there a query sent after them, and its
// complete, say the same.
func awaitStarted(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	if conn.Subprotocol() != "graphql-ws" {
		awaitPong(t, conn)
		return
	}
	write(t, conn, map[string]any{"id": "started", "type": "start", "payload": map[string]string{"query": `{ hello }`}})
	for {
		switch m := read(t, conn); {
		case m.ID == "started" && m.Type == "complete":
			return
		case m.ID == "started" && m.Type == "data", m.Type == "ka":
		default:
			t.Fatalf("got %q for %q while waiting for the query's complete", m.Type, m.ID)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
