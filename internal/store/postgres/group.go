package postgres

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/core"
	"github.com/terragate/terragate/internal/store/postgres/pgdb"
)

// Group commit of data events. Terra's health data (activity, sleep, ...) is most of what
// reaches the webhook, and terragate applies nothing of it: it records the delivery in the
// inbox and enqueues its relay. Each such event alone cost five round trips and a commit
// (BEGIN, three inserts, COMMIT), most of the server's CPU per event. Here each is one
// statement (RecordDataEvents), and the events that arrive while others commit go together
// in one pipelined batch: one round trip, one implicit transaction, one WAL flush.
//
// A batch is all or nothing. When it fails (a value PostgreSQL refuses, a deadlock with
// another instance inserting the same keys in another order), each of its events is applied
// again alone, through the core, so that only the one at fault fails.

// Batch sizes, for data events and relay results alike: a batch of 64 two-kilobyte events is
// one round trip of about 150 KB; two batches at once let one fill while the other waits for
// its WAL flush.
const (
	groupBatch    = 64
	groupParallel = 2
)

// dataWrite is one ApplyWebhook call waiting for its batch.
type dataWrite struct {
	ctx context.Context
	dl  store.Delivery
	out store.Outcome
	err error
}

// isData reports whether dl is a delivery the group commit can take: an event terragate
// applies nothing of (it locks, reads and changes no user or session, so its outcome is always
// dataOutcome), that names no audit entry for that outcome, and whose body is small enough to
// travel whole (a large one is kept in pieces).
func (d *DB) isData(dl store.Delivery) bool {
	return d.afterApply == nil && dl.Event.Kind == store.EventIgnored && dl.Backfill == nil &&
		(dl.Relay == nil || dl.Relay.Pieces == nil) &&
		(dl.Audit == nil || len(dl.Audit(dataOutcome())) == 0)
}

// dataOutcome is what applying a data event gives, as the core's Apply gives it.
func dataOutcome() store.Outcome { return store.Outcome{Before: map[string]store.TerraUser{}} }

// ApplyWebhook records the delivery in the inbox and applies its event (core's Apply) in one
// transaction; a delivery already in the inbox changes nothing. A data event may share its
// transaction with others arriving at the same time; it returns once that has committed. A
// caller whose ctx ends meanwhile gets ctx's error, and its delivery may still be kept.
func (d *DB) ApplyWebhook(ctx context.Context, dl store.Delivery) (store.Outcome, error) {
	if !d.isData(dl) {
		return d.coreStore.ApplyWebhook(ctx, dl)
	}
	if err := store.CheckDelivery(dl); err != nil {
		return store.Outcome{}, err
	}
	w := &dataWrite{ctx: ctx, dl: dl}
	if err := d.dataCommit.Submit(ctx, w); err != nil {
		return d.ApplyResult(ctx, dl, store.Outcome{}, err)
	}
	return d.ApplyResult(ctx, dl, w.out, w.err)
}

// applyData records a batch of data events in one pipelined implicit transaction, in the
// order of their dedupe keys (two instances batching the same keys then lock them in the
// same order). When the batch fails, each event is applied again alone.
func (d *DB) applyData(ctx context.Context, batch []*dataWrite) {
	live := batch[:0:0]
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.err = err // gone before its turn: nothing written
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	slices.SortFunc(live, func(a, b *dataWrite) int { return strings.Compare(a.dl.DedupeKey, b.dl.DedupeKey) })
	now := store.StoredTime(time.Now())
	params := make([]pgdb.RecordDataEventsParams, len(live))
	for i, w := range live {
		params[i] = dataParams(w.dl, now)
	}
	rows, failed := batchRows(len(live), d.q.RecordDataEvents(ctx, params).QueryRow)
	if failed != nil {
		d.log.DebugContext(ctx, "data events applied one at a time", "events", len(live), "err", failed)
		for _, w := range live {
			w.out, w.err = d.applyAlone(w)
		}
		return
	}
	for i, w := range live {
		if rows[i].Recorded == 0 {
			w.err = core.ErrDuplicate
			continue
		}
		w.out = dataOutcome()
	}
}

// applyAlone applies one data event in a transaction of its own, as the core does for any
// delivery, and returns what the batch would have (ErrDuplicate unwrapped).
func (d *DB) applyAlone(w *dataWrite) (store.Outcome, error) {
	out, err := d.coreStore.ApplyWebhook(context.WithoutCancel(w.ctx), w.dl)
	if err == nil && out.Duplicate {
		return store.Outcome{}, core.ErrDuplicate
	}
	return out, err
}

