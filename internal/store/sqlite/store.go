package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite/sqlitedb"
)

// CreateWidgetSession stores a new session; a duplicate ID is store.ErrConflict.
func (d *DB) CreateWidgetSession(ctx context.Context, s store.WidgetSession, audit ...store.AuditEntry) error {
	s, err := store.CheckWidgetSession(s, d.now())
	if err != nil {
		return err
	}
	entries, err := store.CheckAudits(audit, d.now())
	if err != nil {
		return err
	}
	arg := sqlitedb.CreateWidgetSessionParams{
		ID:                 s.ID,
		TerraSessionID:     s.TerraSessionID,
		ReferenceID:        s.ReferenceID,
		Providers:          strings.Join(s.Providers, ","),
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
		return wrap(ctx, fmt.Sprintf("create widget session %q", s.ID), d.wq.CreateWidgetSession(ctx, arg))
	}
	err = d.inTx(ctx, func(q *sqlitedb.Queries) error {
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
	r, err := d.rq.GetWidgetSession(ctx, id)
	if err != nil {
		return store.WidgetSession{}, wrap(ctx, fmt.Sprintf("widget session %q", id), err)
	}
	return sessionFromRow(r), nil
}

// TerraUser returns one Terra user, tombstones included, or store.ErrNotFound.
func (d *DB) TerraUser(ctx context.Context, userID string) (store.TerraUser, error) {
	r, err := d.rq.GetTerraUser(ctx, userID)
	if err != nil {
		return store.TerraUser{}, wrap(ctx, fmt.Sprintf("terra user %q", userID), err)
	}
	return userFromRow(r), nil
}

// ListTerraUsers returns the end user's Terra users, oldest connection first, leaving out
// replaced ones always and inactive ones unless includeInactive.
func (d *DB) ListTerraUsers(ctx context.Context, referenceID string, includeInactive bool) ([]store.TerraUser, error) {
	list := d.rq.ListActiveTerraUsers
	if includeInactive {
		list = d.rq.ListTerraUsers
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
		return nil, fmt.Errorf("sqlite: inbox events: limit %d: %w", limit, store.ErrInvalid)
	}
	rows, err := d.rq.ListWebhookEvents(ctx, sqlitedb.ListWebhookEventsParams{AfterID: afterID, MaxRows: int64(limit)})
	if err != nil {
		return nil, wrap(ctx, "inbox events", err)
	}
	events := make([]store.InboxEvent, 0, len(rows))
	for _, r := range rows {
		events = append(events, inboxFromRow(r))
	}
	return events, nil
}

// errDuplicate ends applying a delivery already in the inbox.
var errDuplicate = errors.New("duplicate delivery")

// ApplyWebhook records the delivery in the inbox and applies its event (decided by
// store.Apply) in one transaction; a delivery already in the inbox changes nothing. The
// transaction may be shared with other deliveries waiting at the same time (batch.go), each
// in a savepoint of its own; it returns once that transaction has committed. A panic while
// applying is raised again here, in the caller's goroutine. A caller whose ctx ends while
// the transaction commits gets ctx's error, and its delivery may still be kept.
func (d *DB) ApplyWebhook(ctx context.Context, dl store.Delivery) (store.Outcome, error) {
	if err := store.CheckDelivery(dl); err != nil {
		return store.Outcome{}, err
	}
	what := fmt.Sprintf("apply webhook %q", dl.DedupeKey)
	p := &pending{ctx: ctx, dl: dl, done: make(chan result, 1)}
	if err := d.enqueue(p); err != nil {
		return store.Outcome{}, wrap(ctx, what, err)
	}
	var r result
	select {
	case r = <-p.done:
	case <-ctx.Done():
		return store.Outcome{}, wrap(ctx, what, ctx.Err())
	}
	if r.panicked != nil {
		panic(r.panicked.v)
	}
	switch err := r.err; {
	case errors.Is(err, errDuplicate):
		return store.Outcome{Duplicate: true}, nil
	case errors.Is(err, store.ErrInvalid) && ctx.Err() == nil:
		return store.Outcome{}, err
	case err != nil:
		return store.Outcome{}, wrap(ctx, what, err)
	}
	return r.out, nil
}

// apply is ApplyWebhook's work for one delivery: the event is decided (decideEvent), the
// inbox row written with its outcome, in one statement, and the changes saved (saveEvent).
// The inbox row comes before any change, so that a delivery already in the inbox writes
// nothing; one whose deciding fails may be one too, which the batcher checks (applyBatch).
func (d *DB) apply(ctx context.Context, q *sqlitedb.Queries, dl store.Delivery) (store.Outcome, error) {
	now := d.now()
	dec, err := d.decideEvent(ctx, q, dl, now)
	if err != nil {
		return store.Outcome{}, err
	}
	recorded := string(store.OutcomeOf(dl.Event.Kind, dec.changes))
	appliedAt := store.StoredTime(now)
	n, err := q.InsertAppliedWebhookEvent(ctx, sqlitedb.InsertAppliedWebhookEventParams{
		DedupeKey:  dl.DedupeKey,
		Source:     string(store.SourceOf(dl)),
		TraceID:    dl.TraceID,
		Type:       dl.Event.Type,
		Kind:       string(dl.Event.Kind),
		SignedAt:   store.StoredTime(dl.SignedAt),
		ReceivedAt: store.StoredTime(dl.ReceivedAt),
		Body:       nonNil(dl.Body),
		AppliedAt:  &appliedAt,
		Outcome:    &recorded,
	})
	if err != nil {
		return store.Outcome{}, fmt.Errorf("insert inbox row: %w", err)
	}
	if n == 0 {
		return store.Outcome{}, errDuplicate
	}
	return d.saveEvent(ctx, q, dl, dec, now)
}

// decision is what decideEvent loaded and decided for one delivery, for saveEvent.
type decision struct {
	cur     store.Current
	changes store.Changes
}

// applyEvent applies a delivery's event, the part of ApplyWebhook that ReplayDeadLetter
// shares: it loads the rows the event touches, lets store.Apply decide, saves what changes,
// and says what the inbox row should record. now stamps what changes.
func (d *DB) applyEvent(ctx context.Context, q *sqlitedb.Queries, dl store.Delivery, now time.Time) (store.Outcome, store.InboxOutcome, error) {
	dec, err := d.decideEvent(ctx, q, dl, now)
	if err != nil {
		return store.Outcome{}, "", err
	}
	out, err := d.saveEvent(ctx, q, dl, dec, now)
	if err != nil {
		return store.Outcome{}, "", err
	}
	return out, store.OutcomeOf(dl.Event.Kind, dec.changes), nil
}

// decideEvent loads the rows a delivery's event touches and lets store.Apply decide what
// changes; it writes nothing.
func (d *DB) decideEvent(ctx context.Context, q *sqlitedb.Queries, dl store.Delivery, now time.Time) (decision, error) {
	cur := store.Current{Users: map[string]store.TerraUser{}}
	for _, userID := range store.UserIDs(dl.Event) {
		r, err := q.GetTerraUser(ctx, userID)
		switch {
		case err == nil:
			cur.Users[userID] = userFromRow(r)
		case !errors.Is(err, sql.ErrNoRows):
			return decision{}, fmt.Errorf("load terra user %q: %w", userID, err)
		}
	}
	if m, ok := store.MatchSession(dl); ok {
		s, err := findSession(ctx, q, m)
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

// saveEvent saves what decideEvent decided, with the delivery's audit entries, and returns
// the rows as saved.
func (d *DB) saveEvent(ctx context.Context, q *sqlitedb.Queries, dl store.Delivery, dec decision, now time.Time) (store.Outcome, error) {
	cur, ch := dec.cur, dec.changes
	var out store.Outcome
	for _, u := range ch.Users {
		p := saveParams(u)
		if err := q.SaveTerraUser(ctx, p); err != nil {
			return store.Outcome{}, fmt.Errorf("save terra user %q: %w", u.UserID, err)
		}
		// The row as saved, as a read would give it: the statement stores the values given.
		out.Users = append(out.Users, userFromRow(sqlitedb.TerraUser(p)))
	}
	out.Session = cur.Session
	out.Before = cur.Users
	if s := ch.Session; s != nil {
		r, err := q.UpdateWidgetSessionOutcome(ctx, sqlitedb.UpdateWidgetSessionOutcomeParams{
			ID:            s.ID,
			Status:        string(s.Status),
			Provider:      s.Provider,
			TerraUserID:   s.TerraUserID,
			FailureReason: s.FailureReason,
			UpdatedAt:     store.StoredTime(s.UpdatedAt),
		})
		if err != nil {
			return store.Outcome{}, fmt.Errorf("save widget session %q: %w", s.ID, err)
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
			return store.Outcome{}, fmt.Errorf("audit %s: %w", e.Action, err)
		}
	}
	if d.afterApply != nil {
		if err := d.afterApply(); err != nil {
			return store.Outcome{}, err
		}
	}
	return out, nil
}

// RecordDeadLetter keeps the delivery as a dead letter (outcome failed, the reason as
// store.ErrorText cleans it), applying nothing; a delivery already in the inbox returns its
// row unchanged.
func (d *DB) RecordDeadLetter(ctx context.Context, dl store.Delivery, reason string) (store.InboxEvent, error) {
	reason, err := store.CheckDeadLetter(dl, reason)
	if err != nil {
		return store.InboxEvent{}, err
	}
	var r sqlitedb.WebhookEvent
	err = d.inTx(ctx, func(q *sqlitedb.Queries) error {
		var err error
		r, err = q.InsertDeadLetter(ctx, sqlitedb.InsertDeadLetterParams{
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
		if errors.Is(err, sql.ErrNoRows) {
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
	r, err := d.rq.GetWebhookEvent(ctx, id)
	if err != nil {
		return store.InboxEvent{}, wrap(ctx, fmt.Sprintf("webhook event %d", id), err)
	}
	return inboxFromRow(r), nil
}

// ReplayDeadLetter applies dl on the dead letter id as ApplyWebhook would (applyEvent) and
// records the result on that row, in one transaction. The single writer and IMMEDIATE
// transactions make concurrent replays of one row run one after the other: the second finds
// it replayed. Applying runs in a savepoint, so that when it fails again with
// store.ErrInvalid what it wrote is undone and the failure is still recorded.
func (d *DB) ReplayDeadLetter(ctx context.Context, id int64, dl store.Delivery, audit ...store.AuditEntry) (store.Outcome, error) {
	what := fmt.Sprintf("replay dead letter %d", id)
	for _, succeeded := range []bool{true, false} {
		if _, err := store.ReplayAudits(audit, succeeded, d.now()); err != nil {
			return store.Outcome{}, err
		}
	}
	var out store.Outcome
	var failed error
	err := d.inSQLTx(ctx, func(tx *sql.Tx) error {
		q := d.wq.WithTx(tx)
		r, err := q.GetWebhookEvent(ctx, id)
		if err != nil {
			return err
		}
		if err := store.CheckReplay(inboxFromRow(r), dl); err != nil {
			return err
		}
		now := store.StoredTime(d.now())
		arg := sqlitedb.RecordReplayParams{ID: id, Type: dl.Event.Type, Kind: string(dl.Event.Kind), ReplayedAt: &now}
		var outcome store.InboxOutcome
		err = savepoint(ctx, tx, func() error {
			var err error
			out, outcome, err = d.applyEvent(ctx, q, dl, now)
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
		return store.Outcome{}, fmt.Errorf("sqlite: %s: %w", what, err)
	case err != nil:
		return store.Outcome{}, wrap(ctx, what, err)
	case failed != nil:
		return store.Outcome{}, fmt.Errorf("sqlite: %s: %w", what, failed)
	}
	return out, nil
}

// findSession finds the session an event is recorded against, or nil.
func findSession(ctx context.Context, q *sqlitedb.Queries, m store.SessionMatch) (*store.WidgetSession, error) {
	for _, id := range m.IDs {
		for _, get := range []func(context.Context, string) (sqlitedb.WidgetSession, error){
			q.GetWidgetSession, q.GetWidgetSessionByTerraID,
		} {
			r, err := get(ctx, id)
			if err == nil {
				s := sessionFromRow(r)
				return &s, nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("load widget session %q: %w", id, err)
			}
		}
	}
	if m.ReferenceID == "" {
		return nil, nil
	}
	r, err := q.LatestWaitingWidgetSession(ctx, sqlitedb.LatestWaitingWidgetSessionParams{
		ReferenceID: m.ReferenceID,
		CreatedBy:   m.CreatedBy,
		AliveAt:     m.AliveAt,
	})
	if errors.Is(err, sql.ErrNoRows) {
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
		return store.WidgetSession{}, fmt.Errorf("sqlite: %s: no end user or input key: %w", what, store.ErrNotFound)
	}
	r, err := d.rq.ReusableWidgetSession(ctx, sqlitedb.ReusableWidgetSessionParams{
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
// makes two concurrent returns see one winner. A second call is store.ErrConflict, an unknown
// id store.ErrNotFound.
func (d *DB) ConsumeWidgetReturn(ctx context.Context, id string, at time.Time) error {
	what := fmt.Sprintf("consume widget return %q", id)
	used := store.StoredTime(at)
	err := d.inTx(ctx, func(q *sqlitedb.Queries) error {
		n, err := q.ConsumeWidgetReturn(ctx, sqlitedb.ConsumeWidgetReturnParams{ID: id, ReturnUsedAt: &used})
		if err != nil || n == 1 {
			return err
		}
		if _, err := q.GetWidgetSession(ctx, id); err != nil {
			return err // sql.ErrNoRows: unknown id
		}
		return fmt.Errorf("return already used: %w", store.ErrConflict)
	})
	return wrap(ctx, what, err)
}

// ExpireWidgetSessions moves every CREATED session whose expiry is at or before now to
// EXPIRED, with updated_at now, in one statement, and returns them in order of expiry.
// Sessions with an outcome never change.
func (d *DB) ExpireWidgetSessions(ctx context.Context, now time.Time) ([]store.WidgetSession, error) {
	rows, err := d.wq.ExpireWidgetSessions(ctx, store.StoredTime(now))
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
	ids, err := d.rq.ListReferenceIDs(ctx)
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
	_, err := d.wq.AcquireLease(ctx, sqlitedb.AcquireLeaseParams{
		Name:   name,
		Holder: holder,
		Until:  store.StoredTime(until),
		Now:    store.StoredTime(now),
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap(ctx, fmt.Sprintf("acquire lease %q", name), err)
	}
	return true, nil
}

// ReleaseLease gives the lease up if holder has it; otherwise it does nothing.
func (d *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	err := d.wq.ReleaseLease(ctx, sqlitedb.ReleaseLeaseParams{Name: name, Holder: holder})
	return wrap(ctx, fmt.Sprintf("release lease %q", name), err)
}
