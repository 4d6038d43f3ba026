package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/terragate/terragate/internal/relay"
	"github.com/terragate/terragate/internal/spool"
	"github.com/terragate/terragate/internal/stdwebhook"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
)

// deadline bounds every wait: a guard against a hang, never a timing assertion.
const deadline = 20 * time.Second

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a real HTTP server on loopback that answers with answer (200 when nil) and
// hands every request it gets to got.
type receiver struct {
	srv    *httptest.Server
	got    chan received
	mu     sync.Mutex
	answer func(n int, w http.ResponseWriter)
	n      int
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan received, 100), answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.n++
		n, answer := rc.n, rc.answer
		rc.mu.Unlock()
		rc.got <- received{header: r.Header.Clone(), body: body}
		if answer != nil {
			answer(n, w)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setAnswer(a func(n int, w http.ResponseWriter)) {
	rc.mu.Lock()
	rc.answer = a
	rc.mu.Unlock()
}

func (rc *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-rc.got:
		return r
	case <-time.After(deadline):
		t.Fatal("receiver got nothing")
		return received{}
	}
}

func dest(t *testing.T, name, rawURL, secret string, events ...string) relay.Destination {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := stdwebhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return relay.Destination{Name: name, URL: u, Events: events, Secret: s}
}

const secret2 = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

type harness struct {
	t     *testing.T
	st    store.Store
	path  string
	dests []relay.Destination
	logs  *syncBuffer
	stop  func()
	poll  time.Duration // how often an idle worker looks (default 20 ms)
	cool  time.Duration // how long an open breaker waits (default relay.DefaultCooldown)
	relay *relay.Relay
}

func newHarness(t *testing.T, dests ...relay.Destination) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "relay.db"), dests: dests, logs: &syncBuffer{}}
	h.open()
	t.Cleanup(func() {
		h.stopRelay()
		h.st.Close()
	})
	return h
}

func (h *harness) open() {
	st, err := sqlite.Open(context.Background(), h.path, slog.New(slog.DiscardHandler))
	if err != nil {
		h.t.Fatal(err)
	}
	h.st = st
}

// start runs a relay over the store until stopRelay.
func (h *harness) start(schedule ...time.Duration) {
	h.t.Helper()
	if len(schedule) == 0 {
		schedule = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}
	}
	poll := h.poll
	if poll == 0 {
		poll = 20 * time.Millisecond
	}
	r := relay.New(relay.Config{
		Destinations: h.dests,
		Timeout:      2 * time.Second,
		Schedule:     schedule,
		Retention:    time.Hour,
		Concurrency:  2,
		Poll:         poll,
		Cooldown:     h.cool,
	}, h.st, &http.Client{}, nil, slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	h.stop = func() { cancel(); <-done }
	h.relay = r
}

