package core

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// RelayRow is a relay_deliveries row; both engines' tables have its columns in this order.
type RelayRow struct {
	ID                int64
	EventID           int64
	Destination       string
	WebhookID         string
	EventType         string
	TraceID           string
	TerraReference    string
	OrderingTimestamp string
	Status            string
	Attempts          int64
	NextAttemptAt     *time.Time
	LastStatusCode    *int64
	LastError         string
	DeliveredAt       *time.Time
	CreatedAt         time.Time
	LeasedUntil       *time.Time
}

func (c *Store[U, S, E, A, L, D, R]) relay(row R) store.RelayDelivery {
	r := c.rows.Relay(row)
	d := store.RelayDelivery{
		ID: r.ID, EventID: r.EventID, Destination: r.Destination, WebhookID: r.WebhookID,
		EventType: r.EventType, TraceID: r.TraceID, Reference: r.TerraReference,
		OrderingTimestamp: r.OrderingTimestamp, Status: store.RelayStatus(r.Status),
		Attempts: int(r.Attempts), NextAttemptAt: utcPtr(r.NextAttemptAt), LastError: r.LastError,
		DeliveredAt: utcPtr(r.DeliveredAt), CreatedAt: utc(r.CreatedAt),
	}
	if r.LastStatusCode != nil {
		code := int(*r.LastStatusCode)
		d.LastStatusCode = &code
	}
	return d
}

func (c *Store[U, S, E, A, L, D, R]) relays(rows []R) []store.RelayDelivery {
	out := make([]store.RelayDelivery, 0, len(rows))
	for _, r := range rows {
		out = append(out, c.relay(r))
	}
	return out
}

// WebhookID is a new Standard Webhooks message id: "msg_" and 128 random bits.
func WebhookID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// enqueueRelay keeps ev's body and one delivery per destination, due at once, in tx: the
// transaction that records the delivery in the inbox. Nothing is kept without a destination.
func (c *Store[U, S, E, A, L, D, R]) enqueueRelay(ctx context.Context, tx Tx[U, S, E, A, L, D, R], ev *store.RelayEvent, now time.Time) error {
	if ev == nil || len(ev.Destinations) == 0 {
		return nil
	}
	now = store.StoredTime(now)
	var id int64
	var err error
	if ev.Pieces != nil {
		id, err = c.insertPieces(ctx, tx, ev.Pieces, now)
	} else {
		id, err = tx.InsertRelayEvent(ctx, NonNil(ev.Body), now)
	}
	if err != nil {
		return fmt.Errorf("insert relay event: %w", err)
	}
	for _, dest := range ev.Destinations {
		err := tx.InsertRelayDelivery(ctx, id, dest, WebhookID(), ev.Type, ev.TraceID, ev.Reference, ev.OrderingTimestamp, &now, now)
		if err != nil {
			return fmt.Errorf("insert relay delivery to %q: %w", dest, err)
		}
	}
	return nil
}

// insertPieces keeps a large body's pieces, one statement each: the pieces are bounded, and
// read from where the caller staged them, so the transaction holds one piece at a time.
func (c *Store[U, S, E, A, L, D, R]) insertPieces(ctx context.Context, tx Tx[U, S, E, A, L, D, R], p store.Pieces, now time.Time) (int64, error) {
	if p.Count() < 1 {
		return 0, fmt.Errorf("a streamed body without pieces: %w", store.ErrInvalid)
	}
	id, err := tx.InsertStreamedRelayEvent(ctx, int64(p.Count()), now)
	if err != nil {
		return 0, err
	}
	seq := int64(0)
	err = p.Each(func(piece []byte) error {
		if err := tx.InsertRelayPiece(ctx, id, seq, piece); err != nil {
			return fmt.Errorf("piece %d: %w", seq, err)
		}
		seq++
		return nil
	})
	if err == nil && seq != int64(p.Count()) {
		err = fmt.Errorf("%d pieces of %d: %w", seq, p.Count(), store.ErrInvalid)
	}
	return id, err
}

// RelayPieces says how many pieces a relay event's body is kept in (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) RelayPieces(ctx context.Context, eventID int64) (int, error) {
	n, err := c.read.GetRelayPieces(ctx, eventID)
	if err != nil {
		return 0, c.wrap(ctx, fmt.Sprintf("relay event %d", eventID), err)
	}
	return int(n), nil
}