// dataParams is RecordDataEvents' row for one delivery; each destination gets a new webhook
// id, as core's enqueue gives.
func dataParams(dl store.Delivery, now time.Time) pgdb.RecordDataEventsParams {
	p := pgdb.RecordDataEventsParams{
		DedupeKey: dl.DedupeKey, Source: string(store.SourceOf(dl)), TraceID: dl.TraceID, Type: dl.Event.Type,
		SignedAt: store.StoredTime(dl.SignedAt), ReceivedAt: store.StoredTime(dl.ReceivedAt), Body: core.NonNil(dl.Body),
		AppliedAt: &now, Destinations: []string{}, WebhookIds: []string{},
	}
	if ev := dl.Relay; ev != nil && len(ev.Destinations) > 0 {
		p.RelayBody, p.RelayType, p.RelayTraceID = core.NonNil(ev.Body), ev.Type, ev.TraceID
		p.TerraReference, p.OrderingTimestamp = ev.Reference, ev.OrderingTimestamp
		p.Destinations = ev.Destinations
		for range ev.Destinations {
			p.WebhookIds = append(p.WebhookIds, core.WebhookID())
		}
	}
	return p
}

// The relay's results go the same way: each attempt's result was a transaction of five round
// trips (BEGIN, the delivery, its event's body, the body's pieces, COMMIT), two of which the
// relay's workers paid for every delivery while ingest paid for one. FinishRelayDeliveries
// is the three as one statement, and the results that arrive together share a batch.

// finishWrite is one FinishRelayDelivery call waiting for its batch.
type finishWrite struct {
	ctx context.Context
	d   store.RelayDelivery
	r   store.RelayResult
	f   core.Finish
	ok  bool
	err error
}

// FinishRelayDelivery records how a claimed attempt ended (store.Outbox), in a transaction it
// may share with other results arriving at the same time; it returns once that has
// committed. A caller whose ctx ends meanwhile gets ctx's error, and its result may still be
// recorded.
func (d *DB) FinishRelayDelivery(ctx context.Context, dv store.RelayDelivery, r store.RelayResult) (bool, error) {
	f, err := d.FinishOf(dv, r)
	if err != nil {
		return false, err
	}
	w := &finishWrite{ctx: ctx, d: dv, r: r, f: f}
	if err := d.finishCommit.Submit(ctx, w); err != nil {
		return false, d.FinishError(ctx, dv, err)
	}
	return w.ok, w.err
}

// finishBatch records a batch of results in one pipelined implicit transaction, in the order
// of the deliveries' ids. When the batch fails, each result is recorded again alone.
func (d *DB) finishBatch(ctx context.Context, batch []*finishWrite) {
	live := batch[:0:0]
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.err = d.FinishError(w.ctx, w.d, err) // gone before its turn: nothing written
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	slices.SortFunc(live, func(a, b *finishWrite) int { return cmp.Compare(a.d.ID, b.d.ID) })
	params := make([]pgdb.FinishRelayDeliveriesParams, len(live))
	for i, w := range live {
		params[i] = pgdb.FinishRelayDeliveriesParams{
			Status: w.f.Status, NextAttemptAt: w.f.NextAttempt, LastStatusCode: w.f.StatusCode, LastError: w.f.Error,
			DeliveredAt: w.f.DeliveredAt, ID: w.d.ID, Attempts: int64(w.d.Attempts),
		}
	}
	finished, failed := batchRows(len(live), d.q.FinishRelayDeliveries(ctx, params).QueryRow)
	if failed != nil {
		d.log.DebugContext(ctx, "relay results recorded one at a time", "results", len(live), "err", failed)
		for _, w := range live {
			w.ok, w.err = d.coreStore.FinishRelayDelivery(context.WithoutCancel(w.ctx), w.d, w.r)
		}
		return
	}
	for i, w := range live {
		w.ok = finished[i] > 0
	}
}

// batchRows runs a sqlc :batchone batch of n statements through its QueryRow and returns
// each statement's row, with the first error of any (the batch is one implicit
// transaction, so one failure undoes them all).
func batchRows[T any](n int, queryRow func(func(int, T, error))) ([]T, error) {
	rows := make([]T, n)
	var first error
	queryRow(func(i int, r T, err error) {
		rows[i] = r
		if err != nil && first == nil {
			first = err
		}
	})
	return rows, first
}