func (h *harness) stopRelay() {
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// event stores a Terra event as the webhook handler does: routed by type.
func (h *harness) event(key, typ string, body []byte) {
	h.t.Helper()
	d := store.Delivery{
		DedupeKey: "trace:" + key, TraceID: key, Source: store.SourceWebhook, SignedAt: time.Now(), ReceivedAt: time.Now(),
		Event: store.Event{Kind: store.EventIgnored, Type: typ},
	}
	if dests := relay.Routes(h.dests).Route(typ); len(dests) > 0 {
		d.Relay = &store.RelayEvent{Type: typ, TraceID: key, Reference: "ref-" + key, OrderingTimestamp: "1751371200", Body: body, Destinations: dests}
	}
	if _, err := h.st.ApplyWebhook(context.Background(), d); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) deliveries(f store.RelayFilter) []store.RelayDelivery {
	h.t.Helper()
	p, err := h.st.ListRelayDeliveries(context.Background(), f, store.Page{First: 100})
	if err != nil {
		h.t.Fatal(err)
	}
	return p.Deliveries
}

// waitFor waits until the delivery log has want deliveries matching f.
func (h *harness) waitFor(f store.RelayFilter, want int) []store.RelayDelivery {
	h.t.Helper()
	end := time.Now().Add(deadline)
	for {
		got := h.deliveries(f)
		if len(got) == want {
			return got
		}
		if time.Now().After(end) {
			h.t.Fatalf("deliveries %+v: %d; want %d", f, len(got), want)
		}
		time.Sleep(10 * time.Millisecond) // polling the store until a deadline
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func verify(t *testing.T, secret string, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.body, r.header); err != nil {
		t.Errorf("the Standard Webhooks library refuses the delivery: %v", err)
	}
}

// The body arrives byte for byte, signed the Standard Webhooks way, with Terra's headers;
// each destination gets only the types it asked for.
func TestDeliversSignedBodyByteForByte(t *testing.T) {
	a := newReceiver(t, nil)
	b := newReceiver(t, nil)
	h := newHarness(t, dest(t, "a", a.srv.URL+"/hook", secret), dest(t, "b", b.srv.URL, secret2, "sleep"))
	body := []byte("{\"type\":\"activity\",  \"data\":[{\"v\":1.50,\"s\":\"\\u00e9\xc3\xa9\"}]}\n")
	h.event("tr-1", "activity", body)
	h.event("tr-2", "sleep", []byte(`{"type":"sleep"}`))
	h.start()

	got := map[string]received{}
	for range 2 {
		r := a.next(t)
		got[r.header.Get("terragate-event-type")] = r
	}
	r := got["activity"]
	if !bytes.Equal(r.body, body) {
		t.Errorf("body = %q; want %q", r.body, body)
	}
	verify(t, secret, r)
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Terragate-Event-Type": "activity", "Terra-Reference": "ref-tr-1",
		"X-Terra-Trace-Id": "tr-1", "X-Terra-Ordering-Timestamp": "1751371200",
	} {
		if v := r.header.Get(k); v != want {
			t.Errorf("%s = %q; want %q", k, v, want)
		}
	}
	if !strings.HasPrefix(r.header.Get("webhook-id"), "msg_") {
		t.Errorf("webhook-id = %q", r.header.Get("webhook-id"))
	}
	rb := b.next(t)
	if rb.header.Get("terragate-event-type") != "sleep" {
		t.Errorf("b got %q; want only sleep", rb.header.Get("terragate-event-type"))
	}
	verify(t, secret2, rb)
	h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 3)
	if n := len(h.deliveries(store.RelayFilter{Destination: "b"})); n != 1 {
		t.Errorf("b has %d deliveries; want the sleep event only", n)
	}
}

// A failing destination is retried on the schedule with the same webhook-id until it
// answers 2xx.
func TestRetriesWithSameWebhookID(t *testing.T) {
	a := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	h.event("tr-1", "daily", []byte(`{"type":"daily"}`))
	h.start()
	ids := map[string]bool{}
	for range 3 {
		r := a.next(t)
		ids[r.header.Get("webhook-id")] = true
		verify(t, secret, r)
	}
	if len(ids) != 1 {
		t.Errorf("webhook-ids %v; want one across attempts", ids)
	}
	d := h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 1)[0]
	if d.Attempts != 3 {
		t.Errorf("attempts = %d; want 3", d.Attempts)
	}
}

// 410 Gone stops at once: a dead letter, which a replay sends again.
func TestGoneStopsThenReplay(t *testing.T) {
	a := newReceiver(t, func(int, http.ResponseWriter) {})
	a.setAnswer(func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusGone) })
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	h.event("tr-1", "body", []byte(`{"type":"body"}`))
	h.start()
	first := a.next(t)
	dead := h.waitFor(store.RelayFilter{Status: store.RelayFailed}, 1)[0]
	if dead.Attempts != 1 || dead.LastStatusCode == nil || *dead.LastStatusCode != 410 {
		t.Errorf("dead letter = %+v", dead)
	}
	a.setAnswer(nil)
	if _, err := h.st.ReplayRelayDelivery(context.Background(), dead.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	again := a.next(t)
	if again.header.Get("webhook-id") != first.header.Get("webhook-id") || !bytes.Equal(again.body, first.body) {
		t.Errorf("replay sent another message: %v", again.header)
	}
	h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 1)
}

