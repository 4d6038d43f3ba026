package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terragate/terragate/internal/store/postgres/pgtest"
)

// The relay scenarios of issue 13: 2 KB data events ingested with one destination that wants
// them (so each keeps its body and enqueues a delivery in the transaction that stores it),
// the relay's delivery rate to a loopback receiver, the lag from Terra's send to the
// backend's receipt, and a long outage of one of two destinations.

// relayEventSize is the size of the relay scenarios' data events: a small activity event,
// as Terra sends many of.
const relayEventSize = 2 << 10

// relayBodies is how many distinct bodies the load generator cycles through: enough that
// bodies vary as Terra's do, few enough to build before the run rather than per request.
const relayBodies = 256

// Activity is an activity event of about size bytes whose heart-rate samples depend on i:
// events of different i differ all through, as two of Terra's do.
func Activity(i, size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 64)
	fmt.Fprintf(&b, `{"type":"activity","user":{"user_id":"bench-relay-tu-%d","provider":"GARMIN","reference_id":"bench-relay-user-%d"},`+
		`"data":[{"metadata":{"start_time":"2026-07-%02dT%02d:00:00+00:00"},"heart_rate_data":{"detailed":{"hr_samples":[`,
		i, i, 1+i%28, i%24)
	for j := 0; b.Len() < size-64; j++ {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":"2026-07-%02dT%02d:%02d:%02d+00:00","bpm":%d}`, 1+i%28, i%24, (j/60)%60, j%60, 50+(i*31+j*7919)%97)
	}
	b.WriteString(`]}}}],"version":"2022-03-16"}`)
	return b.Bytes()
}

// Receiver is a relay destination on loopback, as light as a backend can be: it reads the
// body, answers 204 and notes when each event was answered, by its x-terra-trace-id. It
// can be made to answer 503 (Down) or to hold every request until released (Hold).
type Receiver struct {
	URL string
	srv *http.Server

	down    atomic.Bool
	refused atomic.Int64 // requests answered 503

	mu       sync.Mutex
	held     chan struct{} // closed by Release; nil: nothing held
	answered map[string]time.Time
	repeats  int // arrivals of a trace id already answered: at-least-once's doing
	bad      int // requests without the headers every delivery carries
}

// StartReceiver listens on loopback.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &Receiver{URL: "http://" + ln.Addr().String(), answered: map[string]time.Time{}}
	rc.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(rc.serve)}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	rc.mu.Lock()
	held := rc.held
	rc.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
	}
	if rc.down.Load() {
		rc.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	trace := r.Header.Get("X-Terra-Trace-Id")
	now := time.Now()
	rc.mu.Lock()
	switch _, seen := rc.answered[trace]; {
	case trace == "" || r.Header.Get("Webhook-Id") == "" || r.Header.Get("Webhook-Signature") == "":
		rc.bad++
	case seen:
		rc.repeats++
	default:
		rc.answered[trace] = now
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Down makes the receiver answer 503 (true) or 204 again (false).
func (rc *Receiver) Down(down bool) { rc.down.Store(down) }

// Hold makes requests wait, unanswered, until Release: the relay's attempts in flight stay
// busy, so the deliveries enqueued meanwhile wait in the outbox.
func (rc *Receiver) Hold() {
	rc.mu.Lock()
	rc.held = make(chan struct{})
	rc.mu.Unlock()
}

// Release answers the requests held and stops holding new ones.
func (rc *Receiver) Release() {
	rc.mu.Lock()
	if rc.held != nil {
		close(rc.held)
		rc.held = nil
	}
	rc.mu.Unlock()
}

// Answered is when the event with trace id was first answered 204.
func (rc *Receiver) Answered(trace string) (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	t, ok := rc.answered[trace]
	return t, ok
}

// Count is the number of distinct events answered 204, repeats and malformed requests.
func (rc *Receiver) Count() (distinct, repeats, bad int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.answered), rc.repeats, rc.bad
}

// Refused is how many requests were answered 503.
func (rc *Receiver) Refused() int64 { return rc.refused.Load() }

// Close stops the receiver.
func (rc *Receiver) Close() {
	rc.Release()
	_ = rc.srv.Close()
}

// relayLoad posts activity events to a gateway and notes when each one that was accepted
// was sent, by trace id.
type relayLoad struct {
	client *http.Client
	url    string
	bodies [][]byte

	mu      sync.Mutex
	sent    map[string]time.Time
	refused int // posts that failed (503: not stored; Terra would send them again)
}

func newRelayLoad(client *http.Client, gatewayURL string) *relayLoad {
	l := &relayLoad{client: client, url: gatewayURL, sent: map[string]time.Time{}}
	for i := range relayBodies {
		l.bodies = append(l.bodies, Activity(i, relayEventSize))
	}
	return l
}

// relayTrace is event i's trace id; i is unique in a run, so every event is a new one.
func relayTrace(i int) string { return "bench-relay-" + strconv.Itoa(i) }

// Post sends event i (an Op).
func (l *relayLoad) Post(ctx context.Context, i int) error {
	trace := relayTrace(i)
	at := time.Now()
	err := PostWebhook(ctx, l.client, l.url, l.bodies[i%len(l.bodies)], trace)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.sent[trace] = at
	} else {
		l.refused++
	}
	return err
}

