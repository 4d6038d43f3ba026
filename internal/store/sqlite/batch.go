package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/core"
	"github.com/terragate/terragate/internal/store/sqlite/sqlitedb"
)

// Group commit for ApplyWebhook and CreateWidgetSession. Most of what a delivery or a new
// session costs SQLite's one writer is its commit: every page it dirtied (the inbox row or
// the session, terra_users, audit_log and their indexes) goes to the WAL again on every
// commit. So writes that arrive while the writer is busy share one transaction, and one that
// fails is undone alone (applyBatch says how); all are answered after the one COMMIT, so
// that none is acknowledged before it is durable. A lone write is not held back to fill a
// batch.

// maxBatch caps the writes of one transaction, which bounds how long the first of them
// waits for the last (a few hundred µs each) and for how long other writes are held off.
const maxBatch = 64

// errClosed answers ApplyWebhook after Close.
var errClosed = errors.New("store is closed")

// ApplyWebhook records the delivery in the inbox and applies its event (core's Apply) in one
// transaction; a delivery already in the inbox changes nothing. The transaction may be shared
// with other deliveries waiting at the same time, each in a savepoint of its own; it returns
// once that transaction has committed. A panic while applying is raised again here, in the
// caller's goroutine. A caller whose ctx ends while the transaction commits gets ctx's error,
// and its delivery may still be kept.
func (d *DB) ApplyWebhook(ctx context.Context, dl store.Delivery) (store.Outcome, error) {
	if err := store.CheckDelivery(dl); err != nil {
		return store.Outcome{}, err
	}
	p := &pending{ctx: ctx, dl: dl, done: make(chan result, 1)}
	if err := d.enqueue(p); err != nil {
		return d.ApplyResult(ctx, dl, store.Outcome{}, err)
	}
	var r result
	select {
	case r = <-p.done:
	case <-ctx.Done():
		return d.ApplyResult(ctx, dl, store.Outcome{}, ctx.Err())
	}
	if r.panicked != nil {
		panic(r.panicked.v)
	}
	return d.ApplyResult(ctx, dl, r.out, r.err)
}

// errPanicked is the failure of a delivery whose applying panicked; its caller re-panics.
var errPanicked = errors.New("panic while applying")

// pending is one ApplyWebhook or CreateWidgetSession call queued for the batcher: a
// delivery, or a session when session is set.
type pending struct {
	ctx     context.Context
	dl      store.Delivery
	session *sessionWrite
	done    chan result // buffered, so the batcher never waits for a caller that gave up
}

// sessionWrite is a checked session with its audit entries.
type sessionWrite = core.SessionWrite[sqlitedb.TerraUser, sqlitedb.WidgetSession, sqlitedb.WebhookEvent, sqlitedb.AuditLog, string, string, sqlitedb.RelayDelivery]

// CreateWidgetSession stores a new session with its audit entries (core's
// CreateWidgetSession) in a transaction it may share with other writes waiting at the same
// time; it returns once that transaction has committed. A caller whose ctx ends meanwhile
// gets ctx's error, and its session may still be kept.
func (d *DB) CreateWidgetSession(ctx context.Context, s store.WidgetSession, audit ...store.AuditEntry) error {
	w, err := d.CheckSessionWrite(s, audit...)
	if err != nil {
		return err
	}
	// The index learns of the session first, so that a lookup while it is written asks the
	// database, as it would without the index.
	if s := w.Session(); s.Status == store.SessionCreated && s.ReturnUsedAt == nil && s.ReferenceID != "" && s.InputKey != "" {
		d.live.add(s.ReferenceID, s.InputKey, s.ExpiresAt)
	}
	p := &pending{ctx: ctx, session: &w, done: make(chan result, 1)}
	if err := d.enqueue(p); err != nil {
		return d.SessionWriteResult(ctx, w, err)
	}
	var r result
	select {
	case r = <-p.done:
	case <-ctx.Done():
		return d.SessionWriteResult(ctx, w, ctx.Err())
	}
	if r.panicked != nil {
		panic(r.panicked.v)
	}
	return d.SessionWriteResult(ctx, w, r.err)
}

// result is what the batcher answers one caller.
type result struct {
	out store.Outcome
	err error
	// panicked holds the value of a panic while applying, to be raised again in the
	// caller's goroutine, where the webhook handler recovers it.
	panicked *panicValue
}

