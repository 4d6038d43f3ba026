package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/postgres/pgdb"
)

// CreateWidgetSession stores a new session; a duplicate ID or Terra session id is
// store.ErrConflict.
func (d *DB) CreateWidgetSession(ctx context.Context, s store.WidgetSession, audit ...store.AuditEntry) error {
	s, err := store.CheckWidgetSession(s, d.now())
	if err != nil {
		return err
	}
	entries, err := store.CheckAudits(audit, d.now())
	if err != nil {
		return err
	}
	arg := pgdb.CreateWidgetSessionParams{
		ID:                 s.ID,
		TerraSessionID:     s.TerraSessionID,
		ReferenceID:        s.ReferenceID,
		Providers:          listToRow(s.Providers),
		Language:           s.Language,
		SuccessRedirectURL: s.SuccessRedirectURL,
		FailureRedirectURL: s.FailureRedirectURL,
		URL:                s.URL,
		Status:             string(s.Status),
		Provider:           s.Provider,
		TerraUserID:        s.TerraUserID,
		FailureReason:      s.FailureReason,
		InputKey:           s.InputKey,
		ReturnUsedAt:       s.ReturnUsedAt,
		ExpiresAt:          s.ExpiresAt,
		CreatedAt:          s.CreatedAt,
		UpdatedAt:          s.UpdatedAt,
	}
	if len(entries) == 0 {
		return wrap(ctx, fmt.Sprintf("create widget session %q", s.ID), d.q.CreateWidgetSession(ctx, arg))
	}
	err = d.inTx(ctx, func(q *pgdb.Queries) error {
		if err := q.CreateWidgetSession(ctx, arg); err != nil {
			return err
		}
		for _, e := range entries {
			if err := q.InsertAuditEntry(ctx, auditParams(e)); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap(ctx, fmt.Sprintf("create widget session %q", s.ID), err)
}

// WidgetSession returns one session, or store.ErrNotFound.
func (d *DB) WidgetSession(ctx context.Context, id string) (store.WidgetSession, error) {
	r, err := d.q.GetWidgetSession(ctx, id)
	if err != nil {
		return store.WidgetSession{}, wrap(ctx, fmt.Sprintf("widget session %q", id), err)
	}
	return sessionFromRow(r), nil
}

// TerraUser returns one Terra user, tombstones included, or store.ErrNotFound.
func (d *DB) TerraUser(ctx context.Context, userID string) (store.TerraUser, error) {
	r, err := d.q.GetTerraUser(ctx, userID)
	if err != nil {
		return store.TerraUser{}, wrap(ctx, fmt.Sprintf("terra user %q", userID), err)
	}
	return userFromRow(r), nil
}

// ListTerraUsers returns the end user's Terra users, oldest connection first, leaving out
// replaced ones always and inactive ones unless includeInactive.
func (d *DB) ListTerraUsers(ctx context.Context, referenceID string, includeInactive bool) ([]store.TerraUser, error) {
	list := d.q.ListActiveTerraUsers
	if includeInactive {
		list = d.q.ListTerraUsers
	}
	rows, err := list(ctx, referenceID)
	if err != nil {
		return nil, wrap(ctx, "list terra users", err)
	}
	return usersFromRows(rows), nil
}

// InboxEvents returns up to limit inbox rows with an ID above afterID, oldest first.
func (d *DB) InboxEvents(ctx context.Context, afterID int64, limit int) ([]store.InboxEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: inbox events: limit %d: %w", limit, store.ErrInvalid)
	}
	rows, err := d.q.ListWebhookEvents(ctx, pgdb.ListWebhookEventsParams{
		AfterID: afterID,
		MaxRows: int32(min(limit, math.MaxInt32)),
	})
	if err != nil {
		return nil, wrap(ctx, "inbox events", err)
	}
	events := make([]store.InboxEvent, 0, len(rows))
	for _, r := range rows {
		events = append(events, inboxFromRow(r))
	}
	return events, nil
}

// errDuplicate ends the ApplyWebhook transaction of a delivery already in the inbox.
var errDuplicate = errors.New("duplicate delivery")

// applyAttempts bounds how often ApplyWebhook runs its transaction again after a deadlock or
// serialization failure, which PostgreSQL resolves by aborting one of the transactions.
const applyAttempts = 5

// ApplyWebhook records the delivery in the inbox and applies its event (decided by
// store.Apply) in one transaction; a delivery already in the inbox, even one another instance
// is applying at this moment, changes nothing.
func (d *DB) ApplyWebhook(ctx context.Context, dl store.Delivery) (store.Outcome, error) {
	if err := store.CheckDelivery(dl); err != nil {
		return store.Outcome{}, err
	}
	var out store.Outcome
	err := d.inRetriedTx(ctx, dl.DedupeKey, func(tx pgx.Tx) error {
		var err error
		out, err = d.apply(ctx, d.q.WithTx(tx), dl)
		return err
	})
	switch {
	case errors.Is(err, errDuplicate):
		return store.Outcome{Duplicate: true}, nil
	case errors.Is(err, store.ErrInvalid) && ctx.Err() == nil:
		return store.Outcome{}, err
	case err != nil:
		return store.Outcome{}, wrap(ctx, fmt.Sprintf("apply webhook %q", dl.DedupeKey), err)
	}
	return out, nil
}

// inRetriedTx runs fn in a transaction, committing if it returns nil, and runs it again after
// a deadlock or serialization failure, up to applyAttempts times. fn must start afresh on
// each run. key names the delivery in the log.
func (d *DB) inRetriedTx(ctx context.Context, key string, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, d.pool, fn)
		if !retryable(err) || attempt == applyAttempts || ctx.Err() != nil {
			return err
		}
		d.log.DebugContext(ctx, "webhook transaction retried", "dedupe_key", key, "attempt", attempt, "err", err)
	}
}