// After the schedule the delivery is a dead letter; Retry-After is honoured as a minimum.
func TestScheduleEndsInDeadLetter(t *testing.T) {
	a := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusInternalServerError)
	})
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	h.event("tr-1", "sleep", []byte(`{"type":"sleep"}`))
	h.start(10*time.Millisecond, 10*time.Millisecond)
	for range 3 {
		a.next(t)
	}
	dead := h.waitFor(store.RelayFilter{Status: store.RelayFailed}, 1)[0]
	if dead.Attempts != 3 || dead.LastError == "" {
		t.Errorf("dead letter = %+v; want 3 attempts and an error", dead)
	}
}

// A destination that hangs holds up no other.
func TestDeadDestinationStarvesNoOther(t *testing.T) {
	release := make(chan struct{})
	dead := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) })
	live := newReceiver(t, nil)
	h := newHarness(t, dest(t, "dead", dead.srv.URL, secret), dest(t, "live", live.srv.URL, secret2))
	const n = 10
	for i := range n {
		h.event(fmt.Sprint("tr-", i), "activity", fmt.Appendf(nil, `{"type":"activity","i":%d}`, i))
	}
	h.start()
	for range n {
		live.next(t)
	}
	h.waitFor(store.RelayFilter{Destination: "live", Status: store.RelayDelivered}, n)
}

// Stopping the relay mid-delivery loses nothing: the next one delivers it.
func TestRestartMidRelayLosesNothing(t *testing.T) {
	block := make(chan struct{})
	a := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			<-block // the relay stops while this attempt is in flight
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	h.event("tr-1", "activity", []byte(`{"type":"activity"}`))
	h.start()
	first := a.next(t)
	h.stopRelay() // cancels the attempt in flight
	close(block)
	h.st.Close()
	h.open()
	h.start()
	second := a.next(t)
	if second.header.Get("webhook-id") != first.header.Get("webhook-id") {
		t.Errorf("restart sent another message id")
	}
	h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 1)
}

// Nothing of a payload reaches the logs or the delivery log's errors, even when the
// destination echoes it back in its error answer.
func TestNoHealthDataInLogsOrErrors(t *testing.T) {
	const marker = "MARKER-hr-61bpm"
	a := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "cannot parse "+marker)
	})
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	h.event("tr-1", "activity", []byte(`{"type":"activity","data":[{"note":"`+marker+`"}]}`))
	h.start(10*time.Millisecond, 10*time.Millisecond)
	for range 3 {
		a.next(t)
	}
	dead := h.waitFor(store.RelayFilter{Status: store.RelayFailed}, 1)[0]
	h.stopRelay()
	if strings.Contains(dead.LastError, marker) || strings.Contains(h.logs.String(), marker) {
		t.Errorf("health data leaked: error %q, logs %s", dead.LastError, h.logs.String())
	}
	if !strings.Contains(h.logs.String(), "dead letter") {
		t.Errorf("the dead letter was not logged: %s", h.logs.String())
	}
}

// A body kept in pieces is streamed from the store, byte for byte, signed over the whole
// body, then dropped with its pieces once delivered.
func TestDeliversBodyKeptInPieces(t *testing.T) {
	a := newReceiver(t, nil)
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	body := bytes.Repeat([]byte(`{"bpm":61,"t":"2026-07-01T00:00:00Z"},`), 100_000) // 3.8 MB: four pieces
	sp, err := spool.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if _, err := sp.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := sp.Finish(); err != nil {
		t.Fatal(err)
	}
	d := store.Delivery{
		DedupeKey: "trace:big", TraceID: "big", Source: store.SourceWebhook, SignedAt: time.Now(), ReceivedAt: time.Now(),
		Event: store.Event{Kind: store.EventIgnored, Type: "activity"},
		Relay: &store.RelayEvent{Type: "activity", TraceID: "big", Pieces: sp, Destinations: []string{"a"}},
	}
	if _, err := h.st.ApplyWebhook(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	h.start()
	got := a.next(t)
	if !bytes.Equal(got.body, body) {
		t.Errorf("relayed %d bytes; want %d byte for byte", len(got.body), len(body))
	}
	verify(t, secret, got)
	done := h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 1)
	if n, err := h.st.RelayPieces(context.Background(), done[0].EventID); err != nil || n != 0 {
		t.Errorf("pieces after delivery: %d, %v; want none kept", n, err)
	}
}

