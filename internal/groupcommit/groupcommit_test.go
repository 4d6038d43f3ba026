package groupcommit

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// recorder is an Apply function that records the batches it is given and, while gate is
// open for it, holds each batch until the test releases it.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	started chan []int    // each batch as it starts, when not nil
	release chan struct{} // a batch waits for one value, when not nil
}

func (r *recorder) apply(_ context.Context, batch []int) {
	b := slices.Clone(batch)
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.mu.Unlock()
	if r.started != nil {
		r.started <- b
	}
	if r.release != nil {
		<-r.release
	}
}

func (r *recorder) got() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// submitAll submits items each from a goroutine of its own and returns their errors once
// all have returned.
func submitAll(c *Committer[int], items ...int) <-chan []error {
	out := make(chan []error, 1)
	go func() {
		errs := make([]error, len(items))
		var wg sync.WaitGroup
		for i, item := range items {
			wg.Go(func() { errs[i] = c.Submit(context.Background(), item) })
		}
		wg.Wait()
		out <- errs
	}()
	return out
}

func TestLoneItemStartsAtOnce(t *testing.T) {
	r := &recorder{}
	c := New(r.apply, Options{MaxBatch: 8})
	defer c.Close()
	// Nothing else is submitted: the item must not wait for a batch to fill.
	if err := c.Submit(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got := r.got(); !slices.EqualFunc(got, [][]int{{1}}, slices.Equal) {
		t.Fatalf("batches %v, want [[1]]", got)
	}
}

func TestItemsArrivingDuringACommitShareTheNext(t *testing.T) {
	r := &recorder{started: make(chan []int, 10), release: make(chan struct{})}
	c := New(r.apply, Options{MaxBatch: 8})
	defer c.Close()
	first := submitAll(c, 1)
	<-r.started // batch [1] runs and holds the one slot
	rest := submitAll(c, 2, 3, 4)
	// The three wait in the open batch; they are submitted once Submit holds them, which
	// pending counts.
	waitPending(t, c, 3)
	r.release <- struct{}{}
	second := <-r.started
	r.release <- struct{}{}
	for _, errs := range [][]error{<-first, <-rest} {
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(second)
	if !slices.Equal(second, []int{2, 3, 4}) {
		t.Fatalf("second batch %v, want [2 3 4] together", second)
	}
	if n := len(r.got()); n != 2 {
		t.Fatalf("%d batches, want 2", n)
	}
}

func TestMaxBatchAndMaxParallel(t *testing.T) {
	r := &recorder{started: make(chan []int, 10), release: make(chan struct{})}
	c := New(r.apply, Options{MaxBatch: 2, MaxParallel: 2})
	defer c.Close()
	a := submitAll(c, 1)
	b := submitAll(c, 2)
	// Two slots: both start alone, neither waits for the other.
	<-r.started
	<-r.started
	rest := submitAll(c, 3, 4, 5, 6, 7)
	waitPending(t, c, 5)
	for range 2 {
		r.release <- struct{}{}
	}
	var later [][]int
	for range 3 { // [x y] [x y] [x]: five items, at most two a batch
		later = append(later, <-r.started)
		r.release <- struct{}{}
	}
	for _, errs := range [][]error{<-a, <-b, <-rest} {
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	var items []int
	for _, b := range later {
		if len(b) > 2 {
			t.Errorf("batch %v holds more than MaxBatch", b)
		}
		items = append(items, b...)
	}
	slices.Sort(items)
	if !slices.Equal(items, []int{3, 4, 5, 6, 7}) {
		t.Fatalf("items %v, want each of 3..7 once", items)
	}
}

func TestSubmitGivesUpWithItsContext(t *testing.T) {
	r := &recorder{started: make(chan []int, 10), release: make(chan struct{})}
	c := New(r.apply, Options{})
	first := submitAll(c, 1)
	<-r.started
	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- c.Submit(ctx, 2) }()
	waitPending(t, c, 1)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit after cancel: %v, want context.Canceled", err)
	}
	// The item is still handed to apply, which decides what a caller that gave up gets.
	r.release <- struct{}{}
	if b := <-r.started; !slices.Equal(b, []int{2}) {
		t.Fatalf("batch %v, want [2]", b)
	}
	r.release <- struct{}{}
	<-first
	c.Close()
}

func TestCloseWaitsThenRefuses(t *testing.T) {
	r := &recorder{started: make(chan []int, 10), release: make(chan struct{})}
	c := New(r.apply, Options{})
	first := submitAll(c, 1)
	<-r.started
	queued := submitAll(c, 2)
	waitPending(t, c, 1)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	r.release <- struct{}{}
	<-r.started // the queued item is applied before Close returns
	select {
	case <-closed:
		t.Fatal("Close returned with a batch still running")
	default:
	}
	r.release <- struct{}{}
	<-closed
	for _, errs := range [][]error{<-first, <-queued} {
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Submit(t.Context(), 3); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
}

// waitPending waits until n items wait for a slot: Submit has queued them. It yields rather
// than sleeps, reading the state Submit changes.
func waitPending(t *testing.T, c *Committer[int], n int) {
	t.Helper()
	for {
		c.mu.Lock()
		got := 0
		if c.open != nil {
			got += len(c.open.items)
		}
		for _, b := range c.full {
			got += len(b.items)
		}
		c.mu.Unlock()
		if got >= n {
			return
		}
		if t.Context().Err() != nil {
			t.Fatalf("%d items pending, want %d", got, n)
		}
		runtime.Gosched()
	}
}
