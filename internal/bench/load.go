package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Op is one request of a scenario; i numbers the requests of a run from 0, so that each
// can be made different (another end user, another event). It returns an error when the
// answer is not the one expected.
type Op func(ctx context.Context, i int) error

// Stats are the measured requests of one run (warm-up excluded).
type Stats struct {
	Requests int
	Errors   int
	// FirstError is the first error seen, to say why a run failed.
	FirstError error
	Elapsed    time.Duration
	// Latencies, sorted. In an open-model run each counts from when its request was due.
	Latencies []time.Duration
	// Late, sorted, in an open-model run: how far behind its due time the generator itself
	// sent each request (timer and scheduler delay on a busy machine, not the wait for a
	// free slot). A tail latency no bigger than this says more about the machine than
	// about the server.
	Late []time.Duration
}

// PerSecond is the rate of successful requests.
func (s Stats) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests-s.Errors) / s.Elapsed.Seconds()
}

// Quantile is the latency below which fraction q of the requests finished (0 without any).
func (s Stats) Quantile(q float64) time.Duration { return quantile(s.Latencies, q) }

// LateQuantile is the sending delay (see Late) below which fraction q of the requests were
// sent (0 in a closed-model run).
func (s Stats) LateQuantile(q float64) time.Duration { return quantile(s.Late, q) }

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// recorder collects latencies from many goroutines.
type recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	late      []time.Duration
	lastDone  time.Time // when the last open-model request recorded finished
	errors    int
	first     error
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	r.latencies = append(r.latencies, d)
	r.failedLocked(err)
	r.mu.Unlock()
}

// addLate records an open-model request as it finishes: its latency and how late it was
// sent.
func (r *recorder) addLate(d, late time.Duration, err error) {
	r.mu.Lock()
	r.latencies = append(r.latencies, d)
	r.late = append(r.late, late)
	r.lastDone = time.Now()
	r.failedLocked(err)
	r.mu.Unlock()
}

func (r *recorder) failedLocked(err error) {
	if err != nil {
		r.errors++
		if r.first == nil {
			r.first = err
		}
	}
}

func (r *recorder) stats(elapsed time.Duration) Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, late := slices.Clone(r.latencies), slices.Clone(r.late)
	slices.Sort(l)
	slices.Sort(late)
	return Stats{Requests: len(l), Errors: r.errors, FirstError: r.first, Elapsed: elapsed, Latencies: l, Late: late}
}

// Closed keeps inFlight requests in flight (each worker sends its next request as soon as
// its last one is answered) for warm-up and then for d, and measures what d served. It is
// the model of throughput at a given concurrency. next numbers requests across calls, so
// that successive runs never repeat one.
func Closed(ctx context.Context, inFlight int, warmUp, d time.Duration, next *atomic.Int64, op Op) Stats {
	rec := &recorder{}
	// Requests count when they started inside [startAt, stopAt); zero: not yet.
	var startAt, stopAt atomic.Int64
	stopAt.Store(1<<63 - 1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for ctx.Err() == nil && !stop.Load() {
				i := int(next.Add(1) - 1)
				t0 := time.Now()
				err := op(ctx, i)
				took := time.Since(t0)
				if from := startAt.Load(); from != 0 && t0.UnixNano() >= from && t0.UnixNano() < stopAt.Load() {
					rec.add(took, err)
				}
			}
		})
	}
	sleep(ctx, warmUp)
	start := time.Now()
	startAt.Store(start.UnixNano())
	sleep(ctx, d)
	stopAt.Store(time.Now().UnixNano())
	elapsed := time.Since(start)
	// The requests still in flight finish (and count: they started in time); the workers
	// send no more.
	stop.Store(true)
	wg.Wait()
	return rec.stats(elapsed)
}

// Open sends requests at a constant rate (per second) for warm-up and then for d, each on
// its own goroutine, and measures the requests due during d. A request's latency counts
// from when it was due, not from when it was sent: when the system stalls, the requests
// that queue behind the stall show it (no coordinated omission). At most maxInFlight are
// outstanding; a request that must wait for one of them waits on the clock. Elapsed runs
// from the first measured due time to the last measured answer, so PerSecond is the rate
// actually served: below the offered rate when the server falls behind.
func Open(ctx context.Context, rate float64, maxInFlight int, warmUp, d time.Duration, next *atomic.Int64, op Op) Stats {
	rec := &recorder{}
	interval := time.Duration(float64(time.Second) / rate)
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	begin := time.Now()
	measureFrom, end := begin.Add(warmUp), begin.Add(warmUp+d)
	var unblocked time.Time // when the generator last got a slot it had to wait for
	for n := 0; ctx.Err() == nil; n++ {
		due := begin.Add(time.Duration(n) * interval)
		if !due.Before(end) {
			break
		}
		if wait := time.Until(due); wait > 0 {
			sleep(ctx, wait)
		}
		// How far behind the generator itself is: its wake-up after the due time (or after
		// it last waited for a free slot, when that was later) and the start of the
		// request's goroutine. The wait for a slot is the server's doing and not counted.
		woke := time.Now()
		select {
		case slots <- struct{}{}:
		default:
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
			unblocked = time.Now()
		}
		behind := max(woke.Sub(due), 0)
		if unblocked.After(due) {
			behind = max(woke.Sub(unblocked), 0)
		}
		spawned := time.Now()
		i := int(next.Add(1) - 1)
		measured := !due.Before(measureFrom)
		wg.Go(func() {
			defer func() { <-slots }()
			late := behind + time.Since(spawned)
			err := op(ctx, i)
			if measured {
				rec.addLate(time.Since(due), late, err)
			}
		})
	}
	wg.Wait()
	// The rate served is what was measured over the time it took to serve it: an
	// overloaded server finishes the requests of d long after d, at the rate it can.
	return rec.stats(max(d, rec.lastDone.Sub(measureFrom)))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
