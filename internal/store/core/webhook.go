package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// ApplyWebhook records the delivery in the inbox and applies its event (decided by
// store.Apply) in one transaction (Apply); a delivery already in the inbox, even one another
// instance is applying at this moment, changes nothing.
func (c *Store[U, S, E, A, L, D, R]) ApplyWebhook(ctx context.Context, dl store.Delivery) (store.Outcome, error) {
	if err := store.CheckDelivery(dl); err != nil {
		return store.Outcome{}, err
	}
	var out store.Outcome
	err := c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		var err error
		out, err = c.Apply(ctx, tx, dl)
		return err
	})
	return c.ApplyResult(ctx, dl, out, err)
}

// ApplyResult is what ApplyWebhook returns once Apply gave out and err and the transaction
// ended: ErrDuplicate is an Outcome with Duplicate set, the store's refusal stands as it is,
// and any other error gets its kind and context.
func (c *Store[U, S, E, A, L, D, R]) ApplyResult(ctx context.Context, dl store.Delivery, out store.Outcome, err error) (store.Outcome, error) {
	switch {
	case errors.Is(err, ErrDuplicate):
		return store.Outcome{Duplicate: true}, nil
	case errors.Is(err, store.ErrInvalid) && ctx.Err() == nil:
		return store.Outcome{}, err
	case err != nil:
		return store.Outcome{}, c.wrap(ctx, fmt.Sprintf("apply webhook %q", dl.DedupeKey), err)
	}
	return out, nil
}

// Apply is ApplyWebhook's work for one delivery in tx: the event is decided (decide), the
// inbox row written with its outcome, in one statement, and the changes saved (save). The
// inbox row comes before any change, so that a delivery already in the inbox writes nothing
// (ErrDuplicate): on PostgreSQL, a second instance with the same delivery waits on its unique
// key, then finds it taken. A delivery whose deciding is refused is a duplicate too when its
// key is in the inbox, as it would be had the inbox been looked at first.
func (c *Store[U, S, E, A, L, D, R]) Apply(ctx context.Context, tx Tx[U, S, E, A, L, D, R], dl store.Delivery) (store.Outcome, error) {
	now := c.now()
	dec, err := c.decide(ctx, tx, dl, now)
	if errors.Is(err, store.ErrInvalid) {
		if dup, dupErr := tx.WebhookEventExists(ctx, dl.DedupeKey); dupErr != nil {
			return store.Outcome{}, fmt.Errorf("look up inbox row: %w", dupErr)
		} else if dup {
			return store.Outcome{}, ErrDuplicate
		}
	}
	if err != nil {
		return store.Outcome{}, err
	}
	recorded := string(store.OutcomeOf(dl.Event.Kind, dec.changes))
	appliedAt := store.StoredTime(now)
	n, err := tx.InsertAppliedWebhookEvent(ctx, dl.DedupeKey, string(store.SourceOf(dl)), dl.TraceID, dl.Event.Type,
		string(dl.Event.Kind), store.StoredTime(dl.SignedAt), store.StoredTime(dl.ReceivedAt), NonNil(dl.Body),
		&appliedAt, &recorded)
	if err != nil {
		return store.Outcome{}, fmt.Errorf("insert inbox row: %w", err)
	}
	if n == 0 {
		return store.Outcome{}, ErrDuplicate
	}
	if err := c.enqueueRelay(ctx, tx, dl.Relay, now); err != nil {
		return store.Outcome{}, err
	}
	return c.save(ctx, tx, dl, dec, now)
}

// decision is what decide loaded and decided for one delivery, for save.
type decision struct {
	cur     store.Current
	changes store.Changes
}

// decide locks and loads the rows a delivery's event touches and lets store.Apply decide
// what changes; it writes nothing. The Terra users are locked by id (Tx.LockUsers) before
// they are read, so that two first events about one user still apply one after the other.
func (c *Store[U, S, E, A, L, D, R]) decide(ctx context.Context, tx Tx[U, S, E, A, L, D, R], dl store.Delivery, now time.Time) (decision, error) {
	userIDs := store.UserIDs(dl.Event)
	if err := tx.LockUsers(ctx, userIDs); err != nil {
		return decision{}, fmt.Errorf("lock terra users: %w", err)
	}
	cur := store.Current{Users: map[string]store.TerraUser{}}
	for _, userID := range userIDs {
		r, err := tx.LockTerraUser(ctx, userID)
		switch {
		case err == nil:
			cur.Users[userID] = c.user(r)
		case !c.noRows(err):
			return decision{}, fmt.Errorf("load terra user %q: %w", userID, err)
		}
	}
	if m, ok := store.MatchSession(dl); ok {
		s, err := c.findSession(ctx, tx, m)
		if err != nil {
			return decision{}, err
		}
		cur.Session = s
	}
	ch, err := store.Apply(dl, cur, now)
	if err != nil {
		return decision{}, err
	}
	return decision{cur: cur, changes: ch}, nil
}