// RelayPiece returns one piece of a relay event's body (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) RelayPiece(ctx context.Context, eventID int64, seq int) ([]byte, error) {
	piece, err := c.read.GetRelayPiece(ctx, eventID, int64(seq))
	if err != nil {
		return nil, c.wrap(ctx, fmt.Sprintf("relay event %d piece %d", eventID, seq), err)
	}
	return piece, nil
}

// ClaimRelayDeliveries claims due deliveries of one destination (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) ClaimRelayDeliveries(ctx context.Context, destination string, now, leaseUntil time.Time, max int) ([]store.RelayDelivery, error) {
	if max < 1 {
		return nil, nil
	}
	now, leaseUntil = store.StoredTime(now), store.StoredTime(leaseUntil)
	// One statement, atomic on its own: a transaction around it would only add BEGIN and
	// COMMIT, two round trips on PostgreSQL for each claim.
	rows, err := c.write.ClaimRelayDeliveries(ctx, &leaseUntil, destination, &now, int64(max))
	if err != nil {
		return nil, c.wrap(ctx, fmt.Sprintf("claim relay deliveries to %q", destination), err)
	}
	return c.relays(rows), nil
}

// ResumeRelayDeliveries makes a destination's waiting retries due now (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) ResumeRelayDeliveries(ctx context.Context, destination string, now time.Time) (int64, error) {
	now = store.StoredTime(now)
	var n int64
	err := c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		var err error
		n, err = tx.ResumeRelayDeliveries(ctx, &now, destination)
		return err
	})
	if err != nil {
		return 0, c.wrap(ctx, fmt.Sprintf("resume relay deliveries to %q", destination), err)
	}
	return n, nil
}

// RelayBody returns a relay event's body kept inline, or store.ErrNotFound (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) RelayBody(ctx context.Context, eventID int64) ([]byte, error) {
	body, err := c.read.GetRelayBody(ctx, eventID)
	if err == nil && body == nil {
		return nil, fmt.Errorf("%s: relay event %d: no body kept inline: %w", c.name, eventID, store.ErrNotFound)
	}
	if err != nil {
		return nil, c.wrap(ctx, fmt.Sprintf("relay event %d", eventID), err)
	}
	return body, nil
}

// Finish is what FinishRelayDelivery writes of one attempt's result, as its statement takes
// it.
type Finish struct {
	Status      string
	NextAttempt *time.Time // when PENDING
	StatusCode  *int64     // the backend's answer, if any
	Error       string     // cleaned by store.ErrorText
	DeliveredAt *time.Time // when DELIVERED
}

// FinishOf checks r and returns what recording it writes.
func (c *Store[U, S, E, A, L, D, R]) FinishOf(d store.RelayDelivery, r store.RelayResult) (Finish, error) {
	f := Finish{Status: string(r.Status), Error: store.ErrorText(r.Error)}
	at := store.StoredTime(r.At)
	switch r.Status {
	case store.RelayDelivered:
		f.DeliveredAt = &at
	case store.RelayPending:
		n := store.StoredTime(r.NextAttempt)
		f.NextAttempt = &n
	case store.RelayFailed:
	default:
		return Finish{}, fmt.Errorf("%s: finish relay delivery %d: status %q: %w", c.name, d.ID, r.Status, store.ErrInvalid)
	}
	if r.StatusCode != 0 {
		n := int64(r.StatusCode)
		f.StatusCode = &n
	}
	return f, nil
}

// FinishRelayDelivery records how a claimed attempt ended (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) FinishRelayDelivery(ctx context.Context, d store.RelayDelivery, r store.RelayResult) (bool, error) {
	f, err := c.FinishOf(d, r)
	if err != nil {
		return false, err
	}
	var ok bool
	err = c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		n, err := tx.FinishRelayDelivery(ctx, f.Status, f.NextAttempt, f.StatusCode, f.Error, f.DeliveredAt, d.ID, int64(d.Attempts))
		if err != nil || n == 0 {
			return err
		}
		ok = true
		if r.Status == store.RelayDelivered {
			if err := tx.DropDeliveredRelayBody(ctx, d.EventID); err != nil {
				return err
			}
			return tx.DeleteDroppedRelayPieces(ctx, d.EventID)
		}
		return nil
	})
	if err != nil {
		return false, c.FinishError(ctx, d, err)
	}
	return ok, nil
}

