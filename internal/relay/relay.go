// Package relay hands every Terra event terragate stores on to the app's own backends
// (RELAY_DESTINATIONS), signed the Standard Webhooks way, retried on a schedule and
// replayable. The events wait in a transactional outbox in the store (store.Outbox),
// enqueued in the transaction that records the webhook; the Relay's workers claim due
// deliveries, post them and record how each attempt ended.
//
// Each destination has its own worker, concurrency limit and circuit breaker, so a backend
// that is down or slow holds up no other. Delivery is at least once: an attempt is counted
// and leased when claimed, so a crash at any point leaves the delivery due again once the
// lease ends, with the same webhook-id for the consumer to drop a repeat.
package relay

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/spool"
	"github.com/terragate/terragate/internal/stdwebhook"
	"github.com/terragate/terragate/internal/store"
)

// Defaults of Config's tuning.
const (
	// DefaultConcurrency is a destination's attempts in flight unless it says otherwise: on
	// PostgreSQL each attempt waits for two commits, and four in flight drained a backlog
	// at about 500-900 deliveries/s where sixteen reach the target of 1,000/s and more.
	DefaultConcurrency = 16
	DefaultPoll        = 250 * time.Millisecond
	// leaseMargin is added to the timeout to make a claim's lease: an attempt in flight
	// is never claimed again by another worker while it may still succeed.
	leaseMargin = 30 * time.Second
	// DefaultCooldown is how long an open breaker refuses attempts before letting one
	// through.
	DefaultCooldown = 30 * time.Second
	// pruneEvery is how often dead letters' bodies older than the retention are dropped.
	pruneEvery = 10 * time.Minute
)

// Config is what the relay does, from the configuration.
type Config struct {
	Destinations []Destination
	Timeout      time.Duration   // RELAY_TIMEOUT: a 2xx within this is success
	Schedule     []time.Duration // RELAY_RETRY_SCHEDULE: the waits before each retry
	Retention    time.Duration   // RELAY_RETENTION: how long dead letters keep their body
	Concurrency  int             // attempts in flight to a destination that sets none (0: DefaultConcurrency)
	Poll         time.Duration   // how often an idle worker looks for due work (0: DefaultPoll)
	Cooldown     time.Duration   // how long an open breaker refuses attempts (0: DefaultCooldown)
}

// Relay delivers the outbox's deliveries. Run starts its workers. It is also the webhook
// handler's router (Route), and is told when deliveries were enqueued (Enqueued).
type Relay struct {
	cfg     Config
	st      store.Outbox
	client  *http.Client
	metrics *metrics.Metrics
	log     *slog.Logger
	now     func() time.Time
	routes  Routes
	workers map[string]*worker
}

// New returns a Relay that delivers st's deliveries with client (which must not follow
// redirects: a 3xx is not a delivery, and the signature is for the destination only), and
// counts them in m (nil: not counted).
func New(cfg Config, st store.Outbox, client *http.Client, m *metrics.Metrics, log *slog.Logger) *Relay {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	r := &Relay{cfg: cfg, st: st, client: client, metrics: m, log: log, now: time.Now,
		routes: Routes(cfg.Destinations), workers: make(map[string]*worker, len(cfg.Destinations))}
	for _, d := range cfg.Destinations {
		r.workers[d.Name] = r.newWorker(d)
	}
	return r
}

// Route names the destinations that want events of type typ.
func (r *Relay) Route(typ string) []string { return r.routes.Route(typ) }

// Enqueued is told that deliveries to dests were committed: their workers claim them at once
// rather than at their next poll. Deliveries another instance enqueued wait for the poll.
func (r *Relay) Enqueued(dests []string) {
	for _, name := range dests {
		if w := r.workers[name]; w != nil {
			w.wake()
		}
	}
}

// NoRedirects is the CheckRedirect of the relay's HTTP client.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Run works the outbox until ctx ends, then waits for the attempts in flight, which the end
// of ctx cancels: those are recorded as due again at once, so a restart sends them first.
func (r *Relay) Run(ctx context.Context) {
	if len(r.cfg.Destinations) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(func() { w.run(ctx) })
	}
	wg.Go(func() { r.prune(ctx) })
	wg.Wait()
}

