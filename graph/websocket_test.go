package graph_test

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/store"
)

// An idle connectionEvents subscriber costs the gateway one goroutine, the one that reads
// its connection: its resolver takes wsgraphql.StreamNotify, so it holds none of its own.
// Stopping the subscriptions and closing the connections leaves nothing behind.
func TestIdleSubscriberHoldsOneGoroutine(t *testing.T) {
	var bus *events.Local
	s := start(t, graph.Options{}, func(r *graph.Resolver) { bus = r.Bus.(*events.Local) })
	const n = 20
	base := runtime.NumGoroutine()
	conns := make([]interface{ CloseNow() error }, n)
	for i := range n {
		conn := s.dialWS([]string{"graphql-transport-ws", "graphql-ws"}[i%2])
		typ := map[bool]string{true: "subscribe", false: "start"}[i%2 == 0]
		write(t, conn, map[string]any{"id": strconv.Itoa(i), "type": typ, "payload": map[string]string{"query": `subscription { connectionEvents { type } }`}})
		awaitStarted(t, conn, i%2 == 1)
		conns[i] = conn
	}
	if got := bus.Subscribers(); got != n {
		t.Fatalf("%d subscriptions running, want %d", got, n)
	}
	time.Sleep(50 * time.Millisecond) // goroutines of the handshakes wind down
	if got := runtime.NumGoroutine() - base; got > n+2 {
		t.Errorf("%d more goroutines for %d idle subscribers, want about one each", got, n)
	}
	for _, c := range conns {
		_ = c.CloseNow()
	}
	deadline := time.Now().Add(5 * time.Second)
	for (bus.Subscribers() > 0 || runtime.NumGoroutine() > base+2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if bus.Subscribers() != 0 || runtime.NumGoroutine() > base+2 {
		t.Errorf("%d subscriptions and %d goroutines left (%d before)", bus.Subscribers(), runtime.NumGoroutine(), base)
	}
}

// A subscription lasts no longer than its token: once the token would no longer be
// accepted (its exp, plus the verifier's leeway) the connection is closed with 4403, though
// the client is quiet and no keep-alive is due, and an event that arrives after that is not
// written. A service key does not expire, and its connection stays.
func TestSubscriptionEndsWithItsToken(t *testing.T) {
	const leeway = time.Millisecond // zero would mean the default 30 s
	const serviceKey = "svc_graph_KEY_0123456789abcdef0123456789abcdef"
	verifier, err := auth.NewVerifier(auth.Config{Secret: []byte(testJWTSecret), Leeway: leeway,
		ServiceKeys: []auth.ServiceKey{{Name: "backend", Key: serviceKey}}})
	if err != nil {
		t.Fatal(err)
	}
	// exp has whole seconds: a 3 s TTL leaves between 2 and 3 s, time enough to start the
	// server and dial on a loaded machine (with 2 s, CI once saw the token expire first).
	tok, err := auth.Issue([]byte(testJWTSecret), auth.IssueOptions{Subject: "alice", TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
		t.Fatal(err)
	}
	expired := claims.ExpiresAt.Add(leeway)

	var bus *events.Local
	late := func(st store.Store) store.Store {
		return lateStore{Store: st, referenceID: "alice", late: map[string]time.Time{"late": expired}}
	}
	s := startOver(t, graph.Options{Verifier: verifier, KeepAlive: time.Hour}, late, func(r *graph.Resolver) {
		bus = r.Bus.(*events.Local)
	})
	service := s.dialWSAs("graphql-transport-ws", serviceKey)
	legacy := s.dialWSAs("graphql-ws", tok)
	conn := s.dialWSAs("graphql-transport-ws", tok)
	write(t, conn, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]string{"query": `subscription { connectionEvents { type } }`}})
	awaitPong(t, conn) // the subscription is registered once the ping after it is answered
	if n := bus.Subscribers(); n != 1 {
		t.Fatalf("%d subscriptions registered, want 1", n)
	}
	// Both events are published now; the second is read from the store only once the
	// token has expired, so it arrives after.
	for _, user := range []string{"early", "late"} {
		if err := bus.Publish(context.Background(), events.Event{ReferenceID: "alice", Type: events.Connected, UserID: user, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if m := read(t, conn); m.Type != "next" {
		t.Fatalf("got %q, want the event that came before expiry", m.Type)
	}
	for _, c := range []struct {
		name string
		conn *websocket.Conn
	}{{"graphql-transport-ws", conn}, {"graphql-ws", legacy}} {
		ctx, cancel := context.WithDeadline(context.Background(), expired.Add(3*time.Second))
		for {
			_, b, err := c.conn.Read(ctx)
			if err == nil {
				if m := decode(t, b); m.Type == "next" || m.Type == "data" {
					t.Errorf("%s: %s written after the token expired at %v", c.name, b, expired)
				}
				continue
			}
			if code := websocket.CloseStatus(err); code != 4403 {
				t.Errorf("%s: read ended with %v (close code %d), want close code 4403 at %v", c.name, err, code, expired)
			} else if now := time.Now(); now.Before(expired) {
				t.Errorf("%s: closed at %v, before the token expired at %v", c.name, now, expired)
			}
			break
		}
		cancel()
	}
	write(t, service, map[string]string{"type": "ping"})
	if m := read(t, service); m.Type != "pong" {
		t.Errorf("the service connection answered %q to a ping, want pong", m.Type)
	}
}

// lateStore answers every Terra user as referenceID's, and reads those named in late only
// at the instant given: a subscription reads an event's user before it writes the event.
type lateStore struct {
	store.Store
	referenceID string
	late        map[string]time.Time
}

func (s lateStore) TerraUser(_ context.Context, userID string) (store.TerraUser, error) {
	if at, ok := s.late[userID]; ok {
		// Not cut short when the subscription ends: the event then comes right at the
		// expiry, as the connection's timer does, and must still not be written.
		for time.Now().Before(at) { // by the wall clock, which exp is read against
			<-time.After(time.Until(at))
		}
	}
	return store.TerraUser{UserID: userID, Provider: "OURA", ReferenceID: s.referenceID, Active: true, Status: store.StatusConnected}, nil
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
func awaitStarted(t *testing.T, conn *websocket.Conn, legacy bool) {
	t.Helper()
	if !legacy {
		awaitPong(t, conn)
		return
	}
	write(t, conn, map[string]any{"id": "started", "type": "start", "payload": map[string]string{"query": `{ __typename }`}})
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

func decode(t *testing.T, b []byte) wsMessage {
	t.Helper()
	var m wsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return m
}
