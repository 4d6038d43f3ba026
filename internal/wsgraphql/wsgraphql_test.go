package wsgraphql_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/terragate/terragate/internal/wsgraphql"
)

// An idle subscriber whose resolver takes StreamNotify costs one goroutine, the one that
// reads its connection: no handler goroutine, no keep-alive goroutine, none for the
// subscription. Stopping the subscriptions and closing the connections leaves nothing.
func TestIdleSubscriberHoldsOneGoroutine(t *testing.T) {
	s := serve(t, wsgraphql.Config{})
	const n = 20
	base := runtime.NumGoroutine()
	conns := make([]*websocket.Conn, n)
	for i := range n {
		conn := s.dial(t, []string{"graphql-transport-ws", "graphql-ws"}[i%2])
		subscribe(t, conn, itoa(i))
		awaitStarted(t, conn)
		conns[i] = conn
	}
	if got := s.hub.count(); got != n {
		t.Fatalf("%d subscriptions running, want %d", got, n)
	}
	time.Sleep(50 * time.Millisecond) // goroutines of the handshakes wind down
	if got := runtime.NumGoroutine() - base; got > n+2 {
		t.Errorf("%d more goroutines for %d idle subscribers, want about one each", got, n)
	}
	// An idle subscription still hears its events.
	s.hub.publish("tick")
	for _, c := range conns {
		if m := read(t, c); m.Type != "next" && m.Type != "data" {
			t.Fatalf("got %q, want the event", m.Type)
		}
	}
	for _, c := range conns {
		_ = c.CloseNow()
	}
	s.hub.await(t, 0)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if runtime.NumGoroutine() > base+2 {
		t.Errorf("%d goroutines left (%d before)", runtime.NumGoroutine(), base)
	}
}

// Messages that arrive together (with the handshake, or after a subscribe) are all read at
// once: a connection waits on its socket only when nothing it was sent is left unread.
func TestReadsMessagesSentTogether(t *testing.T) {
	s := serve(t, wsgraphql.Config{})
	conn, err := net.DialTimeout("tcp", s.srv.Listener.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	frame := func(v any) []byte {
		b, _ := json.Marshal(v)
		if len(b) > 0xffff {
			t.Fatal("message too long")
		}
		// FIN text frame, masked with a zero key (a client must mask; zero leaves it as is).
		return append([]byte{0x81, 0x80 | 126, byte(len(b) >> 8), byte(len(b)), 0, 0, 0, 0}, b...)
	}
	handshake := "GET /graphql HTTP/1.1\r\nHost: gateway.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
	init := map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + testToken}}
	if _, err := conn.Write(append([]byte(handshake), frame(init)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	next := func() string {
		t.Helper()
		var h [4]byte
		if _, err := io.ReadFull(br, h[:2]); err != nil {
			t.Fatalf("read: %v", err)
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			if _, err := io.ReadFull(br, h[2:4]); err != nil {
				t.Fatal(err)
			}
			n = int(h[2])<<8 | int(h[3])
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		var m message
		_ = json.Unmarshal(b, &m)
		return m.Type
	}
	if got := next(); got != "connection_ack" {
		t.Fatalf("got %q, want connection_ack", got)
	}
	var batch []byte
	batch = append(batch, frame(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]string{"query": `subscription { ticks }`}})...)
	batch = append(batch, frame(map[string]any{"type": "ping"})...)
	batch = append(batch, frame(map[string]any{"type": "ping"})...)
	if _, err := conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := next(); got != "pong" {
			t.Fatalf("got %q, want pong", got)
		}
	}
}

// Tests wait for a subscription to be registered by pinging after it (awaitPong): the pong
// comes only once every operation subscribed before the ping has started, so an event
// published right after it reaches them all.
func TestPongFollowsEarlierSubscribes(t *testing.T) {
	s := serve(t, wsgraphql.Config{})
	conn := s.dial(t, "graphql-transport-ws")
	ids := []string{"1", "2", "3"}
	for _, id := range ids {
		subscribe(t, conn, id)
	}
	awaitPong(t, conn)
	if n := s.hub.count(); n != len(ids) {
		t.Fatalf("%d subscriptions registered at the pong, want %d", n, len(ids))
	}
	s.hub.publish("tick")
	for range ids {
		if m := read(t, conn); m.Type != "next" {
			t.Fatalf("got %q, want each subscription's event", m.Type)
		}
	}
}

// Idle subscribers are pinged at the KeepAlive interval, so proxies do not cut quiet
// connections and dead clients are noticed.
func TestKeepAlivePings(t *testing.T) {
	const every = 50 * time.Millisecond
	s := serve(t, wsgraphql.Config{KeepAlive: every})

	t.Run("graphql-transport-ws pings, and a client that answers stays", func(t *testing.T) {
		conn := s.dial(t, "graphql-transport-ws")
		start := time.Now()
		// Answering each ping keeps the connection past the two intervals a silent client
		// is given.
		for pings := 0; pings < 5; {
			switch m := read(t, conn); m.Type {
			case "ping":
				pings++
				write(t, conn, map[string]string{"type": "pong"})
			case "pong": // the protocol's one-way heartbeat; not asked for here
			default:
				t.Fatalf("unexpected %q", m.Type)
			}
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("five pings took %v at a %v interval", took, every)
		}
	})

	t.Run("legacy graphql-ws gets keep-alive messages", func(t *testing.T) {
		conn := s.dial(t, "graphql-ws")
		for range 3 {
			if m := read(t, conn); m.Type != "ka" {
				t.Fatalf("got %q, want ka", m.Type)
			}
		}
	})

	t.Run("a client that stops answering is dropped", func(t *testing.T) {
		conn := s.dial(t, "graphql-transport-ws")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for {
			// Read (to see the close) but never answer.
			if _, _, err := conn.Read(ctx); err != nil {
				if ctx.Err() != nil {
					t.Fatal("a client that never answered pings was kept for 3 s")
				}
				return
			}
		}
	})
}
