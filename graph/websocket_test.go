package graph_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/events"
)

// An idle connectionEvents subscriber costs the gateway one goroutine, the one that reads
// its connection: no handler goroutine, no keep-alive goroutine, none for the subscription.
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
		conns[i] = conn
	}
	deadline := time.Now().Add(5 * time.Second)
	for bus.Subscribers() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
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
	deadline = time.Now().Add(5 * time.Second)
	for (bus.Subscribers() > 0 || runtime.NumGoroutine() > base+2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if bus.Subscribers() != 0 || runtime.NumGoroutine() > base+2 {
		t.Errorf("%d subscriptions and %d goroutines left (%d before)", bus.Subscribers(), runtime.NumGoroutine(), base)
	}
}

// Messages that arrive together (with the handshake, or after a subscribe) are all read at
// once: a connection waits on its socket only when nothing it was sent is left unread.
func TestWebSocketReadsMessagesSentTogether(t *testing.T) {
	s := start(t, graph.Options{}, nil)
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "http://"), 2*time.Second)
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
	init := map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + token(t, "alice")}}
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
		var m wsMessage
		_ = json.Unmarshal(b, &m)
		return m.Type
	}
	if got := next(); got != "connection_ack" {
		t.Fatalf("got %q, want connection_ack", got)
	}
	var batch []byte
	batch = append(batch, frame(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]string{"query": `subscription { connectionEvents { type } }`}})...)
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