// prune drops dead letters' bodies once they are older than the retention.
func (r *Relay) prune(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if n, err := r.st.DropExpiredRelayBodies(ctx, r.now().Add(-r.cfg.Retention)); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "relay: dropping expired bodies failed", "err", err)
		} else if n > 0 {
			r.log.InfoContext(ctx, "relay: dropped the bodies of expired dead letters", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// worker delivers to one destination.
type worker struct {
	r     *Relay
	dest  Destination
	cb    *gobreaker.CircuitBreaker[int]
	slots chan struct{} // one per attempt in flight
	done  chan struct{} // an attempt ended, or deliveries were enqueued: look for due work
	log   *slog.Logger
	// recovered is set when the breaker closes again after an outage: the retries that
	// wait on the schedule (minutes to hours apart) are made due at once.
	recovered atomic.Bool
}

// wake makes the worker look for due work now, without waiting for it.
func (w *worker) wake() {
	select {
	case w.done <- struct{}{}:
	default:
	}
}

// errRetryable marks an answer that counts against the destination's breaker.
var errRetryable = errors.New("destination failing")

func (r *Relay) newWorker(d Destination) *worker {
	w := &worker{
		r: r, dest: d, log: r.log.With("destination", d.Name),
		slots: make(chan struct{}, cmp.Or(d.Concurrency, r.cfg.Concurrency)),
		done:  make(chan struct{}, 1),
	}
	w.cb = gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
		Name:        d.Name,
		MaxRequests: 1,
		Timeout:     r.cfg.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 5 },
		OnStateChange: func(name string, from, to gobreaker.State) {
			w.log.Warn("relay: destination circuit "+to.String(), "from", from.String())
			if from == gobreaker.StateHalfOpen && to == gobreaker.StateClosed {
				w.recovered.Store(true)
				w.wake()
			}
		},
	})
	return w
}

// run claims due deliveries while slots are free and the breaker lets attempts through,
// and starts an attempt for each.
func (w *worker) run(ctx context.Context) {
	var attempts sync.WaitGroup
	defer attempts.Wait()
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-w.done:
		}
		free := cap(w.slots) - len(w.slots)
		switch w.cb.State() {
		case gobreaker.StateOpen:
			free = 0
		case gobreaker.StateHalfOpen:
			free = min(free, 1-len(w.slots))
		}
		if w.recovered.Swap(false) {
			w.resume(ctx)
		}
		var claimed []store.RelayDelivery
		if claimNow(free, len(w.slots), cap(w.slots)) {
			now := w.r.now()
			var err error
			claimed, err = w.r.st.ClaimRelayDeliveries(ctx, w.dest.Name, now, now.Add(w.r.cfg.Timeout+leaseMargin), free)
			if err != nil && ctx.Err() == nil {
				w.log.WarnContext(ctx, "relay: claiming deliveries failed", "err", err)
			}
		}
		for _, d := range claimed {
			w.slots <- struct{}{}
			attempts.Go(func() {
				defer func() {
					<-w.slots
					w.wake()
				}()
				w.attempt(ctx, d)
			})
		}
		if len(claimed) == free && free > 0 {
			poll.Reset(0) // there may be more due right now
		} else {
			poll.Reset(w.r.cfg.Poll)
		}
	}
}

// claimNow reports whether a worker with free slots, inFlight attempts and slots in all
// claims now. While attempts are in flight, a claim waits until a quarter of the slots are
// free: each claim is a write (a commit on PostgreSQL), and claiming one delivery each time
// an attempt ended made it one per delivery. The attempts in flight wake the worker as they
// end, so the slots held back are idle for no longer than an attempt.
func claimNow(free, inFlight, slots int) bool {
	return free > 0 && (inFlight == 0 || free >= max(1, slots/4))
}

