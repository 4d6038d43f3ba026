package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/terragate/terragate/internal/relay"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
)

// relayBackend is an app backend on loopback that keeps every attempt the relay makes and
// notices when one delivery is worked twice at once.
type relayBackend struct {
	srv *httptest.Server
	// answer decides what an attempt gets; it may block (hold the attempt in flight).
	answer func(b *relayBackend, a *relayAttempt) int

	mu       sync.Mutex
	attempts []*relayAttempt
	byID     map[string][]*relayAttempt // by webhook-id, in arrival order
	inFlight map[string]bool            // webhook-id -> an attempt is being answered
	overlaps []string                   // webhook-ids an attempt arrived for while another was in flight
	changed  chan struct{}              // an attempt arrived or was answered
}

// relayAttempt is one request the backend got. Its fields are guarded by the backend's mu.
type relayAttempt struct {
	id     string // webhook-id
	trace  string // x-terra-trace-id
	header http.Header
	body   []byte
	first  bool      // the first attempt the backend saw for its webhook-id
	held   bool      // held until its gateway was gone: the answer reached no one
	status int       // the answer; 0 while in flight
	at     time.Time // when it was answered
}

// delivered says whether the gateway that sent a got a 2xx for it.
func (a *relayAttempt) delivered() bool { return !a.held && a.status >= 200 && a.status < 300 }

func newRelayBackend(t *testing.T, answer func(b *relayBackend, a *relayAttempt) int) *relayBackend {
	t.Helper()
	b := &relayBackend{answer: answer, byID: map[string][]*relayAttempt{}, inFlight: map[string]bool{}, changed: make(chan struct{}, 1)}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *relayBackend) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the gateway went away mid-body; nothing arrived
	}
	a := &relayAttempt{id: r.Header.Get("webhook-id"), trace: r.Header.Get("x-terra-trace-id"), header: r.Header.Clone(), body: body}
	b.update(func() {
		if b.inFlight[a.id] {
			b.overlaps = append(b.overlaps, a.id)
		}
		b.inFlight[a.id] = true
		a.first = len(b.byID[a.id]) == 0
		b.byID[a.id] = append(b.byID[a.id], a)
		b.attempts = append(b.attempts, a)
	})
	code := b.answer(b, a)
	// Out of flight before the gateway can read the answer: it may record the attempt and
	// another worker claim the retry the moment the answer is sent.
	b.update(func() {
		a.status, a.at = code, time.Now()
		b.inFlight[a.id] = false
	})
	w.WriteHeader(code)
}

// update changes the backend's state under its lock and wakes waitFor.
func (b *relayBackend) update(f func()) {
	b.mu.Lock()
	f()
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond, called under the backend's lock, holds, and fails the test if
// it does not within the given time.
func (b *relayBackend) waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ok := cond()
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-b.changed:
		case <-deadline.C:
			t.Fatalf("after %v: %s", within, what)
		}
	}
}

// relayEvent is a small signed activity event with a trace id of its own.
type relayEvent struct {
	trace string
	body  []byte
}

func relayEvents(prefix string, n int) []relayEvent {
	out := make([]relayEvent, n)
	for i := range out {
		out[i] = relayEvent{
			trace: fmt.Sprintf("%s-%04d", prefix, i),
			body: fmt.Appendf(nil, `{"type":"activity","user":{"user_id":"u-%d","provider":"OURA","reference_id":"alice"},`+
				`"data":[{"metadata":{"summary_id":"%s-%d"},"distance_data":{"steps":%d}}],"version":"2022-03-16"}`, i%7, prefix, i, 1000+i),
		}
	}
	return out
}

// post sends ev to the gateway at base as Terra would, again after a 5xx or no answer (a
// gateway under load answers 503 when it cannot store an event in time), and fails the test
// unless it is acknowledged: acknowledged means stored, with its relay deliveries.
func (ev relayEvent) post(t *testing.T, client *http.Client, base string) {
	t.Helper()
	var last string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
		if last != "" {
			time.Sleep(20 * time.Millisecond) // Terra backs off; a short pause will do
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/terra", bytes.NewReader(ev.body))
		req.Header = signedHeader(ev.body, time.Now(), ev.trace)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return
		case resp.StatusCode < 500:
			t.Errorf("webhook %s: %d %s", ev.trace, resp.StatusCode, answer)
			return
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, answer)
	}
	t.Errorf("webhook %s never acknowledged; last answer: %s", ev.trace, last)
}

// relayEnv is the environment of a gateway process relaying every activity event to dest.
func relayEnv(dbURL, dest string) map[string]string {
	return map[string]string{
		"ADDR": "127.0.0.1:0", "DATABASE_URL": dbURL, "TERRA_DEV_ID": testDevID, "TERRA_API_KEY": testAPIKey,
		"TERRA_WEBHOOK_SECRET": testWebhookSecret, "AUTH_JWT_SECRET": testJWTSecret, "LOG_LEVEL": "warn",
		"RELAY_DESTINATIONS": `[{"name":"backend","url":"` + dest + `/terra","events":["activity"],"secret":"` + relayTestSecret + `"}]`,
		"RELAY_TIMEOUT":      "2s",
	}
}