type panicValue struct{ v any }

// startBatcher starts the goroutine that applies ApplyWebhook's deliveries.
func (d *DB) startBatcher() {
	d.wake = make(chan struct{}, 1)
	d.stopped = make(chan struct{})
	go d.batcher()
}

// stopBatcher lets the batcher apply the deliveries queued and waits for it to end; later
// deliveries are refused.
func (d *DB) stopBatcher() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.signal()
	<-d.stopped
}

// enqueue queues p. When no batch is being applied, the queue's first batch (p among it) is
// applied at once on a goroutine of its own, which the caller's scheduler runs next: a write
// to an idle writer waits for no parked goroutine to wake up. It is not applied on the
// caller's goroutine because the caller must be free to give up at its deadline (the
// webhook answers 503 within a second) while the writer waits for a lock held elsewhere.
// What queued meanwhile is handed to the batcher. A caller that gives up stays in the
// queue, and the batch skips it: that costs it a context check.
func (d *DB) enqueue(p *pending) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errClosed
	}
	d.queue = append(d.queue, p)
	if d.busy {
		d.mu.Unlock()
		return nil
	}
	d.busy = true
	batch := d.take(make([]*pending, 0, min(len(d.queue), maxBatch)))
	d.mu.Unlock()
	go func() {
		d.applyBatch(batch)
		d.mu.Lock()
		handOver := len(d.queue) > 0 || d.closed
		d.handed, d.busy = handOver, handOver
		d.mu.Unlock()
		if handOver {
			d.signal()
		}
	}()
	return nil
}

// take moves the queue's first maxBatch writes into batch; d.mu is held.
func (d *DB) take(batch []*pending) []*pending {
	batch = append(batch[:0], d.queue[:min(len(d.queue), maxBatch)]...)
	rest := copy(d.queue, d.queue[len(batch):])
	clear(d.queue[rest:])
	d.queue = d.queue[:rest]
	return batch
}

// signal wakes the batcher; one wake-up stands for any number of deliveries.
func (d *DB) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// queued is the number of deliveries waiting for the batcher.
func (d *DB) queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue)
}

// batcher applies what queued while a caller applied a batch (enqueue hands it over),
// whatever is queued at a time, up to maxBatch, in one transaction, until the queue is empty;
// and ends once the store is closed and the queue empty.
func (d *DB) batcher() {
	defer close(d.stopped)
	batch := make([]*pending, 0, maxBatch)
	for range d.wake {
		d.mu.Lock()
		if !d.handed {
			// Close's wake-up while a caller applies a batch: that caller hands over.
			done := d.closed && !d.busy
			d.mu.Unlock()
			if done {
				return
			}
			continue
		}
		d.mu.Unlock()
		for {
			d.mu.Lock()
			batch = d.take(batch)
			closed := d.closed
			if len(batch) == 0 {
				d.handed, d.busy = false, false
			}
			d.mu.Unlock()
			if len(batch) == 0 {
				if closed {
					return
				}
				break
			}
			d.applyBatch(batch)
			clear(batch) // drop the deliveries' bodies
		}
	}
}