// resume makes the destination's waiting retries due now: its trial attempt after an outage
// succeeded, and the retries that failed during it would otherwise wait for their turn on
// the schedule, up to hours.
func (w *worker) resume(ctx context.Context) {
	n, err := w.r.st.ResumeRelayDeliveries(ctx, w.dest.Name, w.r.now())
	switch {
	case err != nil && ctx.Err() == nil:
		w.log.WarnContext(ctx, "relay: resuming waiting retries failed; they stay on their schedule", "err", err)
	case n > 0:
		w.log.InfoContext(ctx, "relay: destination answers again; its waiting retries are due now", "count", n)
	}
}

// attempt posts one claimed delivery and records how it ended.
func (w *worker) attempt(ctx context.Context, d store.RelayDelivery) {
	start := w.r.now()
	res := w.send(ctx, d)
	took := w.r.now().Sub(start)
	if ctx.Err() != nil && res.Status != store.RelayDelivered && res.StatusCode == 0 {
		// Stopping: the attempt was cut short, not answered. Due again at once. An answer
		// the destination gave (a 410, a last 503) stands as it is.
		res = store.RelayResult{Status: store.RelayPending, Error: "interrupted: terragate stopped", NextAttempt: w.r.now()}
	}
	res.At = w.r.now()
	outcome := outcomeOf(res)
	w.r.metrics.RelayAttempt(w.dest.Name, outcome, took)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ok, err := w.r.st.FinishRelayDelivery(fctx, d, res)
	switch {
	case err != nil:
		// The lease makes it due again: delivered twice at worst, never lost.
		w.log.ErrorContext(ctx, "relay: recording an attempt failed", "delivery_id", d.ID, "err", err)
	case !ok:
		w.log.WarnContext(ctx, "relay: attempt outlived its lease; another worker owns the delivery", "delivery_id", d.ID)
	default:
		w.log.DebugContext(ctx, "relay: attempt", "delivery_id", d.ID, "webhook_id", d.WebhookID, "event_type", d.EventType,
			"attempt", d.Attempts, "outcome", outcome, "status_code", res.StatusCode, "took", took)
		if res.Status == store.RelayFailed {
			w.r.metrics.RelayDeadLetter(w.dest.Name)
			w.log.WarnContext(ctx, "relay: delivery failed for good (dead letter, replayable)", "delivery_id", d.ID,
				"webhook_id", d.WebhookID, "attempts", d.Attempts, "status_code", res.StatusCode, "error", res.Error)
		}
	}
}

// outcomeOf names an attempt's result for the metrics.
func outcomeOf(res store.RelayResult) string {
	switch res.Status {
	case store.RelayDelivered:
		return metrics.RelayDelivered
	case store.RelayFailed:
		return metrics.RelayDead
	}
	return metrics.RelayRetry
}

// send makes one attempt and says how it ended. The error text never holds anything of the
// body: only the status, or what went wrong with the connection.
func (w *worker) send(ctx context.Context, d store.RelayDelivery) store.RelayResult {
	actx, cancel := context.WithTimeout(ctx, w.r.cfg.Timeout)
	defer cancel()
	req, res, ok := w.request(actx, d)
	if !ok {
		return res
	}
	req.Header.Set("terragate-event-type", d.EventType)
	for name, v := range map[string]string{
		"terra-reference": d.Reference, "x-terra-trace-id": d.TraceID, "x-terra-ordering-timestamp": d.OrderingTimestamp,
	} {
		if v != "" {
			req.Header.Set(name, v)
		}
	}
	var retryAfter time.Duration
	code, err := w.cb.Execute(func() (int, error) {
		resp, err := w.r.client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), w.r.now())
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
			return resp.StatusCode, errRetryable
		}
		return resp.StatusCode, nil
	})
	switch {
	case code >= 200 && code < 300:
		return store.RelayResult{Status: store.RelayDelivered, StatusCode: code}
	case code == http.StatusGone:
		return store.RelayResult{Status: store.RelayFailed, StatusCode: code, Error: "410 Gone: the destination refuses the event; not retried"}
	case code != 0:
		return w.retry(d, code, strconv.Itoa(code)+" "+http.StatusText(code), retryAfter)
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		return w.retry(d, 0, "destination circuit open after repeated failures", 0)
	default:
		return w.retry(d, 0, transportError(err, w.r.cfg.Timeout), 0)
	}
}