// claims is the real outbox, observed: each claim is told to seen, with its destination.
type claims struct {
	store.Outbox
	seen chan string
}

func (c claims) ClaimRelayDeliveries(ctx context.Context, dest string, now, leaseUntil time.Time, max int) ([]store.RelayDelivery, error) {
	got, err := c.Outbox.ClaimRelayDeliveries(ctx, dest, now, leaseUntil, max)
	c.seen <- dest
	return got, err
}

// An idle worker told that deliveries were enqueued claims them at once, not at its next
// poll (an hour here); the other destination's worker is left alone.
func TestEnqueuedWakesAnIdleWorker(t *testing.T) {
	a := newReceiver(t, nil)
	h := newHarness(t, dest(t, "a", a.srv.URL, secret), dest(t, "b", a.srv.URL, secret, "sleep"))
	c := claims{Outbox: h.st, seen: make(chan string, 10)}
	r := relay.New(relay.Config{Destinations: h.dests, Timeout: time.Second, Schedule: []time.Duration{time.Second}, Poll: time.Hour},
		c, &http.Client{}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	count := map[string]int{}
	next := func() string {
		t.Helper()
		select {
		case d := <-c.seen:
			count[d]++
			return d
		case <-time.After(deadline):
			t.Fatal("no claim")
			return ""
		}
	}
	next() // each worker looks once as it starts, and finds nothing due
	next()
	h.event("tr-1", "activity", []byte(`{"type":"activity"}`))
	r.Enqueued([]string{"a"})
	got := a.next(t)
	if got.header.Get("x-terra-trace-id") != "tr-1" {
		t.Errorf("delivered %q", got.header.Get("x-terra-trace-id"))
	}
	for len(c.seen) > 0 {
		next()
	}
	if count["b"] != 1 {
		t.Errorf("b's worker looked %d times; want only its first", count["b"])
	}
}

// A destination back after an outage gets the retries that failed during it at once, once
// its breaker's trial attempt succeeds, not on their schedule (an hour away here).
func TestRecoveredDestinationGetsWaitingRetriesAtOnce(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	a := newReceiver(t, func(_ int, w http.ResponseWriter) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	h.cool = 50 * time.Millisecond
	for i := range 6 {
		h.event(fmt.Sprint("tr-", i), "activity", []byte(`{"type":"activity"}`))
	}
	h.start(time.Hour, time.Hour)
	for end := time.Now().Add(deadline); !strings.Contains(h.logs.String(), "destination circuit open"); {
		if time.Now().After(end) {
			t.Fatalf("the breaker never opened: %s", h.logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log until a deadline
	}
	if got := h.deliveries(store.RelayFilter{Status: store.RelayDelivered}); len(got) != 0 {
		t.Fatalf("delivered during the outage: %+v", got)
	}
	down.Store(false)
	h.event("tr-new", "activity", []byte(`{"type":"activity"}`)) // the breaker's trial
	h.relay.Enqueued([]string{"a"})
	h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 7)
	if !strings.Contains(h.logs.String(), "waiting retries are due now") {
		t.Errorf("the resume was not logged: %s", h.logs.String())
	}
}

// headersSeen is the real transport, observed: it tells seen once an answer's status line
// and headers have arrived.
type headersSeen struct {
	seen chan struct{}
}

func (h headersSeen) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		close(h.seen)
	}
	return resp, err
}

// An answer the destination gave stands even when terragate stops while reading the rest of
// it: a 410 stays a dead letter, not an attempt cut short to be made again.
func TestAnswerAtShutdownStands(t *testing.T) {
	release := make(chan struct{})
	a := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusGone)
		w.(http.Flusher).Flush()
		<-release // the rest of the answer comes after terragate stopped
	})
	defer close(release)
	h := newHarness(t, dest(t, "a", a.srv.URL, secret))
	h.event("tr-1", "activity", []byte(`{"type":"activity"}`))
	tr := headersSeen{seen: make(chan struct{})}
	r := relay.New(relay.Config{Destinations: h.dests, Timeout: deadline, Schedule: []time.Duration{time.Hour}},
		h.st, &http.Client{Transport: tr}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	<-tr.seen
	cancel()
	<-done
	got := h.deliveries(store.RelayFilter{})
	if len(got) != 1 || got[0].Status != store.RelayFailed || got[0].LastStatusCode == nil || *got[0].LastStatusCode != http.StatusGone {
		t.Errorf("after a 410 at shutdown: %+v; want a dead letter with its 410", got)
	}
}

