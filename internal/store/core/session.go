package core

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// CreateWidgetSession stores a new session, with its audit entries in the same transaction;
// a duplicate ID or Terra session id is store.ErrConflict.
func (c *Store[U, S, E, A, L, D, R]) CreateWidgetSession(ctx context.Context, s store.WidgetSession, audit ...store.AuditEntry) error {
	w, err := c.CheckSessionWrite(s, audit...)
	if err != nil {
		return err
	}
	if len(w.audit) == 0 {
		return c.SessionWriteResult(ctx, w, w.Insert(ctx, c.write))
	}
	err = c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error { return w.Insert(ctx, tx) })
	return c.SessionWriteResult(ctx, w, err)
}

// SessionWrite is a checked new widget session and its audit entries, ready to be inserted in
// a write transaction: the engine's own (CreateWidgetSession), or one shared with other
// writes (SQLite's group commit).
type SessionWrite[U, S, E, A, L, D, R any] struct {
	c       *Store[U, S, E, A, L, D, R]
	session store.WidgetSession
	audit   []store.AuditEntry
}

// CheckSessionWrite checks a session about to be created and its audit entries, and fills
// their defaults.
func (c *Store[U, S, E, A, L, D, R]) CheckSessionWrite(s store.WidgetSession, audit ...store.AuditEntry) (SessionWrite[U, S, E, A, L, D, R], error) {
	s, err := store.CheckWidgetSession(s, c.now())
	if err != nil {
		return SessionWrite[U, S, E, A, L, D, R]{}, err
	}
	entries, err := store.CheckAudits(audit, c.now())
	if err != nil {
		return SessionWrite[U, S, E, A, L, D, R]{}, err
	}
	return SessionWrite[U, S, E, A, L, D, R]{c: c, session: s, audit: entries}, nil
}

// Session is the session as it is stored.
func (w SessionWrite[U, S, E, A, L, D, R]) Session() store.WidgetSession { return w.session }

// Insert writes the session and its audit entries with q, which must be a transaction when
// there are audit entries.
func (w SessionWrite[U, S, E, A, L, D, R]) Insert(ctx context.Context, q Queries[U, S, E, A, L, D, R]) error {
	s := w.session
	err := q.CreateWidgetSession(ctx, s.ID, s.TerraSessionID, s.ReferenceID, w.c.rows.List(s.Providers), s.Language,
		s.SuccessRedirectURL, s.FailureRedirectURL, s.URL, string(s.Status), s.Provider, s.TerraUserID,
		s.FailureReason, s.InputKey, s.ReturnUsedAt, s.ExpiresAt, s.CreatedAt, s.UpdatedAt)
	if err != nil {
		return err
	}
	return w.c.insertAudit(ctx, q, w.audit)
}

// SessionWriteResult is what CreateWidgetSession returns for w when inserting it, and
// committing, ended with err.
func (c *Store[U, S, E, A, L, D, R]) SessionWriteResult(ctx context.Context, w SessionWrite[U, S, E, A, L, D, R], err error) error {
	return c.wrap(ctx, fmt.Sprintf("create widget session %q", w.session.ID), err)
}

// WidgetSession returns one session, or store.ErrNotFound.
func (c *Store[U, S, E, A, L, D, R]) WidgetSession(ctx context.Context, id string) (store.WidgetSession, error) {
	r, err := c.read.GetWidgetSession(ctx, id)
	if err != nil {
		return store.WidgetSession{}, c.wrap(ctx, fmt.Sprintf("widget session %q", id), err)
	}
	return c.session(r), nil
}

// ReusableWidgetSession returns the end user's newest CREATED session with this input key
// that expires after liveAfter and whose return URL is unused, or store.ErrNotFound. An
// empty end user or key matches nothing: a session stored without one answers no request.
func (c *Store[U, S, E, A, L, D, R]) ReusableWidgetSession(ctx context.Context, referenceID, inputKey string, liveAfter time.Time) (store.WidgetSession, error) {
	what := fmt.Sprintf("reusable widget session of %q", referenceID)
	if referenceID == "" || inputKey == "" {
		return store.WidgetSession{}, fmt.Errorf("%s: %s: no end user or input key: %w", c.name, what, store.ErrNotFound)
	}
	r, err := c.read.ReusableWidgetSession(ctx, referenceID, inputKey, store.StoredTime(liveAfter))
	if err != nil {
		return store.WidgetSession{}, c.wrap(ctx, what, err)
	}
	return c.session(r), nil
}