// FinishError is FinishRelayDelivery's error for err, with its kind and context.
func (c *Store[U, S, E, A, L, D, R]) FinishError(ctx context.Context, d store.RelayDelivery, err error) error {
	return c.wrap(ctx, fmt.Sprintf("finish relay delivery %d", d.ID), err)
}

// ReplayRelayDelivery puts a dead letter back to PENDING (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) ReplayRelayDelivery(ctx context.Context, id int64, now time.Time, audit ...store.AuditEntry) (store.RelayDelivery, error) {
	what := fmt.Sprintf("replay relay delivery %d", id)
	audit, err := store.ReplayAudits(audit, true, now)
	if err != nil {
		return store.RelayDelivery{}, err
	}
	now = store.StoredTime(now)
	var row R
	err = c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		cur, err := tx.GetRelayDelivery(ctx, id)
		if err != nil {
			return err
		}
		d := c.relay(cur)
		if d.Status != store.RelayFailed {
			return fmt.Errorf("status %s, not a dead letter: %w", d.Status, store.ErrConflict)
		}
		body, err := tx.GetRelayBody(ctx, d.EventID)
		if err != nil {
			return err
		}
		pieces, err := tx.GetRelayPieces(ctx, d.EventID)
		if err != nil {
			return err
		}
		if body == nil && pieces == 0 {
			return fmt.Errorf("the event's body is no longer kept (RELAY_RETENTION): %w", store.ErrConflict)
		}
		if row, err = tx.ReplayRelayDelivery(ctx, &now, id); err != nil {
			return err
		}
		return c.insertAudit(ctx, tx, audit)
	})
	switch {
	case err != nil && ctx.Err() == nil && errors.Is(err, store.ErrConflict):
		return store.RelayDelivery{}, fmt.Errorf("%s: %s: %w", c.name, what, err)
	case err != nil:
		return store.RelayDelivery{}, c.wrap(ctx, what, err)
	}
	return c.relay(row), nil
}

// ListRelayDeliveries returns a page of the delivery log (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) ListRelayDeliveries(ctx context.Context, f store.RelayFilter, p store.Page) (store.RelayPage, error) {
	q, err := store.CheckRelayQuery(f, p)
	if err != nil {
		return store.RelayPage{}, err
	}
	rows, err := c.read.ListRelayDeliveriesPage(ctx, q.BeforeID, q.Destination, string(q.Status), q.EventType, int64(q.Limit))
	if err != nil {
		return store.RelayPage{}, c.wrap(ctx, "list relay deliveries", err)
	}
	var out store.RelayPage
	out.Deliveries, out.EndCursor, out.HasNextPage = store.PageOf(c.relays(rows), p, store.RelayCursor)
	return out, nil
}

// DropExpiredRelayBodies forgets dead letters' bodies kept since before before (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) DropExpiredRelayBodies(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := c.e.InTx(ctx, func(tx Tx[U, S, E, A, L, D, R]) error {
		var err error
		n, err = tx.DropExpiredRelayBodies(ctx, store.StoredTime(before))
		if err != nil || n == 0 {
			return err
		}
		return tx.DeleteOrphanRelayPieces(ctx)
	})
	if err != nil {
		return 0, c.wrap(ctx, "drop expired relay bodies", err)
	}
	return n, nil
}

// PendingRelayDeliveries reads one destination's backlog (store.Outbox).
func (c *Store[U, S, E, A, L, D, R]) PendingRelayDeliveries(ctx context.Context, destination string) (int, time.Time, error) {
	var n int64
	var oldest time.Time
	err := c.e.InReadTx(ctx, func(q Queries[U, S, E, A, L, D, R]) error {
		var err error
		if n, err = q.CountPendingRelayDeliveries(ctx, destination); err != nil || n == 0 {
			return err
		}
		oldest, err = q.OldestPendingRelayDelivery(ctx, destination)
		return err
	})
	if err != nil {
		return 0, time.Time{}, c.wrap(ctx, fmt.Sprintf("relay backlog of %q", destination), err)
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	return int(n), utc(oldest), nil
}