// A destination's own concurrency bounds its attempts in flight, over the relay's default.
func TestDestinationConcurrency(t *testing.T) {
	var mu sync.Mutex
	inFlight, most := 0, 0
	three, release := make(chan struct{}), make(chan struct{})
	var reached sync.Once
	a := newReceiver(t, func(_ int, w http.ResponseWriter) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == 3 {
			reached.Do(func() { close(three) })
		}
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	d := dest(t, "a", a.srv.URL, secret)
	d.Concurrency = 3
	h := newHarness(t, d) // the harness's default is 2 in flight
	for i := range 6 {
		h.event(fmt.Sprint("tr-", i), "activity", []byte(`{"type":"activity"}`))
	}
	h.start()
	select {
	case <-three:
	case <-time.After(deadline):
		t.Fatal("never three attempts in flight")
	}
	close(release)
	h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 6)
	mu.Lock()
	defer mu.Unlock()
	if most != 3 {
		t.Errorf("at most %d attempts in flight; want 3", most)
	}
}

// claimSizes records how many deliveries each claim asked for.
type claimSizes struct {
	store.Outbox
	asked chan int
}

func (c claimSizes) ClaimRelayDeliveries(ctx context.Context, dest string, now, leaseUntil time.Time, max int) ([]store.RelayDelivery, error) {
	c.asked <- max
	return c.Outbox.ClaimRelayDeliveries(ctx, dest, now, leaseUntil, max)
}

// With attempts in flight, a worker claims again once a quarter of its slots are free (two of
// eight here), not each time an attempt ends: each claim is a write.
func TestClaimsWaitForAQuarterOfTheSlots(t *testing.T) {
	release := make(chan struct{})
	a := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	d := dest(t, "a", a.srv.URL, secret)
	d.Concurrency = 8
	h := newHarness(t, d)
	for i := range 12 {
		h.event(fmt.Sprint("tr-", i), "activity", []byte(`{"type":"activity"}`))
	}
	c := claimSizes{Outbox: h.st, asked: make(chan int, 100)}
	r := relay.New(relay.Config{Destinations: h.dests, Timeout: 10 * time.Second, Schedule: []time.Duration{time.Second}, Poll: time.Hour},
		c, &http.Client{}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	for range 8 {
		a.next(t)
	}
	release <- struct{}{}
	h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 1) // one slot free: no claim yet
	release <- struct{}{}
	for range 2 { // two free: both taken at once
		a.next(t)
	}
	close(release)
	h.waitFor(store.RelayFilter{Status: store.RelayDelivered}, 12)
	cancel()
	<-done
	close(c.asked)
	var asked []int
	for n := range c.asked {
		asked = append(asked, n)
	}
	if len(asked) < 2 || asked[0] != 8 || asked[1] != 2 {
		t.Fatalf("claims asked for %v; want 8 first, then 2 once two attempts had ended", asked)
	}
	for _, n := range asked[2:] {
		if n < 2 {
			t.Errorf("claims asked for %v; want none for fewer than 2 while attempts are in flight", asked)
			break
		}
	}
}