// findSession finds (and locks) the session an event is recorded against, or returns nil.
func (c *Store[U, S, E, A, L, D, R]) findSession(ctx context.Context, tx Tx[U, S, E, A, L, D, R], m store.SessionMatch) (*store.WidgetSession, error) {
	for _, id := range m.IDs {
		for _, get := range []func(context.Context, string) (S, error){tx.LockWidgetSession, tx.GetWidgetSessionByTerraID} {
			r, err := get(ctx, id)
			if err == nil {
				s := c.session(r)
				return &s, nil
			}
			if !c.noRows(err) {
				return nil, fmt.Errorf("load widget session %q: %w", id, err)
			}
		}
	}
	if m.ReferenceID == "" {
		return nil, nil
	}
	r, err := tx.LatestWaitingWidgetSession(ctx, m.ReferenceID, m.CreatedBy, m.AliveAt)
	if c.noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find widget session: %w", err)
	}
	s := c.session(r)
	return &s, nil
}

// save saves what decide decided, with the delivery's audit entries, and returns the rows as
// saved.
func (c *Store[U, S, E, A, L, D, R]) save(ctx context.Context, tx Tx[U, S, E, A, L, D, R], dl store.Delivery, dec decision, now time.Time) (store.Outcome, error) {
	cur, ch := dec.cur, dec.changes
	var out store.Outcome
	for _, u := range ch.Users {
		r := c.userRow(u)
		err := tx.SaveTerraUser(ctx, r.UserID, r.ReferenceID, r.Provider, r.Active, r.Status, r.Scopes, r.ScopesAt,
			r.ConnectedAt, r.LastWebhookUpdate, r.UpdatedAt, r.StateAt, r.ReplacedBy)
		if err != nil {
			return store.Outcome{}, fmt.Errorf("save terra user %q: %w", u.UserID, err)
		}
		// The row as saved, as a read would give it: the statement stores the values given.
		out.Users = append(out.Users, c.userOf(r))
	}
	out.Session = cur.Session
	out.Before = cur.Users
	if err := c.recordBackfills(ctx, tx, dl, out, now); err != nil {
		return store.Outcome{}, err
	}
	if s := ch.Session; s != nil {
		r, err := tx.UpdateWidgetSessionOutcome(ctx, string(s.Status), s.Provider, s.TerraUserID, s.FailureReason,
			store.StoredTime(s.UpdatedAt), s.ID)
		if err != nil {
			return store.Outcome{}, fmt.Errorf("save widget session %q: %w", s.ID, err)
		}
		saved := c.session(r)
		out.Session = &saved
		out.SessionChanged = true
	}
	entries, refused := store.DeliveryAudit(dl, out, now)
	for _, err := range refused {
		c.log.ErrorContext(ctx, "audit entry not recorded", "err", err) // the error names the action
	}
	if err := c.insertAudit(ctx, tx, entries); err != nil {
		return store.Outcome{}, err
	}
	if c.afterApply != nil {
		if err := c.afterApply(); err != nil {
			return store.Outcome{}, err
		}
	}
	return out, nil
}