// accepted lists the trace ids of the events accepted whose send time is in [from, to),
// with their send times.
func (l *relayLoad) accepted(from, to time.Time) map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Time{}
	for trace, at := range l.sent {
		if !at.Before(from) && at.Before(to) {
			out[trace] = at
		}
	}
	return out
}

// lags waits, up to wait, until rc has answered every event of sent, and returns the lags
// (answer minus send), sorted, and how many never arrived.
func lags(ctx context.Context, rc *Receiver, sent map[string]time.Time, wait time.Duration) ([]time.Duration, int) {
	deadline := time.Now().Add(wait)
	var out []time.Duration
	missing := 0
	for trace, at := range sent {
		for {
			if t, ok := rc.Answered(trace); ok {
				out = append(out, t.Sub(at))
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				missing++
				break
			}
			sleep(ctx, 10*time.Millisecond)
		}
	}
	slices.Sort(out)
	return out, missing
}

// relayDB is an empty database of one engine, for one gateway.
type relayDB struct {
	engine, url string
	drop        func() error
}

// relayDBs makes an empty database per engine the run has (SQLite, and PostgreSQL when a
// server answers) for the scenario label: each scenario starts from an empty outbox, not
// from the backlog another one left.
func (r *Runner) relayDBs(ctx context.Context, label string) ([]relayDB, error) {
	dbs := []relayDB{{engine: "sqlite", url: r.sqliteURL(label), drop: func() error { return nil }}}
	if r.Cfg.Postgres == "" || pgtest.Ping(ctx, r.Cfg.Postgres) != nil {
		return dbs, nil
	}
	url, drop, err := pgtest.CreateSchema(r.Cfg.Postgres, "bench_")
	if err != nil {
		return nil, err
	}
	return append(dbs, relayDB{engine: "postgres", url: url, drop: drop}), nil
}

// relayDestinations is RELAY_DESTINATIONS for receivers by name, each wanting activity.
func relayDestinations(to map[string]*Receiver) string {
	names := make([]string, 0, len(to))
	for name := range to {
		names = append(names, name)
	}
	slices.Sort(names)
	s := "["
	for i, name := range names {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(`{"name":%q,"url":%q,"events":["activity"],"secret":%q}`, name, to[name].URL, relaySecret)
	}
	return s + "]"
}

// relayGateway starts a gateway on databaseURL relaying activity to the receivers, with
// extra settings on top.
func (r *Runner) relayGateway(ctx context.Context, databaseURL string, to map[string]*Receiver, extra map[string]string) (*Gateway, error) {
	env := map[string]string{"RELAY_DESTINATIONS": relayDestinations(to)}
	for k, v := range extra {
		env[k] = v
	}
	return r.startGateway(ctx, databaseURL, env)
}