// request builds one attempt's request, signed for this attempt, or says how the attempt
// ended when it cannot be built. A small body is sent from memory; a large one (kept in
// pieces) is streamed from the store twice, piece by piece: once to sign it (the signature
// covers the attempt's timestamp, so it is made per attempt) and once as the request body.
// Memory stays at one piece whatever the body's size; the cost is reading the pieces twice.
func (w *worker) request(ctx context.Context, d store.RelayDelivery) (*http.Request, store.RelayResult, bool) {
	// Most bodies are small and kept inline: they take one read. A body RelayBody does not
	// find is either in pieces or no longer kept, which RelayPieces tells apart.
	b, err := w.r.st.RelayBody(ctx, d.EventID)
	pieces := 0
	if errors.Is(err, store.ErrNotFound) {
		pieces, err = w.r.st.RelayPieces(ctx, d.EventID)
		if err == nil && pieces == 0 {
			return nil, store.RelayResult{Status: store.RelayFailed, Error: "the event's body is no longer kept"}, false
		}
	}
	if err != nil {
		return nil, w.retry(d, 0, "reading the event failed", 0), false
	}
	now := w.r.now()
	var body io.Reader
	var sign func(h http.Header) error
	if pieces == 0 {
		body = bytes.NewReader(b)
		sign = func(h http.Header) error { w.dest.Secret.SetHeaders(h, d.WebhookID, now, b); return nil }
	} else {
		get := func(seq int) ([]byte, error) { return w.r.st.RelayPiece(ctx, d.EventID, seq) }
		body = spool.NewReader(pieces, get)
		sign = func(h http.Header) error {
			sig, err := w.dest.Secret.SignReader(d.WebhookID, now, spool.NewReader(pieces, get))
			if err != nil {
				return err
			}
			stdwebhook.SetSignedHeaders(h, d.WebhookID, now, sig)
			return nil
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.dest.URL.String(), body)
	if err != nil {
		return nil, store.RelayResult{Status: store.RelayFailed, Error: "bad destination URL"}, false
	}
	if err := sign(req.Header); err != nil {
		return nil, w.retry(d, 0, "reading the event failed", 0), false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "terragate-relay")
	return req, store.RelayResult{}, true
}

// retry is a failed attempt: due again after the schedule's next wait (at least retryAfter),
// or a dead letter once the schedule is spent.
func (w *worker) retry(d store.RelayDelivery, code int, msg string, retryAfter time.Duration) store.RelayResult {
	i := d.Attempts - 1 // the wait after attempt n is Schedule[n-1]
	if i < 0 || i >= len(w.r.cfg.Schedule) {
		return store.RelayResult{Status: store.RelayFailed, StatusCode: code,
			Error: fmt.Sprintf("%s (after %d attempts)", msg, d.Attempts)}
	}
	wait := max(w.r.cfg.Schedule[i], retryAfter)
	return store.RelayResult{Status: store.RelayPending, StatusCode: code, Error: msg, NextAttempt: w.r.now().Add(wait)}
}

// transportError says why no answer came, without the URL's query or anything sent.
func transportError(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "no answer within " + timeout.String()
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "connection failed: " + oe.Op + ": " + errText(oe.Err)
	}
	return "request failed"
}

func errText(err error) string {
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

// parseRetryAfter reads Retry-After (seconds or an HTTP date); 0 when absent or unreadable.
// It is capped at a day: a destination cannot park a delivery for ever.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 24*time.Hour)
}

// MaxInFlight is the most attempts in flight to any one destination: what the relay's HTTP
// client should keep connections open for, per host.
func MaxInFlight(dests []Destination) int {
	n := DefaultConcurrency
	for _, d := range dests {
		n = max(n, d.Concurrency)
	}
	return n
}