// apply is ApplyWebhook's transaction: inbox row, then the event (applyEvent), then the
// outcome on the inbox row.
//
// The inbox row comes first: a second instance with the same delivery waits on its unique
// key, then finds it taken.
func (d *DB) apply(ctx context.Context, q *pgdb.Queries, dl store.Delivery) (store.Outcome, error) {
	id, err := q.InsertWebhookEvent(ctx, pgdb.InsertWebhookEventParams{
		DedupeKey:  dl.DedupeKey,
		Source:     string(store.SourceOf(dl)),
		TraceID:    dl.TraceID,
		Type:       dl.Event.Type,
		Kind:       string(dl.Event.Kind),
		SignedAt:   store.StoredTime(dl.SignedAt),
		ReceivedAt: store.StoredTime(dl.ReceivedAt),
		Body:       nonNil(dl.Body),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Outcome{}, errDuplicate
	}
	if err != nil {
		return store.Outcome{}, fmt.Errorf("insert inbox row: %w", err)
	}
	now := d.now()
	out, outcome, err := d.applyEvent(ctx, q, dl, now)
	if err != nil {
		return store.Outcome{}, err
	}
	recorded := string(outcome)
	appliedAt := store.StoredTime(now)
	err = q.RecordWebhookOutcome(ctx, pgdb.RecordWebhookOutcomeParams{ID: id, AppliedAt: &appliedAt, Outcome: &recorded})
	if err != nil {
		return store.Outcome{}, fmt.Errorf("record outcome: %w", err)
	}
	return out, nil
}

// applyEvent applies a delivery's event, the part of ApplyWebhook that ReplayDeadLetter
// shares: locks, the rows the event touches, store.Apply, save, and what the inbox row should
// record. now stamps what changes.
//
// The Terra users are locked by id with advisory locks, in a fixed order (no deadlock between
// two deliveries): FOR UPDATE cannot lock a row that does not exist yet, and two first events
// about one user must still apply one after the other. Rows are then read FOR UPDATE, which
// also holds off the other writers of sessions (the expiry sweep, returns).
func (d *DB) applyEvent(ctx context.Context, q *pgdb.Queries, dl store.Delivery, now time.Time) (store.Outcome, store.InboxOutcome, error) {
	userIDs := store.UserIDs(dl.Event)
	if err := lockUsers(ctx, q, userIDs); err != nil {
		return store.Outcome{}, "", err
	}
	cur := store.Current{Users: map[string]store.TerraUser{}}
	for _, userID := range userIDs {
		r, err := q.LockTerraUser(ctx, userID)
		switch {
		case err == nil:
			cur.Users[userID] = userFromRow(r)
		case !errors.Is(err, pgx.ErrNoRows):
			return store.Outcome{}, "", fmt.Errorf("load terra user %q: %w", userID, err)
		}
	}
	if m, ok := store.MatchSession(dl); ok {
		s, err := findSession(ctx, q, m)
		if err != nil {
			return store.Outcome{}, "", err
		}
		cur.Session = s
	}

	ch, err := store.Apply(dl, cur, now)
	if err != nil {
		return store.Outcome{}, "", err
	}
	var out store.Outcome
	for _, u := range ch.Users {
		r, err := q.UpsertTerraUser(ctx, upsertParams(u))
		if err != nil {
			return store.Outcome{}, "", fmt.Errorf("save terra user %q: %w", u.UserID, err)
		}
		out.Users = append(out.Users, userFromRow(r))
	}
	out.Session = cur.Session
	out.Before = cur.Users
	if s := ch.Session; s != nil {
		r, err := q.UpdateWidgetSessionOutcome(ctx, pgdb.UpdateWidgetSessionOutcomeParams{
			ID:            s.ID,
			Status:        string(s.Status),
			Provider:      s.Provider,
			TerraUserID:   s.TerraUserID,
			FailureReason: s.FailureReason,
			UpdatedAt:     store.StoredTime(s.UpdatedAt),
		})
		if err != nil {
			return store.Outcome{}, "", fmt.Errorf("save widget session %q: %w", s.ID, err)
		}
		saved := sessionFromRow(r)
		out.Session = &saved
		out.SessionChanged = true
	}
	entries, refused := store.DeliveryAudit(dl, out, now)
	for _, err := range refused {
		d.log.ErrorContext(ctx, "audit entry not recorded", "err", err) // the error names the action
	}
	for _, e := range entries {
		if err := q.InsertAuditEntry(ctx, auditParams(e)); err != nil {
			return store.Outcome{}, "", fmt.Errorf("audit %s: %w", e.Action, err)
		}
	}
	if d.afterApply != nil {
		if err := d.afterApply(); err != nil {
			return store.Outcome{}, "", err
		}
	}
	return out, store.OutcomeOf(dl.Event.Kind, ch), nil
}

// RecordDeadLetter keeps the delivery as a dead letter (outcome failed, the reason as
// store.ErrorText cleans it), applying nothing; a delivery already in the inbox, even one
// another instance is recording at this moment, returns its row unchanged.
func (d *DB) RecordDeadLetter(ctx context.Context, dl store.Delivery, reason string) (store.InboxEvent, error) {
	reason, err := store.CheckDeadLetter(dl, reason)
	if err != nil {
		return store.InboxEvent{}, err
	}
	var r pgdb.WebhookEvent
	err = d.inTx(ctx, func(q *pgdb.Queries) error {
		var err error
		r, err = q.InsertDeadLetter(ctx, pgdb.InsertDeadLetterParams{
			DedupeKey:  dl.DedupeKey,
			Source:     string(store.SourceOf(dl)),
			TraceID:    dl.TraceID,
			Type:       dl.Event.Type,
			Kind:       string(dl.Event.Kind),
			SignedAt:   store.StoredTime(dl.SignedAt),
			ReceivedAt: store.StoredTime(dl.ReceivedAt),
			Body:       nonNil(dl.Body),
			Error:      reason,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			// The insert waited for any transaction holding the key; this statement's
			// snapshot sees what it committed.
			r, err = q.GetWebhookEventByDedupeKey(ctx, dl.DedupeKey)
		}
		return err
	})
	if err != nil {
		return store.InboxEvent{}, wrap(ctx, fmt.Sprintf("record dead letter %q", dl.DedupeKey), err)
	}
	return inboxFromRow(r), nil
}

// WebhookEvent returns one inbox row, or store.ErrNotFound.
func (d *DB) WebhookEvent(ctx context.Context, id int64) (store.InboxEvent, error) {
	r, err := d.q.GetWebhookEvent(ctx, id)
	if err != nil {
		return store.InboxEvent{}, wrap(ctx, fmt.Sprintf("webhook event %d", id), err)
	}
	return inboxFromRow(r), nil
}

// ReplayDeadLetter applies dl on the dead letter id as ApplyWebhook would (applyEvent) and
// records the result on that row, in one transaction. The row is locked first, so that of
// two replays of it (on any instances) the second waits and then finds it replayed. Applying
// runs in a savepoint, so that when it fails again with store.ErrInvalid what it wrote is
// undone (and a refused statement no longer aborts the transaction) and the failure is still
// recorded.
func (d *DB) ReplayDeadLetter(ctx context.Context, id int64, dl store.Delivery, audit ...store.AuditEntry) (store.Outcome, error) {
	what := fmt.Sprintf("replay dead letter %d", id)
	for _, succeeded := range []bool{true, false} {
		if _, err := store.ReplayAudits(audit, succeeded, d.now()); err != nil {
			return store.Outcome{}, err
		}
	}
	var out store.Outcome
	var failed error
	err := d.inRetriedTx(ctx, dl.DedupeKey, func(tx pgx.Tx) error {
		out, failed = store.Outcome{}, nil
		q := d.q.WithTx(tx)
		r, err := q.LockWebhookEvent(ctx, id)
		if err != nil {
			return err
		}
		if err := store.CheckReplay(inboxFromRow(r), dl); err != nil {
			return err
		}
		now := store.StoredTime(d.now())
		arg := pgdb.RecordReplayParams{ID: id, Type: dl.Event.Type, Kind: string(dl.Event.Kind), ReplayedAt: &now}
		var outcome store.InboxOutcome
		err = savepoint(ctx, tx, func(sp pgx.Tx) error {
			var err error
			out, outcome, err = d.applyEvent(ctx, d.q.WithTx(sp), dl, now)
			return err
		})
		switch {
		case err == nil:
			recorded := string(outcome)
			arg.Outcome, arg.AppliedAt = &recorded, &now
		case errors.Is(wrap(ctx, what, err), store.ErrInvalid) && ctx.Err() == nil:
			out, failed = store.Outcome{}, refusal(err)
			recorded := string(store.InboxFailed)
			arg.Outcome, arg.Error = &recorded, store.ErrorText(failed.Error())
			arg.Type, arg.Kind = r.Type, r.Kind // the row keeps the decoding it failed with
		default:
			return err
		}
		n, err := q.RecordReplay(ctx, arg)
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
		for _, e := range entries {
			if err := q.InsertAuditEntry(ctx, auditParams(e)); err != nil {
				return fmt.Errorf("audit %s: %w", e.Action, err)
			}
		}
		return nil
	})
	switch {
	case (errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict)) && ctx.Err() == nil:
		return store.Outcome{}, fmt.Errorf("postgres: %s: %w", what, err)
	case err != nil:
		return store.Outcome{}, wrap(ctx, what, err)
	case failed != nil:
		return store.Outcome{}, fmt.Errorf("postgres: %s: %w", what, failed)
	}
	return out, nil
}

// savepoint runs fn in a savepoint of tx (pgx's nested transaction). When fn fails, what it
// wrote is undone and the transaction can go on; if even that fails, the error no longer
// carries fn's, so that the caller rolls the whole transaction back instead of going on.
func savepoint(ctx context.Context, tx pgx.Tx, fn func(sp pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(sp); err != nil {
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return fmt.Errorf("%v; roll back to savepoint: %w", err, rbErr)
		}
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// lockUsers takes the transaction's advisory lock of each Terra user, in ascending key order.
func lockUsers(ctx context.Context, q *pgdb.Queries, userIDs []string) error {
	keys := make([]int64, 0, len(userIDs))
	for _, id := range userIDs {
		keys = append(keys, lockID("terra user "+id))
	}
	slices.Sort(keys)
	for _, key := range slices.Compact(keys) {
		if err := q.LockKey(ctx, key); err != nil {
			return fmt.Errorf("lock terra users: %w", err)
		}
	}
	return nil
}

// findSession finds and locks the session an event is recorded against, or returns nil.
func findSession(ctx context.Context, q *pgdb.Queries, m store.SessionMatch) (*store.WidgetSession, error) {
	for _, id := range m.IDs {
		for _, get := range []func(context.Context, string) (pgdb.WidgetSession, error){
			q.LockWidgetSession, q.GetWidgetSessionByTerraID,
		} {
			r, err := get(ctx, id)
			if err == nil {
				s := sessionFromRow(r)
				return &s, nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return nil, fmt.Errorf("load widget session %q: %w", id, err)
			}
		}
	}
	if m.ReferenceID == "" {
		return nil, nil
	}
	r, err := q.LatestWaitingWidgetSession(ctx, pgdb.LatestWaitingWidgetSessionParams{
		ReferenceID: m.ReferenceID,
		CreatedBy:   m.CreatedBy,
		AliveAt:     m.AliveAt,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find widget session: %w", err)
	}
	s := sessionFromRow(r)
	return &s, nil
}

// nonNil keeps an empty body from being stored as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ReusableWidgetSession returns the end user's newest CREATED session with this input key
// that expires after liveAfter and whose return URL is unused, or store.ErrNotFound. An
// empty end user or key matches nothing: a session stored without one answers no request.
func (d *DB) ReusableWidgetSession(ctx context.Context, referenceID, inputKey string, liveAfter time.Time) (store.WidgetSession, error) {
	what := fmt.Sprintf("reusable widget session of %q", referenceID)
	if referenceID == "" || inputKey == "" {
		return store.WidgetSession{}, fmt.Errorf("postgres: %s: no end user or input key: %w", what, store.ErrNotFound)
	}
	r, err := d.q.ReusableWidgetSession(ctx, pgdb.ReusableWidgetSessionParams{
		ReferenceID: referenceID,
		InputKey:    inputKey,
		LiveAfter:   store.StoredTime(liveAfter),
	})
	if err != nil {
		return store.WidgetSession{}, wrap(ctx, what, err)
	}
	return sessionFromRow(r), nil
}

// ConsumeWidgetReturn sets the session's return_used_at, once: the conditional update is what
// makes two concurrent returns (on any instances) see one winner. A second call is
// store.ErrConflict, an unknown id store.ErrNotFound.
func (d *DB) ConsumeWidgetReturn(ctx context.Context, id string, at time.Time) error {
	what := fmt.Sprintf("consume widget return %q", id)
	used := store.StoredTime(at)
	err := d.inTx(ctx, func(q *pgdb.Queries) error {
		n, err := q.ConsumeWidgetReturn(ctx, pgdb.ConsumeWidgetReturnParams{ID: id, ReturnUsedAt: &used})
		if err != nil || n == 1 {
			return err
		}
		if _, err := q.GetWidgetSession(ctx, id); err != nil {
			return err // pgx.ErrNoRows: unknown id
		}
		return fmt.Errorf("return already used: %w", store.ErrConflict)
	})
	return wrap(ctx, what, err)
}

// ExpireWidgetSessions moves every CREATED session whose expiry is at or before now to
// EXPIRED, with updated_at now, in one statement, and returns them in order of expiry.
// Sessions with an outcome never change; a session another instance expires at the same
// moment is returned by one of the two only.
func (d *DB) ExpireWidgetSessions(ctx context.Context, now time.Time) ([]store.WidgetSession, error) {
	rows, err := d.q.ExpireWidgetSessions(ctx, store.StoredTime(now))
	if err != nil {
		return nil, wrap(ctx, "expire widget sessions", err)
	}
	sessions := make([]store.WidgetSession, 0, len(rows))
	for _, r := range rows {
		sessions = append(sessions, sessionFromRow(r))
	}
	// RETURNING gives no order.
	slices.SortFunc(sessions, func(a, b store.WidgetSession) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.ID, b.ID))
	})
	return sessions, nil
}

// ReferenceIDs lists, in byte order, the end users with at least one active Terra user that
// no reauth replaced.
func (d *DB) ReferenceIDs(ctx context.Context) ([]string, error) {
	ids, err := d.q.ListReferenceIDs(ctx)
	if err != nil {
		return nil, wrap(ctx, "reference ids", err)
	}
	return ids, nil
}

// AcquireLease gives holder the named lease until until when it is free, expired at now or
// already holder's, and reports whether holder has it.
func (d *DB) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	if err := store.CheckLease(name, holder, now, until); err != nil {
		return false, err
	}
	_, err := d.q.AcquireLease(ctx, pgdb.AcquireLeaseParams{
		Name:   name,
		Holder: holder,
		Until:  store.StoredTime(until),
		Now:    store.StoredTime(now),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap(ctx, fmt.Sprintf("acquire lease %q", name), err)
	}
	return true, nil
}

// ReleaseLease gives the lease up if holder has it; otherwise it does nothing.
func (d *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	err := d.q.ReleaseLease(ctx, pgdb.ReleaseLeaseParams{Name: name, Holder: holder})
	return wrap(ctx, fmt.Sprintf("release lease %q", name), err)
}