// applyBatch applies batch in one transaction and answers every caller once it has
// committed; a failed COMMIT fails all that ran. The statements run on a context of the
// batch, so that no caller's cancellation interrupts the others'.
//
// Deliveries seldom fail, so the batch is first applied without a savepoint for each
// (tryBatch): a savepoint costs two statements and a copy of every page the delivery
// changes, about a tenth of what applying it costs. When one fails, that attempt is rolled
// back whole and the batch applied again with a savepoint for each delivery, leaving out the
// one that failed, whose result stands: as if it had been undone alone the first time. A
// delivery that failed there is answered as a duplicate if its key is in the inbox by then,
// as it would have been had the inbox been looked at before anything else.
func (d *DB) applyBatch(batch []*pending) {
	n := 0
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.done <- result{err: err}
			continue
		}
		batch[n] = p
		n++
	}
	batch = batch[:n]
	if n == 0 {
		return
	}
	results := make([]result, n)
	ctx := context.Background()
	failed, err := d.tryBatch(ctx, batch, results)
	if failed >= 0 && err == nil {
		err = d.inSQLTx(ctx, func(tx *sql.Tx) error {
			q := writeTx{d.wq.WithTx(tx), tx}
			for i, p := range batch {
				if i != failed {
					if err := p.ctx.Err(); err != nil {
						results[i] = result{err: err} // gone before its turn: nothing applied
						continue
					}
					r, err := d.applyOne(ctx, q, p)
					results[i] = r
					if err != nil {
						return err // the transaction cannot go on
					}
				}
				if r := results[i]; p.session != nil || r.panicked == nil && (r.err == nil || errors.Is(r.err, core.ErrDuplicate)) {
					continue
				}
				// A delivery already in the inbox is a duplicate, whatever deciding it did
				// (Apply writes the inbox row only after): nothing of it is left to undo.
				dup, err := q.WebhookEventExists(ctx, p.dl.DedupeKey)
				if err != nil {
					return fmt.Errorf("look up inbox row: %w", err)
				}
				if dup {
					results[i] = result{err: core.ErrDuplicate}
				}
			}
			return nil
		})
	}
	if err != nil {
		for i, r := range results {
			if r.panicked == nil {
				// Not committed, so not even a duplicate or a refusal stands: either may
				// rest on what an earlier delivery of the batch wrote.
				results[i] = result{err: err}
			}
		}
	} else if d.afterCommit != nil {
		applied := 0
		for i, r := range results {
			if r.err == nil && r.panicked == nil && batch[i].session == nil {
				applied++
			}
		}
		d.afterCommit(applied)
	}
	for i, p := range batch {
		p.done <- results[i]
	}
}

// tryBatch applies batch in one transaction without savepoints and commits it. When a
// delivery fails, it stops there, rolls the transaction back and returns the delivery's
// index, whose result in results stands; the others' are then void. A duplicate is no
// failure: it wrote nothing. err is the failure of the transaction itself (BEGIN, COMMIT or
// the rollback), which voids every result.
func (d *DB) tryBatch(ctx context.Context, batch []*pending, results []result) (failed int, err error) {
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return -1, err
	}
	q := writeTx{d.wq.WithTx(tx), tx}
	for i, p := range batch {
		if err := p.ctx.Err(); err != nil {
			results[i] = result{err: err} // gone before its turn: nothing applied
			continue
		}
		r, err := d.applyRecovered(q, p)
		results[i] = r
		if err != nil && !errors.Is(err, core.ErrDuplicate) {
			return i, ignoreDone(tx.Rollback())
		}
	}
	return -1, tx.Commit()
}

// applyOne applies p's delivery in a savepoint of tx (released on success, rolled back to
// on failure) and returns its result. The error is not nil when the savepoint itself
// failed, which leaves the transaction in a state nothing else should be written in.
func (d *DB) applyOne(ctx context.Context, q writeTx, p *pending) (result, error) {
	var r result
	var failed error
	err := savepoint(ctx, q.tx, func() error {
		r, failed = d.applyRecovered(q, p)
		return failed
	})
	if err != nil && !errors.Is(err, failed) { // savepoint wraps fn's error only when undone
		return r, err
	}
	return r, nil
}

// applyRecovered is core's Apply for one caller, with a panic turned into a result so that it
// neither ends the batcher nor leaves the transaction open. Its statements keep the
// caller's context values (for logs) but not its cancellation. A caller that gave up while
// its delivery was applied gets it undone, as a cancelled transaction of its own would be.
func (d *DB) applyRecovered(q writeTx, p *pending) (r result, err error) {
	defer func() {
		if v := recover(); v != nil {
			// The caller's re-panic has the caller's stack; this one shows where it was.
			what := []any{"type", p.dl.Event.Type, "trace_id", p.dl.TraceID}
			if p.session != nil {
				what = []any{"session_id", p.session.Session().ID}
			}
			d.log.ErrorContext(p.ctx, "sqlite: panic while applying a write",
				append(what, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))...)
			r, err = result{panicked: &panicValue{v}}, errPanicked
		}
	}()
	var out store.Outcome
	if p.session != nil {
		err = p.session.Insert(context.WithoutCancel(p.ctx), q)
	} else {
		out, err = d.Apply(context.WithoutCancel(p.ctx), q, p.dl)
	}
	if err == nil {
		err = p.ctx.Err()
	}
	if err != nil {
		return result{err: err}, err
	}
	return result{out: out}, nil
}
