// Package limit protects terragate from abusive clients: per-key token-bucket rate limits
// (per user, per client address, per expensive mutation), a cap on request body size, and
// one well-formed GraphQL operation per request. Its HTTP refusals come in the shape the
// endpoint's clients parse: plain JSON, or a GraphQL error with its own code.
//
// A limiter tracks at most MaxKeys keys, so a flood of distinct addresses costs bounded
// memory: keys whose buckets have refilled are dropped as they go idle, and when the table
// is still full the least recently seen key makes room for the new one.
package limit

import (
	"container/list"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the number of keys tracked when Config.MaxKeys is not set. At roughly
// 200 bytes a key it bounds a limiter to about 20 MB.
const DefaultMaxKeys = 100_000

// Config describes one limit: Rate tokens per second refill a bucket of Burst tokens, and
// each request takes one.
type Config struct {
	// Rate is the sustained number of requests per second a key may make; it must be
	// positive (a disabled limit is no Limiter at all, see ParseRate).
	Rate float64
	// Burst is how many requests a key may make at once after being idle. Zero means
	// max(1, ceil(Rate)).
	Burst int
	// MaxKeys bounds how many keys are tracked at once. Zero means DefaultMaxKeys.
	MaxKeys int
	// Now is the clock; nil means time.Now. Tests pass a fake one instead of sleeping.
	Now func() time.Time
}

// Limiter is a set of token buckets, one per key, safe for concurrent use. A nil *Limiter
// allows everything, so a disabled limit can be wired like an enabled one.
type Limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	now     func() time.Time
	// idleAfter is how long a bucket takes to refill from empty: a key not seen for that
	// long is indistinguishable from a new one and can be forgotten without loss.
	idleAfter time.Duration

	mu   sync.Mutex
	keys map[string]*list.Element // of *entry
	lru  list.List                // most recently seen at the front
}

type entry struct {
	key      string
	bucket   *rate.Limiter
	lastSeen time.Time
}

// New returns a Limiter for cfg. It panics if cfg.Rate is not a positive finite number:
// that is a wiring mistake, and a limit that silently allowed or refused everything would
// be worse.
func New(cfg Config) *Limiter {
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) {
		panic(fmt.Sprintf("limit: rate must be positive and finite, got %v", cfg.Rate))
	}
	l := &Limiter{
		limit:   rate.Limit(cfg.Rate),
		burst:   cfg.Burst,
		maxKeys: cfg.MaxKeys,
		now:     cfg.Now,
		keys:    make(map[string]*list.Element),
	}
	if l.burst <= 0 {
		l.burst = max(1, int(math.Ceil(cfg.Rate)))
	}
	if l.maxKeys <= 0 {
		l.maxKeys = DefaultMaxKeys
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.idleAfter = time.Duration(float64(l.burst) / cfg.Rate * float64(time.Second))
	return l
}

// Allow takes a token from key's bucket. When the bucket is empty it reports false and how
// long until a token is available, for a Retry-After header.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	if b.AllowN(now, 1) {
		return true, 0
	}
	// Nothing was taken, so the wait is for the missing part of one token.
	missing := 1 - b.TokensAt(now)
	return false, time.Duration(math.Ceil(missing / float64(l.limit) * float64(time.Second)))
}

// Len reports how many keys are tracked, for tests and metrics.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// bucket finds or makes key's bucket and marks it most recently seen. l.mu is held.
func (l *Limiter) bucket(key string, now time.Time) *rate.Limiter {
	// A couple of idle keys go on every call, so the table shrinks back after a flood
	// without a background goroutine to start and stop.
	for range 2 {
		back := l.lru.Back()
		if back == nil || now.Sub(back.Value.(*entry).lastSeen) < l.idleAfter {
			break
		}
		l.remove(back)
	}
	if el, ok := l.keys[key]; ok {
		e := el.Value.(*entry)
		if now.After(e.lastSeen) {
			e.lastSeen = now
		}
		l.lru.MoveToFront(el)
		return e.bucket
	}
	if len(l.keys) >= l.maxKeys {
		// The least recently seen key may still be limited; forgetting it gives it a
		// fresh bucket. Letting a flood refuse every newcomer instead would turn the
		// limit into an outage for everyone, so bounded memory wins.
		l.remove(l.lru.Back())
	}
	e := &entry{key: key, bucket: rate.NewLimiter(l.limit, l.burst), lastSeen: now}
	l.keys[key] = l.lru.PushFront(e)
	return e.bucket
}

func (l *Limiter) remove(el *list.Element) {
	l.lru.Remove(el)
	delete(l.keys, el.Value.(*entry).key)
}