// relayToBackend starts one destination, "backend", on loopback, a gateway on db relaying to
// it (with extra settings on top) and a load generator posting to that gateway; stop stops
// the gateway, then the receiver.
func (r *Runner) relayToBackend(ctx context.Context, db relayDB, extra map[string]string) (rc *Receiver, gw *Gateway, load *relayLoad, stop func(), err error) {
	rc, err = StartReceiver()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	gw, err = r.relayGateway(ctx, db.url, map[string]*Receiver{"backend": rc}, extra)
	if err != nil {
		rc.Close()
		return nil, nil, nil, nil, err
	}
	return rc, gw, newRelayLoad(r.client, gw.URL), func() { gw.Stop(); rc.Close() }, nil
}

// RelayRows measures, on each engine: the ingest of 2 KB data events that one destination
// wants, at Cfg.WebhookRate (open model) and at Cfg.InFlight in flight (closed); the
// relay's delivery rate draining a backlog of Cfg.RelayBacklog; and the lag from send to
// receipt at Cfg.RelayRate.
func (r *Runner) RelayRows(ctx context.Context) ([]Row, error) {
	var rows []Row
	for _, scenario := range []struct {
		label string
		rows  func(context.Context, relayDB) ([]Row, error)
	}{
		{"relay-ingest", r.relayIngestRows},
		{"relay-throughput", r.relayThroughputRow},
		{"relay-lag", r.relayLagRow},
	} {
		rs, err := r.eachEngine(ctx, scenario.label, scenario.rows)
		rows = append(rows, rs...)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", scenario.label, err)
		}
	}
	return rows, nil
}

