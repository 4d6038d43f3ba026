// Package groupcommit shares one database transaction among writes that arrive together.
//
// A commit costs about the same whether it carries one small write or sixty: a round trip, a
// WAL flush, the server's per-transaction work. Under load most of a small write's cost is
// its commit, so writes that arrive while earlier ones are committing wait for those to end
// and then go in one batch. A lone write is never held back to fill a batch: when fewer than
// the allowed batches are running, a write starts its own at once.
//
// The package knows nothing of databases: the caller's Apply function writes a batch and
// records each item's result in the item itself.
package groupcommit

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed answers Submit after Close.
var ErrClosed = errors.New("groupcommit: closed")

// Options tune a Committer; zero values take the defaults.
type Options struct {
	// MaxBatch caps the items of one batch (default 64): it bounds how long the first waits
	// for the last, and how much one failed batch has to redo.
	MaxBatch int
	// MaxParallel caps the batches applied at once (default 1). More than one lets a batch
	// fill while another waits for its commit, at the cost of more transactions.
	MaxParallel int
}

// Committer groups the items submitted to it into batches and applies each with one call of
// its Apply function. It is safe for concurrent use.
type Committer[T any] struct {
	apply       func(context.Context, []T)
	maxBatch    int
	maxParallel int

	mu      sync.Mutex
	open    *batch[T]   // the batch taking items, not started
	full    []*batch[T] // batches at MaxBatch, waiting for a free slot, oldest first
	running int
	closed  bool
	idle    chan struct{} // closed when closed and nothing runs or waits
}

type batch[T any] struct {
	items []T
	done  chan struct{} // closed once Apply returned for items
}

// New returns a Committer that applies each batch with apply, on a goroutine of its own and
// a context that is never cancelled (one caller's deadline must not undo the others' writes).
// apply must record every item's result in the item before it returns; items whose callers
// gave up are still handed to it, and apply decides what to do with them. apply must not
// panic: it runs on no caller's goroutine, so nothing would recover the panic.
func New[T any](apply func(ctx context.Context, batch []T), o Options) *Committer[T] {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.MaxParallel <= 0 {
		o.MaxParallel = 1
	}
	return &Committer[T]{apply: apply, maxBatch: o.MaxBatch, maxParallel: o.MaxParallel, idle: make(chan struct{})}
}

// Submit adds item to a batch and waits until that batch has been applied, or ctx ends
// first. On nil, apply has recorded item's result. On ctx's error the item may still be
// applied later; on ErrClosed it never is.
func (c *Committer[T]) Submit(ctx context.Context, item T) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	b := c.open
	if b == nil {
		b = &batch[T]{items: make([]T, 0, 8), done: make(chan struct{})}
		c.open = b
	}
	b.items = append(b.items, item)
	if len(b.items) == c.maxBatch {
		c.full = append(c.full, b)
		c.open = nil
	}
	c.startLocked()
	c.mu.Unlock()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLocked starts the waiting batches, full ones first, while slots are free; c.mu is
// held.
func (c *Committer[T]) startLocked() {
	for c.running < c.maxParallel {
		var b *batch[T]
		switch {
		case len(c.full) > 0:
			b = c.full[0]
			c.full[0] = nil
			c.full = c.full[1:]
		case c.open != nil:
			b, c.open = c.open, nil
		default:
			return
		}
		c.running++
		go c.run(b)
	}
}

// run applies b, answers its callers and starts what waited for the slot.
func (c *Committer[T]) run(b *batch[T]) {
	defer func() {
		close(b.done)
		c.mu.Lock()
		c.running--
		c.startLocked()
		c.idleLocked()
		c.mu.Unlock()
	}()
	c.apply(context.Background(), b.items)
}

// idleLocked closes idle once the committer is closed and has nothing left; c.mu is held.
func (c *Committer[T]) idleLocked() {
	if c.closed && c.running == 0 && c.open == nil && len(c.full) == 0 {
		select {
		case <-c.idle:
		default:
			close(c.idle)
		}
	}
}

// Close refuses further items and waits until every item submitted has been applied.
func (c *Committer[T]) Close() {
	c.mu.Lock()
	c.closed = true
	c.idleLocked()
	c.mu.Unlock()
	<-c.idle
}