// checkRelayed checks what the backend got for events: each event came with one webhook-id
// across its attempts, Terra's body byte for byte and a valid Standard Webhooks signature on
// every attempt, and reached the backend with a 2xx its gateway received at least once
// (exactly once when exactlyOnce). It returns the number of attempts.
func checkRelayed(t *testing.T, b *relayBackend, events []relayEvent, exactlyOnce bool) int {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(relayTestSecret)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	byTrace := map[string][]*relayAttempt{}
	for _, a := range b.attempts {
		byTrace[a.trace] = append(byTrace[a.trace], a)
	}
	ids := map[string]string{} // webhook-id -> trace
	for _, ev := range events {
		got := byTrace[ev.trace]
		delete(byTrace, ev.trace)
		delivered := 0
		for _, a := range got {
			if a.id != got[0].id {
				t.Errorf("%s: webhook-id %q, then %q: want one id across attempts", ev.trace, got[0].id, a.id)
			}
			if !bytes.Equal(a.body, ev.body) {
				t.Errorf("%s: relayed body %q; want Terra's byte for byte", ev.trace, a.body)
			}
			if err := wh.Verify(a.body, a.header); err != nil {
				t.Errorf("%s: signature: %v", ev.trace, err)
			}
			if a.delivered() {
				delivered++
			}
		}
		switch {
		case delivered == 0:
			t.Errorf("%s: never delivered in %d attempts", ev.trace, len(got))
		case exactlyOnce && delivered > 1:
			t.Errorf("%s: delivered %d times, want once", ev.trace, delivered)
		}
		if len(got) > 0 {
			if other, dup := ids[got[0].id]; dup {
				t.Errorf("%s and %s share webhook-id %q", other, ev.trace, got[0].id)
			}
			ids[got[0].id] = ev.trace
		}
	}
	for trace, got := range byTrace {
		t.Errorf("%d attempts for %q, an event never sent", len(got), trace)
	}
	if len(b.overlaps) > 0 {
		t.Errorf("worked twice at once: %d attempts arrived while another of the same delivery was in flight (%v)", len(b.overlaps), b.overlaps)
	}
	return len(b.attempts)
}

// relayMetrics scrapes a gateway's relay attempts by outcome and its backlog for the
// destination "backend".
func relayMetrics(t *testing.T, base string) (attempts map[string]int, backlog int) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	attempts, backlog = map[string]int{}, -1
	const attemptsPrefix = `terragate_relay_attempts_total{destination="backend",outcome="`
	for line := range strings.SplitSeq(string(text), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, attemptsPrefix):
			attempts[strings.TrimSuffix(strings.TrimPrefix(name, attemptsPrefix), `"}`)] = int(n)
		case name == `terragate_relay_backlog{destination="backend"}`:
			backlog = int(n)
		}
	}
	return attempts, backlog
}

// total adds up attempts by outcome.
func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// A gateway killed with SIGKILL while attempts are in flight loses none of its acknowledged
// events: a new process on the same database delivers the ones never sent at once, and the
// ones that were in flight once their lease (RELAY_TIMEOUT + 30 s) ends, with the webhook-id,
// body and signature the consumer expects. It runs on SQLite, and on PostgreSQL in the
// PostgreSQL pass.
func TestRelaySurvivesKill9(t *testing.T) {
	t.Parallel() // it mostly waits for the lease to end
	const events, deliveredFirst = 50, 10
	inFlight := relay.DefaultConcurrency // the gateway's attempts in flight per destination
	release := make(chan struct{})
	releaseHeld := sync.OnceFunc(func() { close(release) })
	// The backend answers the first attempts, then holds every attempt until the gateway
	// that sent them is dead; its answer to those reaches no one.
	backend := newRelayBackend(t, func(b *relayBackend, a *relayAttempt) int {
		select {
		case <-release:
			return http.StatusOK
		default:
		}
		b.update(func() { a.held = len(b.attempts) > deliveredFirst })
		if !a.held {
			return http.StatusOK
		}
		<-release
		return http.StatusOK
	})
	t.Cleanup(releaseHeld) // before the backend closes, which waits for its handlers

	env := relayEnv(testDatabaseURL(t), backend.srv.URL)
	env["RELAY_RETRY_SCHEDULE"] = "50ms,100ms,200ms,400ms,800ms"
	first := startGatewayProcess(t, env)
	evs := relayEvents("trace-kill", events)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, ev := range evs {
		ev.post(t, client, first.url)
	}
	if t.Failed() {
		t.FailNow()
	}
	// While it has work the relay claims again once a quarter of its slots are free, so
	// with every attempt held it settles with fewer than a quarter idle.
	minHeld := inFlight - max(1, inFlight/4) + 1
	backend.waitFor(t, 20*time.Second, fmt.Sprintf("the backend does not hold %d attempts in flight", minHeld), func() bool {
		held := 0
		for _, a := range backend.attempts {
			if a.held && a.status == 0 {
				held++
			}
		}
		return held >= minHeld
	})
	first.kill(t)
	killed := time.Now()
	releaseHeld()
	var heldIDs []string
	backend.update(func() {
		for _, a := range backend.attempts {
			if a.held {
				heldIDs = append(heldIDs, a.id)
			}
		}
	})
	if len(heldIDs) < minHeld || len(heldIDs) > inFlight {
		t.Fatalf("%d attempts were in flight at the kill, want %d to %d", len(heldIDs), minHeld, inFlight)
	}

	second := startGatewayProcess(t, env)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("first gateway's log:\n%s\nsecond gateway's log:\n%s", first.logs, second.logs)
		}
	})
	// The deliveries never sent go at once; those in flight at the kill once their lease ends.
	backend.waitFor(t, 90*time.Second, "not every event was delivered after the restart", func() bool {
		delivered := map[string]bool{}
		for _, a := range backend.attempts {
			if a.delivered() {
				delivered[a.id] = true
			}
		}
		return len(delivered) == events
	})
	var heldBack time.Duration
	backend.update(func() {
		for _, id := range heldIDs {
			for _, a := range backend.byID[id] {
				if a.delivered() {
					heldBack = max(heldBack, a.at.Sub(killed))
				}
			}
		}
	})
	// And the new process has recorded every delivery: nothing is due again later.
	for end := time.Now().Add(20 * time.Second); ; {
		if _, backlog := relayMetrics(t, second.url); backlog == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the backlog never emptied after every event was delivered")
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics until a deadline
	}
	n := checkRelayed(t, backend, evs, false)
	t.Logf("%d events, %d attempts; the %d in flight at the kill were delivered again within %v of it",
		events, n, len(heldIDs), heldBack.Round(time.Millisecond))
}

