// Package backfill asks Terra for the history of new connections (BACKFILL_DAYS): the store
// records a backfill with a connection's first auth webhook, and a Worker, started by the
// gateway, works the recorded backfills after the webhook was acknowledged, within Terra's
// limits (at most 1,825 days a request, 429 honoured through Retry-After).
package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// Terra is what the worker asks Terra.
type Terra interface {
	RequestHistory(ctx context.Context, typ, userID string, start, end time.Time) error
}

// Options tune a Worker; zero values take the defaults.
type Options struct {
	// Poll is how often the worker looks for due backfills (default 5s).
	Poll time.Duration
	// Lease is how long a claimed backfill is the worker's before another may take it; it is
	// renewed after each request (default 5m).
	Lease time.Duration
	// MaxAttempts is how many claims a backfill gets before it is given up (default 10).
	MaxAttempts int
	// Retry is the wait after a failure that carries no Retry-After, doubled per attempt
	// up to an hour (default 1m).
	Retry time.Duration
}

// Worker works recorded backfills.
type Worker struct {
	terra Terra
	store store.Store
	log   *slog.Logger
	opts  Options
	wake  chan struct{}
}

// New returns a Worker.
func New(t Terra, st store.Store, log *slog.Logger, opts Options) *Worker {
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = 5 * time.Minute
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{terra: t, store: st, log: log, opts: opts, wake: make(chan struct{}, 1)}
}

// Notify tells Run that a backfill may be due now (a new connection arrived), so that it
// looks before its next Options.Poll. It never blocks.
func (w *Worker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run works due backfills until ctx ends, looking for them every Options.Poll.
func (w *Worker) Run(ctx context.Context) {
	t := time.NewTicker(w.opts.Poll)
	defer t.Stop()
	for {
		for {
			worked, err := w.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				w.log.WarnContext(ctx, "backfill failed", "err", err)
			}
			if !worked || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.wake:
		}
	}
}

// request is one Terra history request of a backfill.
type request struct {
	typ        string
	start, end time.Time
}

// requests splits a backfill into Terra requests, type by type, each window at most
// terra.MaxHistoryDays long; Backfill.Step counts them in this order.
func requests(b store.Backfill) []request {
	var out []request
	window := terra.MaxHistoryDays * 24 * time.Hour
	for _, typ := range b.Types {
		for start := b.Since; start.Before(b.Until); start = start.Add(window) {
			out = append(out, request{typ: typ, start: start, end: minTime(start.Add(window), b.Until)})
		}
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// RunOnce claims one due backfill and makes its remaining requests; worked is false when
// none was due. A 429 or failure stops it where it got to, due again after Retry-After (or
// a backoff); a connection Terra does not know, or one over MaxAttempts, is given up.
func (w *Worker) RunOnce(ctx context.Context) (worked bool, err error) {
	b, ok, err := w.store.ClaimBackfill(ctx, w.opts.Lease)
	if err != nil || !ok {
		return false, err
	}
	reqs := requests(b)
	if b.Step == 0 {
		if err := w.audit(ctx, b); err != nil {
			return true, err
		}
	}
	for b.Step < len(reqs) {
		r := reqs[b.Step]
		err := w.terra.RequestHistory(ctx, r.typ, b.UserID, r.start, r.end)
		if err != nil {
			if ctx.Err() != nil {
				return true, ctx.Err() // the lease ends and another claim goes on
			}
			return true, w.failed(ctx, b, r, err)
		}
		b.Step++
		b.LastError = ""
		b.NextAttemptAt = time.Now().Add(w.opts.Lease) // renews the lease
		if b.Step < len(reqs) {
			if err := w.store.FinishBackfill(ctx, b); err != nil {
				return true, err
			}
		}
	}
	now := time.Now()
	b.DoneAt = &now
	w.log.InfoContext(ctx, "backfill asked of Terra", "user_id", b.UserID, "requests", len(reqs))
	return true, w.store.FinishBackfill(ctx, b)
}

// failed records a failed request: the backfill is due again later, or given up.
func (w *Worker) failed(ctx context.Context, b store.Backfill, r request, cause error) error {
	b.LastError = fmt.Sprintf("%s: %v", r.typ, cause)
	switch {
	case terra.IsNotFound(cause), b.Attempts >= w.opts.MaxAttempts:
		now := time.Now()
		b.DoneAt = &now
		w.log.WarnContext(ctx, "backfill given up", "user_id", b.UserID, "step", b.Step, "attempts", b.Attempts, "err", cause)
	default:
		wait := w.opts.Retry << min(b.Attempts-1, 6)
		wait = min(wait, time.Hour)
		if ra, ok := terra.RetryAfter(cause); ok {
			wait = ra
		}
		b.NextAttemptAt = time.Now().Add(wait)
		w.log.InfoContext(ctx, "backfill paused", "user_id", b.UserID, "step", b.Step, "retry_in", wait.Round(time.Second), "err", cause)
	}
	if err := w.store.FinishBackfill(ctx, b); err != nil {
		return errors.Join(err, fmt.Errorf("backfill of %s: %w", b.UserID, cause))
	}
	return nil
}

// audit records that terragate asks Terra for a new connection's history.
func (w *Worker) audit(ctx context.Context, b store.Backfill) error {
	u, err := w.store.TerraUser(ctx, b.UserID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return w.store.AppendAudit(ctx, store.AuditEntry{
		At: time.Now().UTC(), Actor: "terragate", ActorKind: store.ActorSystem,
		Action: store.ActionBackfillRequested, Subject: b.UserID, ReferenceID: u.ReferenceID,
		Detail: map[string]string{
			"provider": u.Provider,
			"types":    strings.Join(b.Types, ","),
			"since":    b.Since.UTC().Format(time.RFC3339),
			"until":    b.Until.UTC().Format(time.RFC3339),
		},
	})
}