// RecordDeadLetter keeps the delivery as a dead letter (outcome failed, the reason as
// store.ErrorText cleans it), applying nothing but enqueuing its relay; a delivery already
// in the inbox, even one another instance is recording at this moment, returns its row
// unchanged.
func (c *Store[U, S, E, A, L, D, R]) RecordDeadLetter(ctx context.Context, dl store.Delivery, reason string) (store.InboxEvent, error) {
	reason, err := store.CheckDeadLetter(dl, reason)
	if err != nil {
		return store.InboxEvent{}, err
	}
	var r E
	err = c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		var err error
		r, err = tx.InsertDeadLetter(ctx, dl.DedupeKey, string(store.SourceOf(dl)), dl.TraceID, dl.Event.Type,
			string(dl.Event.Kind), store.StoredTime(dl.SignedAt), store.StoredTime(dl.ReceivedAt), NonNil(dl.Body), reason)
		if c.noRows(err) {
			// The insert waited for any transaction holding the key; this statement's
			// snapshot sees what it committed.
			r, err = tx.GetWebhookEventByDedupeKey(ctx, dl.DedupeKey)
			return err
		}
		if err != nil {
			return err
		}
		// What terragate cannot apply is still Terra's event for the app's backends.
		return c.enqueueRelay(ctx, tx, dl.Relay, c.now())
	})
	if err != nil {
		return store.InboxEvent{}, c.wrap(ctx, fmt.Sprintf("record dead letter %q", dl.DedupeKey), err)
	}
	return c.event(r), nil
}

// WebhookEvent returns one inbox row, or store.ErrNotFound.
func (c *Store[U, S, E, A, L, D, R]) WebhookEvent(ctx context.Context, id int64) (store.InboxEvent, error) {
	r, err := c.read.GetWebhookEvent(ctx, id)
	if err != nil {
		return store.InboxEvent{}, c.wrap(ctx, fmt.Sprintf("webhook event %d", id), err)
	}
	return c.event(r), nil
}

// ReplayDeadLetter applies dl on the dead letter id as ApplyWebhook would (decide and save)
// and records the result on that row, in one transaction. The row is locked first, so that of
// two replays of it the second waits and then finds it replayed. Applying runs in a
// savepoint, so that when it fails again with store.ErrInvalid what it wrote is undone (and a
// refused statement no longer aborts the transaction) and the failure is still recorded.
func (c *Store[U, S, E, A, L, D, R]) ReplayDeadLetter(ctx context.Context, id int64, dl store.Delivery, audit ...store.AuditEntry) (store.Outcome, error) {
	what := fmt.Sprintf("replay dead letter %d", id)
	for _, succeeded := range []bool{true, false} {
		if _, err := store.ReplayAudits(audit, succeeded, c.now()); err != nil {
			return store.Outcome{}, err
		}
	}
	var out store.Outcome
	var failed error
	err := c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		out, failed = store.Outcome{}, nil
		row, err := tx.LockWebhookEvent(ctx, id)
		if err != nil {
			return err
		}
		r := c.rows.Event(row)
		if err := store.CheckReplay(c.event(row), dl); err != nil {
			return err
		}
		now := store.StoredTime(c.now())
		typ, kind := dl.Event.Type, string(dl.Event.Kind)
		var appliedAt *time.Time
		var recorded, reason string
		err = tx.Savepoint(ctx, func(sp Tx[U, S, E, A, L, D, R]) error {
			dec, err := c.decide(ctx, sp, dl, now)
			if err != nil {
				return err
			}
			out, err = c.save(ctx, sp, dl, dec, now)
			recorded = string(store.OutcomeOf(dl.Event.Kind, dec.changes))
			return err
		})
		switch {
		case err == nil:
			appliedAt = &now
		case errors.Is(c.wrap(ctx, what, err), store.ErrInvalid) && ctx.Err() == nil:
			out, failed = store.Outcome{}, c.refusal(err)
			recorded, reason = string(store.InboxFailed), store.ErrorText(failed.Error())
			typ, kind = r.Type, r.Kind // the row keeps the decoding it failed with
		default:
			return err
		}
		n, err := tx.RecordReplay(ctx, typ, kind, appliedAt, &recorded, reason, &now, id)
		if err == nil && n != 1 {
			err = fmt.Errorf("record replay: %d rows changed", n)
		}
		if err != nil {
			return err
		}
		entries, err := store.ReplayAudits(audit, failed == nil, now)
		if err != nil {
			return err
		}
		return c.insertAudit(ctx, tx, entries)
	})
	switch {
	case (errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict)) && ctx.Err() == nil:
		return store.Outcome{}, fmt.Errorf("%s: %s: %w", c.name, what, err)
	case err != nil:
		return store.Outcome{}, c.wrap(ctx, what, err)
	case failed != nil:
		return store.Outcome{}, fmt.Errorf("%s: %s: %w", c.name, what, failed)
	}
	return out, nil
}
