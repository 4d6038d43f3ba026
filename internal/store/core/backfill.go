package core

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// recordBackfills records dl.Backfill for each Terra user an auth event connected that was
// not stored before; a user that has a backfill keeps it (InsertBackfill does nothing).
func (c *Store[U, S, E, A, L, D, R]) recordBackfills(ctx context.Context, tx Tx[U, S, E, A, L, D, R], dl store.Delivery, out store.Outcome, now time.Time) error {
	p := dl.Backfill
	if p == nil || len(p.Types) == 0 || dl.Event.Kind != store.EventAuthSuccess {
		return nil
	}
	for _, u := range out.Users {
		if _, known := out.Before[u.UserID]; known || u.Status != store.StatusConnected {
			continue
		}
		err := tx.InsertBackfill(ctx, u.UserID, strings.Join(p.Types, ","), store.StoredTime(p.Since),
			store.StoredTime(p.Until), store.StoredTime(now))
		if err != nil {
			return fmt.Errorf("record backfill of %q: %w", u.UserID, err)
		}
	}
	return nil
}

// BackfillQueries are the backfill statements as both engines' sqlc packages generate them;
// B is their row type.
type BackfillQueries[B any] interface {
	ClaimBackfill(ctx context.Context, leaseUntil, now time.Time) (B, error)
	FinishBackfill(ctx context.Context, step int64, nextAttemptAt time.Time, lastError string, doneAt *time.Time, userID string, attempts int64) (int64, error)
	GetBackfill(ctx context.Context, userID string) (B, error)
}

// Backfills is the store's backfill queue written once: engines embed it next to their
// Store.
type Backfills[B any] struct {
	name     string
	q        BackfillQueries[B]
	row      func(B) store.Backfill
	classify func(error) (Kind, error)
	now      func() time.Time
}

// NewBackfills returns the backfill queue over an engine's write queries; row maps its
// row type, classify is its Engine.Classify, a nil now is time.Now.
func NewBackfills[B any](name string, q BackfillQueries[B], row func(B) store.Backfill, classify func(error) (Kind, error), now func() time.Time) *Backfills[B] {
	if now == nil {
		now = time.Now
	}
	return &Backfills[B]{name: name, q: q, row: row, classify: classify, now: now}
}

// ClaimBackfill implements store.Store.
func (b *Backfills[B]) ClaimBackfill(ctx context.Context, lease time.Duration) (store.Backfill, bool, error) {
	now := b.now()
	r, err := b.q.ClaimBackfill(ctx, store.StoredTime(now.Add(lease)), store.StoredTime(now))
	if err != nil {
		if kind, _ := b.classify(err); kind == NoRows && ctx.Err() == nil {
			return store.Backfill{}, false, nil
		}
		return store.Backfill{}, false, Wrap(ctx, b.name, b.classify, "claim backfill", err)
	}
	return b.row(r), true, nil
}

// FinishBackfill implements store.Store.
func (b *Backfills[B]) FinishBackfill(ctx context.Context, bf store.Backfill) error {
	var done *time.Time
	next := bf.NextAttemptAt
	if bf.DoneAt != nil {
		t := store.StoredTime(*bf.DoneAt)
		done, next = &t, t
	}
	n, err := b.q.FinishBackfill(ctx, int64(bf.Step), store.StoredTime(next), store.ErrorText(bf.LastError), done,
		bf.UserID, int64(bf.Attempts))
	if err != nil {
		return Wrap(ctx, b.name, b.classify, "finish backfill", err)
	}
	if n == 0 {
		return fmt.Errorf("%s: finish backfill of %q: claimed again since: %w", b.name, bf.UserID, store.ErrConflict)
	}
	return nil
}

// GetBackfill implements store.Store.
func (b *Backfills[B]) GetBackfill(ctx context.Context, userID string) (store.Backfill, error) {
	r, err := b.q.GetBackfill(ctx, userID)
	if err != nil {
		return store.Backfill{}, Wrap(ctx, b.name, b.classify, "get backfill", err)
	}
	return b.row(r), nil
}

// BackfillOf maps the row fields both engines' Backfill rows share.
func BackfillOf(userID, types string, since, until time.Time, step, attempts int64, next time.Time, lastError string, doneAt *time.Time, createdAt time.Time) store.Backfill {
	return store.Backfill{
		UserID: userID, Types: strings.Split(types, ","), Since: since.UTC(), Until: until.UTC(),
		Step: int(step), Attempts: int(attempts), NextAttemptAt: next.UTC(), LastError: lastError,
		DoneAt: utcPtr(doneAt), CreatedAt: createdAt.UTC(),
	}
}