// ConsumeWidgetReturn sets the session's return_used_at, once: the conditional update is what
// makes two concurrent returns (on any instances) see one winner. A second call is
// store.ErrConflict, an unknown id store.ErrNotFound.
func (c *Store[U, S, E, A, L, D, R]) ConsumeWidgetReturn(ctx context.Context, id string, at time.Time) error {
	used := store.StoredTime(at)
	err := c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		n, err := tx.ConsumeWidgetReturn(ctx, &used, id)
		if err != nil || n == 1 {
			return err
		}
		if _, err := tx.GetWidgetSession(ctx, id); err != nil {
			return err // no rows: unknown id
		}
		return fmt.Errorf("return already used: %w", store.ErrConflict)
	})
	return c.wrap(ctx, fmt.Sprintf("consume widget return %q", id), err)
}

// ExpireWidgetSessions moves every CREATED session whose expiry is at or before now to
// EXPIRED, with updated_at now, in one statement, and returns them in order of expiry.
// Sessions with an outcome never change; a session another instance expires at the same
// moment is returned by one of the two only.
func (c *Store[U, S, E, A, L, D, R]) ExpireWidgetSessions(ctx context.Context, now time.Time) ([]store.WidgetSession, error) {
	rows, err := c.write.ExpireWidgetSessions(ctx, store.StoredTime(now))
	if err != nil {
		return nil, c.wrap(ctx, "expire widget sessions", err)
	}
	sessions := make([]store.WidgetSession, 0, len(rows))
	for _, r := range rows {
		sessions = append(sessions, c.session(r))
	}
	// RETURNING gives no order.
	slices.SortFunc(sessions, func(a, b store.WidgetSession) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.ID, b.ID))
	})
	return sessions, nil
}

// TerraUser returns one Terra user, tombstones included, or store.ErrNotFound.
func (c *Store[U, S, E, A, L, D, R]) TerraUser(ctx context.Context, userID string) (store.TerraUser, error) {
	r, err := c.read.GetTerraUser(ctx, userID)
	if err != nil {
		return store.TerraUser{}, c.wrap(ctx, fmt.Sprintf("terra user %q", userID), err)
	}
	return c.user(r), nil
}

// ListTerraUsers returns the end user's Terra users, oldest connection first, leaving out
// replaced ones always and inactive ones unless includeInactive.
func (c *Store[U, S, E, A, L, D, R]) ListTerraUsers(ctx context.Context, referenceID string, includeInactive bool) ([]store.TerraUser, error) {
	list := c.read.ListActiveTerraUsers
	if includeInactive {
		list = c.read.ListTerraUsers
	}
	rows, err := list(ctx, referenceID)
	if err != nil {
		return nil, c.wrap(ctx, "list terra users", err)
	}
	return c.users(rows), nil
}

// ReferenceIDs lists, in byte order, the end users with at least one active Terra user that
// no reauth replaced.
func (c *Store[U, S, E, A, L, D, R]) ReferenceIDs(ctx context.Context) ([]string, error) {
	ids, err := c.read.ListReferenceIDs(ctx)
	if err != nil {
		return nil, c.wrap(ctx, "reference ids", err)
	}
	return ids, nil
}

// TakeLease is AcquireLease for an engine whose acquire runs its AcquireLease statement (the
// one statement whose parameters the engines type differently): it checks the request, and
// reads no row back as a lease another holder has.
func (c *Store[U, S, E, A, L, D, R]) TakeLease(ctx context.Context, name, holder string, now, until time.Time, acquire func(until, now time.Time) error) (bool, error) {
	if err := store.CheckLease(name, holder, now, until); err != nil {
		return false, err
	}
	err := acquire(store.StoredTime(until), store.StoredTime(now))
	if c.noRows(err) {
		return false, nil
	}
	if err != nil {
		return false, c.wrap(ctx, fmt.Sprintf("acquire lease %q", name), err)
	}
	return true, nil
}

// ReleaseLease gives the lease up if holder has it; otherwise it does nothing.
func (c *Store[U, S, E, A, L, D, R]) ReleaseLease(ctx context.Context, name, holder string) error {
	return c.wrap(ctx, fmt.Sprintf("release lease %q", name), c.write.ReleaseLease(ctx, name, holder))
}
