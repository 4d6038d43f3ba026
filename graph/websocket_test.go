package graph_test

import (
	"runtime"
	"strconv"
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