// eachEngine runs rows on an empty database of each engine (relayDBs), and drops them all
// whatever happens.
func (r *Runner) eachEngine(ctx context.Context, label string, rows func(context.Context, relayDB) ([]Row, error)) ([]Row, error) {
	dbs, err := r.relayDBs(ctx, label)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, db := range dbs {
			_ = db.drop()
		}
	}()
	var out []Row
	for _, db := range dbs {
		rs, err := rows(ctx, db)
		if err != nil {
			return out, fmt.Errorf("%s: %w", db.engine, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// backlog is the destination's PENDING deliveries, as the gateway's metrics show them.
func backlog(gw *Gateway, destination string) string {
	v, err := gw.Metric(`terragate_relay_backlog{destination="` + destination + `"}`)
	if err != nil {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// relayIngestRows measures the ingest of events a destination wants while the relay
// delivers them: the relay's claims and results share the store with the ingest.
func (r *Runner) relayIngestRows(ctx context.Context, db relayDB) ([]Row, error) {
	_, gw, load, stop, err := r.relayToBackend(ctx, db, nil)
	if err != nil {
		return nil, err
	}
	defer stop()
	c := r.Cfg
	var achieved, p50, p99, late99, capacity, cp50, cp99 []float64
	refused := 0
	for round := range c.Rounds {
		r.progress("relay ingest (%s) at %.0f/s, round %d", db.engine, c.WebhookRate, round+1)
		open := Open(ctx, c.WebhookRate, 512, c.WarmUp, c.Duration, &r.next, load.Post)
		r.progress("relay ingest (%s) at %d in flight, round %d", db.engine, c.InFlight, round+1)
		closed := Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, load.Post)
		// A 503 (the store could not take the event in time) is an outcome to report:
		// Terra sends the event again.
		if err := firstError(open, closed); err != nil && !only503(open, closed) {
			return nil, err
		}
		refused += open.Errors + closed.Errors
		achieved = append(achieved, open.PerSecond())
		p50, p99 = append(p50, micros(open.Quantile(.5))), append(p99, micros(open.Quantile(.99)))
		late99 = append(late99, micros(open.LateQuantile(.99)))
		capacity = append(capacity, closed.PerSecond())
		cp50, cp99 = append(cp50, micros(closed.Quantile(.5))), append(cp99, micros(closed.Quantile(.99)))
	}
	// What the relay had not delivered yet: whether it kept up with the ingest.
	behind := "relay backlog after the runs " + backlog(gw, "backend")
	rate, tail, capRate := median(achieved), median(p99), median(capacity)
	refusedText := fmt.Sprintf("%d refused (503), %d busy errors; %s", refused, gw.BusyErrors(), behind)
	return []Row{{
		Scenario:  fmt.Sprintf("relay ingest 2 KB activity (%s), %.0f/s offered", db.engine, c.WebhookRate),
		Baseline:  fmtRate(c.WebhookRate) + " offered" + sentLate(median(late99)),
		Terragate: fmtRate(rate),
		Ratio:     fmtRatio(rate / c.WebhookRate), P50: latency(median(p50)), P99: latency(tail),
		Memory: refusedText, Spread: spread(p99, latency),
		Target: "≥ 2000/s, p99 < 50 ms",
		Met:    c.WebhookRate >= 2000 && rate >= 0.98*c.WebhookRate && tail < 50_000 && refused == 0,
	}, {
		Scenario:  fmt.Sprintf("relay ingest 2 KB activity (%s), %d in flight", db.engine, c.InFlight),
		Terragate: fmtRate(capRate),
		P50:       latency(median(cp50)), P99: latency(median(cp99)),
		Memory: refusedText, Spread: spread(capacity, fmtRate),
		Target: "≥ 2000/s",
		Met:    capRate >= 2000 && refused == 0,
	}}, nil
}

// relayThroughputRow measures how fast the relay drains a backlog: the receiver holds the
// relay's first attempts (all its slots busy) while Cfg.RelayBacklog events are ingested,
// then answers everything; the rate is the backlog over the time from the release to the
// last answer.
func (r *Runner) relayThroughputRow(ctx context.Context, db relayDB) ([]Row, error) {
	// The held attempts wait out the whole ingest: a timeout that long keeps them from
	// failing and putting their deliveries on the retry schedule.
	rc, gw, load, stop, err := r.relayToBackend(ctx, db, map[string]string{"RELAY_TIMEOUT": "5m"})
	if err != nil {
		return nil, err
	}
	defer stop()
	c := r.Cfg
	var rates, cores []float64
	want := 0
	for round := range c.Rounds {
		r.progress("relay throughput (%s), backlog of %d, round %d", db.engine, c.RelayBacklog, round+1)
		rc.Hold()
		if err := ingest(ctx, load, c.RelayBacklog, c.InFlight, &r.next); err != nil {
			rc.Release()
			return nil, err
		}
		want += c.RelayBacklog
		cpu0, _ := gw.CPU()
		released := time.Now()
		rc.Release()
		last, err := waitAnswered(ctx, rc, want, 2*time.Minute)
		if err != nil {
			return nil, err
		}
		cpu1, _ := gw.CPU()
		took := last.Sub(released)
		rates = append(rates, float64(c.RelayBacklog)/took.Seconds())
		cores = append(cores, float64(cpu1-cpu0)/float64(time.Since(released)))
	}
	_, repeats, bad := rc.Count()
	rate := median(rates)
	return []Row{{
		Scenario:  fmt.Sprintf("relay throughput (%s), backlog of %d to 1 destination", db.engine, c.RelayBacklog),
		Terragate: fmtRate(rate) + " delivered",
		Memory:    fmt.Sprintf("gateway CPU %.1f cores; %d repeats, %d malformed", median(cores), repeats, bad),
		Spread:    spread(rates, fmtRate),
		Target:    "≥ 1000/s",
		Met:       rate >= 1000 && bad == 0,
	}}, nil
}

// ingest posts n events, inFlight at a time, and fails on any refusal: the backlog must be
// exactly n.
func ingest(ctx context.Context, load *relayLoad, n, inFlight int, next *atomic.Int64) error {
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(n))
	errs := make([]error, inFlight)
	for w := range inFlight {
		wg.Go(func() {
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				if err := load.Post(ctx, int(next.Add(1)-1)); err != nil && errs[w] == nil {
					errs[w] = err
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("ingesting the backlog: %w", err)
		}
	}
	return ctx.Err()
}

// waitAnswered waits until rc has answered n distinct events and returns when the last of
// them was answered.
func waitAnswered(ctx context.Context, rc *Receiver, n int, wait time.Duration) (time.Time, error) {
	deadline := time.Now().Add(wait)
	for {
		got, _, _ := rc.Count()
		if got >= n {
			rc.mu.Lock()
			var last time.Time
			for _, t := range rc.answered {
				if t.After(last) {
					last = t
				}
			}
			rc.mu.Unlock()
			return last, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d events relayed after %v", got, n, wait)
		}
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		sleep(ctx, 10*time.Millisecond)
	}
}

// relayLagRow measures the lag from the load generator's send to the receiver's answer at
// Cfg.RelayRate.
func (r *Runner) relayLagRow(ctx context.Context, db relayDB) ([]Row, error) {
	rc, _, load, stop, err := r.relayToBackend(ctx, db, nil)
	if err != nil {
		return nil, err
	}
	defer stop()
	c := r.Cfg
	var p50, p99, late99 []float64
	missing := 0
	for round := range c.Rounds {
		r.progress("relay lag (%s) at %.0f/s, round %d", db.engine, c.RelayRate, round+1)
		from := time.Now().Add(c.WarmUp)
		open := Open(ctx, c.RelayRate, 512, c.WarmUp, c.Duration, &r.next, load.Post)
		if err := firstError(open); err != nil && !only503(open) {
			return nil, err
		}
		l, miss := lags(ctx, rc, load.accepted(from, time.Now()), 30*time.Second)
		missing += miss
		if len(l) == 0 {
			continue // every event refused: no lag to show, and the row says so
		}
		s := Stats{Latencies: l}
		p50, p99 = append(p50, micros(s.Quantile(.5))), append(p99, micros(s.Quantile(.99)))
		late99 = append(late99, micros(open.LateQuantile(.99)))
	}
	if len(p99) == 0 {
		return []Row{{
			Scenario: fmt.Sprintf("relay lag (%s), send to receipt, %.0f/s", db.engine, c.RelayRate),
			Memory:   fmt.Sprintf("every event refused (%d 503s): nothing to relay", load.refusedCount()),
			Target:   "p99 < 200 ms",
		}}, nil
	}
	tail := median(p99)
	return []Row{{
		Scenario: fmt.Sprintf("relay lag (%s), send to receipt, %.0f/s", db.engine, c.RelayRate),
		Baseline: fmtRate(c.RelayRate) + " offered" + sentLate(median(late99)),
		P50:      latency(median(p50)), P99: latency(tail),
		Memory: fmt.Sprintf("%d not relayed within 30 s, %d refused (503)", missing, load.refusedCount()),
		Spread: spread(p99, latency),
		Target: "p99 < 200 ms",
		Met:    tail < 200_000 && missing == 0,
	}}, nil
}

// refusedCount is how many posts failed (503 or otherwise).
func (l *relayLoad) refusedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused
}

// OutageRows runs issue 13's outage on each engine: destinations `down` and `up` both want
// every event arriving at Cfg.OutageRate; `down` answers 503 for Cfg.Outage, then 204. It
// reports `up`'s lag meanwhile against its lag just before (one backend's outage must not
// slow another's deliveries),
// then waits up to Cfg.DrainTimeout for everything to reach `down` and reports how long the
// backlog took to drain after the recovery, or what was still pending, and dead letters. The
// gateway runs the retry schedule it ships with.
func (r *Runner) OutageRows(ctx context.Context) ([]Row, error) {
	return r.eachEngine(ctx, "outage", r.outageRows)
}

func (r *Runner) outageRows(ctx context.Context, db relayDB) ([]Row, error) {
	up, err := StartReceiver()
	if err != nil {
		return nil, err
	}
	defer up.Close()
	down, err := StartReceiver()
	if err != nil {
		return nil, err
	}
	defer down.Close()
	gw, err := r.relayGateway(ctx, db.url, map[string]*Receiver{"up": up, "down": down}, nil)
	if err != nil {
		return nil, err
	}
	defer gw.Stop()
	load := newRelayLoad(r.client, gw.URL)
	c := r.Cfg

	// `up`'s lag with both destinations answering first: what the outage must not change.
	calm := min(c.Outage/4, 30*time.Second)
	r.progress("outage (%s): both destinations answer, events at %.0f/s for %v", db.engine, c.OutageRate, calm)
	start := time.Now()
	before := Open(ctx, c.OutageRate, 512, 0, calm, &r.next, load.Post)
	if err := firstError(before); err != nil && !only503(before) {
		return nil, err
	}
	calmLags, _ := lags(ctx, up, load.accepted(start, time.Now()), 30*time.Second)
	calmStats := Stats{Latencies: calmLags}

	r.progress("outage (%s): `down` answers 503 for %v, events at %.0f/s", db.engine, c.Outage, c.OutageRate)
	down.Down(true)
	start = time.Now()
	open := Open(ctx, c.OutageRate, 512, 0, c.Outage, &r.next, load.Post)
	if err := firstError(open); err != nil && !only503(open) {
		return nil, err
	}
	recovered := time.Now()
	down.Down(false)
	sent := load.accepted(start, recovered)
	upLags, upMissing := lags(ctx, up, sent, 30*time.Second)
	upStats := Stats{Latencies: upLags}

	r.progress("outage (%s): `down` answers 204 again; waiting up to %v for %d events to reach it", db.engine, c.DrainTimeout, len(sent))
	var arrived []time.Duration // after the recovery, of each event `down` got
	pending := map[string]bool{}
	for trace := range sent {
		pending[trace] = true
	}
	report := time.Now()
	for deadline := recovered.Add(c.DrainTimeout); len(pending) > 0 && time.Now().Before(deadline) && ctx.Err() == nil; {
		for trace := range pending {
			if t, ok := down.Answered(trace); ok {
				arrived = append(arrived, t.Sub(recovered))
				delete(pending, trace)
			}
		}
		if time.Since(report) >= 30*time.Second {
			report = time.Now()
			r.progress("outage (%s): %d of %d at `down` %v after the recovery, backlog %s", db.engine, len(sent)-len(pending), len(sent), time.Since(recovered).Round(time.Second), backlog(gw, "down"))
		}
		sleep(ctx, 100*time.Millisecond)
	}
	slices.Sort(arrived)
	dead, err := gw.Metric(`terragate_relay_dead_letters_total{destination="down"}`)
	if err != nil {
		dead = 0 // the series appears only with the first dead letter
	}
	retries, _ := gw.Metric(`terragate_relay_attempts_total{destination="down",outcome="retry"}`)

	drain := fmt.Sprintf("%d of %d delivered", len(arrived), len(sent))
	if len(arrived) > 0 {
		arrivedStats := Stats{Latencies: arrived}
		// The first says when the breaker let a trial through; the rest, how fast the
		// backlog went.
		drain += fmt.Sprintf("; after the recovery, the first in %v, half in %v, 99%% in %v, the last in %v",
			arrived[0].Round(time.Millisecond), arrivedStats.Quantile(.5).Round(time.Millisecond), arrivedStats.Quantile(.99).Round(time.Millisecond), arrived[len(arrived)-1].Round(time.Millisecond))
	}
	if len(pending) > 0 {
		drain += fmt.Sprintf("; %d still pending when the wait ended %v after the recovery (backlog metric %s)",
			len(pending), c.DrainTimeout, backlog(gw, "down"))
	}
	_, repeats, _ := down.Count()
	upTail := micros(upStats.Quantile(.99))
	return []Row{{
		Scenario: fmt.Sprintf("outage (%s): `up` while `down` is down %v, %.0f/s", db.engine, c.Outage, c.OutageRate),
		Baseline: fmt.Sprintf("p50 %s, p99 %s with both answering, %v before",
			latency(micros(calmStats.Quantile(.5))), latency(micros(calmStats.Quantile(.99))), calm),
		Terragate: fmt.Sprintf("%d of %d relayed to `up`", len(upLags), len(sent)),
		P50:       latency(micros(upStats.Quantile(.5))), P99: latency(upTail),
		Memory: fmt.Sprintf("%d refused (503) at ingest", open.Errors) + sentLate(micros(open.LateQuantile(.99))),
		Target: "p99 < 200 ms, as before the outage",
		Met:    upTail < 200_000 && upMissing == 0,
	}, {
		Scenario:  fmt.Sprintf("outage (%s): `down` after it recovers", db.engine),
		Terragate: drain,
		Memory: fmt.Sprintf("%.0f dead letters, %d attempts answered 503, %.0f retries scheduled, %d repeats",
			dead, down.Refused(), retries, repeats),
		Target: "everything delivered, no dead letters",
		Met:    len(pending) == 0 && dead == 0,
	}}, nil
}