// Two gateways on one PostgreSQL schema share the relay's work and never work one delivery
// at once: no attempt reaches the backend while another of the same delivery is in flight,
// retries included, and every event is delivered exactly once (nothing crashed).
func TestRelayTwoInstancesOnPostgres(t *testing.T) {
	const events, senders = 200, 8
	// A held attempt widens the window in which a second claim of the same delivery would
	// overlap it; it is not what the test waits on.
	const hold = 15 * time.Millisecond
	schemaURL := pgtest.NewSchema(t)
	sinceRefusal, refused := 0, 0
	backend := newRelayBackend(t, func(b *relayBackend, a *relayAttempt) int {
		time.Sleep(hold)
		code := http.StatusOK
		b.update(func() {
			// A first attempt is refused now and then, so retries are claimed too; never
			// two in a row, which would bring each gateway's breaker nearer to opening.
			if a.first && sinceRefusal >= 3 {
				code, sinceRefusal = http.StatusServiceUnavailable, 0
				refused++
			} else {
				sinceRefusal++
			}
		})
		return code
	})
	env := relayEnv(schemaURL, backend.srv.URL)
	env["RELAY_RETRY_SCHEDULE"] = "5ms,10ms,20ms,40ms,80ms"
	a := startGatewayProcess(t, env)
	b := startGatewayProcess(t, env)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("A's log:\n%s\nB's log:\n%s", a.logs, b.logs)
		}
	})

	start := time.Now()
	evs := relayEvents("trace-pair", events)
	next := make(chan int, events)
	for i := range evs {
		next <- i
	}
	close(next)
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := range next {
				evs[i].post(t, client, []string{a.url, b.url}[i%2])
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	backend.waitFor(t, 60*time.Second, "not every event was delivered", func() bool {
		delivered := map[string]bool{}
		for _, at := range backend.attempts {
			if at.delivered() {
				delivered[at.id] = true
			}
		}
		return len(delivered) == events
	})
	took := time.Since(start)
	// Both gateways have recorded every attempt the backend answered, and nothing is due.
	var attA, attB map[string]int
	for end := time.Now().Add(20 * time.Second); ; {
		var backlog int
		attA, backlog = relayMetrics(t, a.url)
		attB, _ = relayMetrics(t, b.url)
		backend.mu.Lock()
		answered := len(backend.attempts)
		backend.mu.Unlock()
		if backlog == 0 && total(attA)+total(attB) == answered {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the gateways count %v and %v attempts and %d due; the backend answered %d", attA, attB, backlog, answered)
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics until a deadline
	}
	n := checkRelayed(t, backend, evs, true)
	backend.mu.Lock()
	r := refused
	backend.mu.Unlock()
	if r == 0 {
		t.Error("no attempt was refused: no retry was claimed")
	}
	if got := attA["retry"] + attB["retry"]; got != r {
		t.Errorf("the gateways count %d retries; the backend refused %d attempts", got, r)
	}
	if got := attA["delivered"] + attB["delivered"]; got != events {
		t.Errorf("the gateways count %d deliveries, want %d", got, events)
	}
	if total(attA) == 0 || total(attB) == 0 {
		t.Errorf("one gateway did all the work: A made %d attempts, B %d", total(attA), total(attB))
	}
	t.Logf("%d events, %d attempts (%d refused) in %v: A made %d, B %d",
		events, n, r, took.Round(time.Millisecond), total(attA), total(attB))
}
