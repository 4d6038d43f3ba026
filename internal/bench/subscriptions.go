package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// subscriber is one idle graphql-ws client subscribed to connectionEvents.
type subscriber struct {
	conn *websocket.Conn
	// events receives the arrival time of each event pushed to this subscriber.
	events chan time.Time
}

// wsMessage is a graphql-transport-ws message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

const connectionEventsQuery = `subscription { connectionEvents { type at terraUser { userId provider status } } }`

// subscribe opens a graphql-ws connection as the end user token names and subscribes it to
// connectionEvents; every "next" afterwards is counted in pushed and timed on the
// subscriber's channel.
func subscribe(ctx context.Context, gatewayURL, token string, pushed *atomic.Int64) (*subscriber, error) {
	url := "ws" + strings.TrimPrefix(gatewayURL, "http") + "/graphql"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	write := func(m wsMessage) error {
		b, _ := json.Marshal(m)
		return conn.Write(ctx, websocket.MessageText, b)
	}
	init, _ := json.Marshal(map[string]string{"Authorization": "Bearer " + token})
	if err := write(wsMessage{Type: "connection_init", Payload: init}); err != nil {
		return nil, err
	}
	_, b, err := conn.Read(ctx)
	var ack wsMessage
	if err != nil || json.Unmarshal(b, &ack) != nil || ack.Type != "connection_ack" {
		_ = conn.CloseNow()
		return nil, fmt.Errorf("no connection_ack: %v %s", err, b)
	}
	sub, _ := json.Marshal(map[string]string{"query": connectionEventsQuery})
	if err := write(wsMessage{ID: "1", Type: "subscribe", Payload: sub}); err != nil {
		return nil, err
	}
	s := &subscriber{conn: conn, events: make(chan time.Time, 4)}
	go func() {
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			at := time.Now()
			var m wsMessage
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			switch m.Type {
			case "ping":
				_ = write(wsMessage{Type: "pong"})
			case "next":
				pushed.Add(1)
				select {
				case s.events <- at:
				default:
				}
			}
		}
	}()
	return s, nil
}

// SubscriptionRows opens Cfg.Subscribers idle subscribers, one end user each, on one
// gateway and reads what they cost it in memory; then it delivers Cfg.Events auth
// webhooks one at a time, each for one random subscriber's end user, and times each
// event from the webhook's post to its arrival at that subscriber, checking that no other
// subscriber heard a thing.
func (r *Runner) SubscriptionRows(ctx context.Context) ([]Row, error) {
	c := r.Cfg
	gw, err := r.startGateway(ctx, r.sqliteURL("subscriptions"), nil)
	if err != nil {
		return nil, err
	}
	defer gw.Stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	users := make([]string, c.Subscribers)
	for i := range users {
		users[i] = "bench-subscriber-" + strconv.Itoa(i)
	}
	tokens, err := Tokens(users)
	if err != nil {
		return nil, err
	}
	before, err := gatewayMemory(gw)
	if err != nil {
		return nil, err
	}
	r.progress("subscriptions: opening %d idle subscribers", c.Subscribers)
	var pushed atomic.Int64
	subs, err := openSubscribers(ctx, gw, tokens, &pushed)
	defer closeAll(subs)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // let the gateway's heap settle, as an idle server's would
	after, err := gatewayMemory(gw)
	if err != nil {
		return nil, err
	}
	rssEach := float64(after.rss-before.rss) / float64(c.Subscribers)
	goEach := float64(after.goBytes-before.goBytes) / float64(c.Subscribers)

	r.progress("subscriptions: %d events, one at a time, each to one subscriber", c.Events)
	var lat []time.Duration
	for n := range c.Events {
		i := rand.IntN(c.Subscribers)
		tag := strconv.Itoa(n)
		sent := time.Now()
		if err := PostWebhook(ctx, r.client, gw.URL, AuthEvent("bench-sub-tu-"+tag, users[i]), "bench-sub-trace-"+tag); err != nil {
			return nil, err
		}
		select {
		case at := <-subs[i].events:
			lat = append(lat, at.Sub(sent))
		case <-time.After(5 * time.Second):
			return nil, fmt.Errorf("event %d never reached its subscriber", n)
		}
	}
	time.Sleep(100 * time.Millisecond) // a stray event to another subscriber would be here by now
	if got := pushed.Load(); got != int64(c.Events) {
		return nil, fmt.Errorf("%d events delivered to subscribers for %d sent: isolation broken", got, c.Events)
	}
	slices.Sort(lat)
	st := Stats{Requests: len(lat), Latencies: lat}
	p99 := micros(st.Quantile(.99))
	memOK := rssEach <= 20*1024
	return []Row{
		{
			Scenario: fmt.Sprintf("%d idle subscribers: memory each", c.Subscribers),
			Baseline: fmtBytes(float64(before.rss)) + " RSS before", Terragate: fmtBytes(float64(after.rss)) + " RSS after",
			Memory: fmtBytes(rssEach) + " RSS, " + fmtBytes(goEach) + " Go heap+stacks",
			Target: "< 20 KB each", Met: memOK,
		},
		{
			Scenario:  "event to its one subscriber among the idle",
			Terragate: fmt.Sprintf("%d events, none astray", c.Events),
			P50:       latency(micros(st.Quantile(.5))), P99: latency(p99),
			Target: "p99 < 50 ms", Met: p99 < 50_000,
		},
	}, nil
}

// memory is a process's memory as the kernel and the Go runtime see it.
type memory struct {
	rss     int64 // resident set
	goBytes int64 // Go heap in use plus goroutine stacks
}

func gatewayMemory(g *Gateway) (memory, error) {
	runtime.GC() // the load generator's own garbage is not the gateway's, but keep this process calm
	rss, err := g.RSS()
	if err != nil {
		return memory{}, err
	}
	heap, err1 := g.Metric("go_memstats_heap_inuse_bytes")
	stack, err2 := g.Metric("go_memstats_stack_inuse_bytes")
	if err := errors.Join(err1, err2); err != nil {
		return memory{}, err
	}
	return memory{rss: rss, goBytes: int64(heap + stack)}, nil
}

// openSubscribers opens one idle subscriber per token on gw, 32 at a time, and returns once
// the gateway has every subscription running (it follows the subscribe message by a
// moment). The subscribers are returned for closeAll even on an error.
func openSubscribers(ctx context.Context, gw *Gateway, tokens []string, pushed *atomic.Int64) ([]*subscriber, error) {
	subs := make([]*subscriber, len(tokens))
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	work := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				s, err := subscribe(ctx, gw.URL, tokens[i], pushed)
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					continue
				}
				subs[i] = s
			}
		})
	}
	for i := range subs {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := failed.Load(); err != nil {
		return subs, fmt.Errorf("subscribe: %w", *err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		open, err := gw.Metric("terragate_graphql_subscriptions_open")
		if err == nil && int(open) >= len(tokens) {
			return subs, nil
		}
		if time.Now().After(deadline) {
			return subs, fmt.Errorf("only %v of %d subscriptions open: %v", open, len(tokens), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func closeAll(subs []*subscriber) {
	for _, s := range subs {
		if s != nil {
			_ = s.conn.CloseNow()
		}
	}
}
