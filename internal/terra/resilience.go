package terra

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Retry and circuit breaker defaults applied by New.
const (
	// DefaultRetries is the number of retries the gateway's configuration (TERRA_RETRIES)
	// should start from: three attempts in all. Config.Retries itself defaults to none, so
	// that a zero Config keeps one request per call.
	DefaultRetries = 2
	// DefaultRetryBase is the first backoff step; each retry doubles it, up to
	// DefaultRetryMax, and the wait is drawn at random below that (full jitter).
	DefaultRetryBase = 100 * time.Millisecond
	DefaultRetryMax  = 2 * time.Second
	// DefaultBreakerTimeout is how long an open circuit refuses calls before letting
	// probes through.
	DefaultBreakerTimeout = 30 * time.Second
)

// minAttemptTimeout is the floor of the derived Config.AttemptTimeout: a slice of the
// overall Timeout shorter than this would cut off answers that are merely slow.
const minAttemptTimeout = time.Second

// The circuit breaker policy. An endpoint trips after breakerConsecutive failed attempts
// in a row, or when at least half of breakerMinRequests or more attempts in the last
// breakerWindow failed (a rolling window in breakerBucket steps). A failure is an attempt
// that got no answer (connection error, timeout) or an answer of 408 or 5xx; other 4xx
// answers show the endpoint working and count as successes. A 429 is Terra throttling the
// account, not failing: it is honoured through Retry-After, and counting it would let one
// client's burst open the circuit for everyone. Calls the caller cancelled do not count. Once open, calls fail fast for Config.BreakerTimeout;
// then breakerProbes calls go through (half-open): if all succeed the circuit closes, the
// first failure opens it again.
const (
	breakerConsecutive = 5
	breakerMinRequests = 10
	breakerWindow      = 30 * time.Second
	breakerBucket      = 5 * time.Second
	breakerProbes      = 3
)

// Breaker names: one breaker per Terra endpoint, reported by CircuitStates.
const (
	epLegacyWidget  = "generateWidgetSession"
	epWidget        = "widgetSession"
	epUserInfo      = "userInfo"
	epSubscriptions = "subscriptions"
	epDeauth        = "deauthenticateUser"
	epIntegrations  = "integrations"
	epAuthToken     = "generateAuthToken"
	epHistory       = "history" // the data endpoints (activity, sleep, ...) share one
)

var endpoints = []string{epLegacyWidget, epWidget, epUserInfo, epSubscriptions, epDeauth, epIntegrations, epAuthToken, epHistory}

// answer is what one HTTP exchange with Terra produced.
type answer struct {
	body   []byte
	status int
}

// breaker guards one endpoint.
type breaker struct {
	cb *gobreaker.CircuitBreaker[answer]
	// openUntil is when the open circuit lets probes through (Unix nanoseconds).
	openUntil atomic.Int64
}

func newBreakers(timeout time.Duration, changed func(endpoint, state string), log *slog.Logger) map[string]*breaker {
	if changed == nil {
		changed = func(string, string) {}
	}
	bs := make(map[string]*breaker, len(endpoints))
	for _, name := range endpoints {
		b := &breaker{}
		b.cb = gobreaker.NewCircuitBreaker[answer](gobreaker.Settings{
			Name:         name,
			MaxRequests:  breakerProbes,
			Interval:     breakerWindow,
			BucketPeriod: breakerBucket,
			Timeout:      timeout,
			ReadyToTrip: func(n gobreaker.Counts) bool {
				done := n.TotalSuccesses + n.TotalFailures // attempts in flight are not evidence yet
				return n.ConsecutiveFailures >= breakerConsecutive ||
					(done >= breakerMinRequests && 2*n.TotalFailures >= done)
			},
			// Called with the breaker's lock held: record and log only.
			OnStateChange: func(name string, from, to gobreaker.State) {
				changed(name, to.String())
				switch to {
				case gobreaker.StateOpen:
					b.openUntil.Store(time.Now().Add(timeout).UnixNano())
					log.Warn("terra: circuit open, calls fail fast", "endpoint", name, "from", from.String(), "for", timeout)
				default:
					log.Info("terra: circuit "+to.String(), "endpoint", name, "from", from.String())
				}
			},
			IsSuccessful: func(err error) bool { return !IsUnavailable(err) },
			IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
		})
		bs[name] = b
		changed(name, gobreaker.StateClosed.String())
	}
	return bs
}

// CircuitStates reports each endpoint's circuit ("closed", "open" or "half-open") by
// endpoint name (generateWidgetSession, widgetSession, userInfo, subscriptions,
// deauthenticateUser, integrations, generateAuthToken, history), for metrics. It is empty when the breaker is disabled.
func (c *Client) CircuitStates() map[string]string {
	out := make(map[string]string, len(c.breakers))
	for name, b := range c.breakers {
		out[name] = b.cb.State().String()
	}
	return out
}

// call runs one attempt through the endpoint's breaker, if any.
func (c *Client) call(ctx context.Context, op, ep, method, target string, payload []byte) (answer, error) {
	b := c.breakers[ep]
	if b == nil {
		return c.attempt(ctx, op, method, target, payload)
	}
	a, err := b.cb.Execute(func() (answer, error) {
		return c.attempt(ctx, op, method, target, payload)
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		wait := max(time.Until(time.Unix(0, b.openUntil.Load())), 0)
		return a, &circuitError{op: op, wait: wait}
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		// The probes in flight settle it within one attempt's time.
		return a, &circuitError{op: op, wait: c.cfg.AttemptTimeout, probing: true}
	}
	return a, err
}

// retryable reports whether another attempt may get a better answer: Terra was
// unreachable or slow for this attempt (the caller still waiting), or answered with a
// status that says "later".
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrCircuitOpen) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return errors.Is(err, ErrUnavailable)
}

// backoff is the wait before retry number n (1-based): uniform in [0, min(RetryMax,
// RetryBase*2^(n-1))], the "full jitter" that keeps many clients from retrying in step.
func (c *Client) backoff(n int) time.Duration {
	ceiling := c.cfg.RetryMax
	if n <= 30 {
		ceiling = min(ceiling, c.cfg.RetryBase<<(n-1))
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
