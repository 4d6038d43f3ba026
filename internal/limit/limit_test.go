package limit

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a fake time source; tests move it instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// take calls Allow n times and counts the successes.
func take(t *testing.T, l *Limiter, key string, n int) int {
	t.Helper()
	ok := 0
	for range n {
		if allowed, _ := l.Allow(key); allowed {
			ok++
		}
	}
	return ok
}

func TestAllow(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{
			name:  "burst then refused",
			cfg:   Config{Rate: 1, Burst: 3},
			steps: []step{{}, {}, {}, {wantRetry: time.Second}},
		},
		{
			name: "refills at rate",
			cfg:  Config{Rate: 2, Burst: 1}, // a token every 500ms
			steps: []step{
				{},
				{wantRetry: 500 * time.Millisecond},
				{advance: 200 * time.Millisecond, wantRetry: 300 * time.Millisecond},
				{advance: 300 * time.Millisecond},
				{wantRetry: 500 * time.Millisecond},
			},
		},
		{
			name: "refill stops at burst",
			cfg:  Config{Rate: 1, Burst: 2},
			steps: []step{
				{}, {},
				{advance: time.Hour}, {},
				{wantRetry: time.Second},
			},
		},
		{
			name: "60 a minute",
			cfg:  Config{Rate: 1.0 / 60, Burst: 1},
			steps: []step{
				{},
				{wantRetry: time.Minute},
				{advance: 45 * time.Second, wantRetry: 15 * time.Second},
				{advance: 15 * time.Second},
			},
		},
		{
			name:  "zero burst means ceil(rate)",
			cfg:   Config{Rate: 2.5},
			steps: []step{{}, {}, {}, {wantRetry: 400 * time.Millisecond}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			tt.cfg.Now = c.Now
			l := New(tt.cfg)
			for i, s := range tt.steps {
				c.Advance(s.advance)
				ok, retry := l.Allow("k")
				if wantOK := s.wantRetry == 0; ok != wantOK || retry != s.wantRetry {
					t.Fatalf("step %d: Allow = %v, %v; want %v, %v", i, ok, retry, wantOK, s.wantRetry)
				}
			}
		})
	}
}

// step advances the clock, then calls Allow; a zero wantRetry means it must be allowed.
type step struct {
	advance   time.Duration
	wantRetry time.Duration
}

func TestKeysAreIndependent(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 1, Burst: 2, Now: c.Now})
	if got := take(t, l, "alice", 5); got != 2 {
		t.Fatalf("alice allowed %d of 5, want 2", got)
	}
	if got := take(t, l, "bob", 5); got != 2 {
		t.Fatalf("bob allowed %d of 5 after alice ran out, want 2", got)
	}
}

func TestNilLimiterAllows(t *testing.T) {
	var l *Limiter
	if ok, retry := l.Allow("x"); !ok || retry != 0 {
		t.Fatalf("nil Allow = %v, %v", ok, retry)
	}
}

func TestNewRejectsBadRate(t *testing.T) {
	for _, r := range []float64{0, -1} {
		t.Run(fmt.Sprint(r), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("New(Rate: %v) did not panic", r)
				}
			}()
			New(Config{Rate: r})
		})
	}
}

func TestFloodOfDistinctKeysStaysBounded(t *testing.T) {
	c := newClock()
	const maxKeys = 1000
	l := New(Config{Rate: 1, Burst: 5, MaxKeys: maxKeys, Now: c.Now})
	// A victim spends its burst, then a flood of 100k addresses arrives within the
	// same instant, so none of them is idle.
	if got := take(t, l, "victim", 5); got != 5 {
		t.Fatalf("victim allowed %d of 5", got)
	}
	for i := range 100_000 {
		l.Allow("flood-" + strconv.Itoa(i))
		if n := l.Len(); n > maxKeys {
			t.Fatalf("after %d keys the limiter tracks %d, want at most %d", i+1, n, maxKeys)
		}
	}
	if n := l.Len(); n != maxKeys {
		t.Fatalf("tracks %d keys, want %d", n, maxKeys)
	}
	// The newest keys survive and keep their state.
	if ok, _ := l.Allow("flood-99999"); !ok {
		t.Fatal("the newest key lost its remaining burst")
	}
}

func TestIdleKeysAreDropped(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 1, Burst: 10, Now: c.Now}) // refills from empty in 10s
	for i := range 100 {
		l.Allow(strconv.Itoa(i))
	}
	c.Advance(10 * time.Second)
	// Each call drops a couple of idle keys, so the table drains as traffic goes on.
	for range 60 {
		l.Allow("active")
	}
	if n := l.Len(); n > 1 {
		t.Fatalf("tracks %d keys after the others went idle, want 1", n)
	}
	// A key not yet refilled must not be dropped: that would hand it a fresh burst.
	take(t, l, "busy", 10)
	c.Advance(9 * time.Second)
	for range 10 {
		l.Allow("other")
	}
	if ok, _ := l.Allow("busy"); !ok {
		t.Fatal("busy should have 9 tokens back")
	}
	if got := take(t, l, "busy", 10); got != 8 {
		t.Fatalf("busy allowed %d more, want 8: its bucket was reset", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 1, Burst: 100, MaxKeys: 50, Now: c.Now})
	var allowedShared atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				if ok, _ := l.Allow("shared"); ok {
					allowedShared.Add(1)
				}
				l.Allow(fmt.Sprintf("g%d-%d", g, i%200))
				if i%500 == 0 {
					c.Advance(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	if n := l.Len(); n > 50 {
		t.Fatalf("tracks %d keys, want at most 50", n)
	}
	// Every goroutine alternates "shared" with one other key, so at most 8 other keys
	// come between two uses of "shared": it is never evicted, and the clock moves 32ms in
	// all, far from a refill. Exactly its burst gets through, however calls interleave.
	if got := allowedShared.Load(); got != 100 {
		t.Fatalf("shared allowed %d times, want its burst of 100", got)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Config{Rate: 1e6, Burst: 1000, MaxKeys: 10_000})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "203.0.113." + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}
