package store

import (
	"context"
	"fmt"
	"time"
)

// RelayStatus is the state of one relay delivery: one event to one destination.
type RelayStatus string

// Relay delivery states. PENDING is due at NextAttemptAt (or being attempted); DELIVERED is
// final; FAILED is a dead letter, which ReplayRelayDelivery puts back to PENDING.
const (
	RelayPending   RelayStatus = "PENDING"
	RelayDelivered RelayStatus = "DELIVERED"
	RelayFailed    RelayStatus = "FAILED"
)

// Valid reports whether s is one of the relay states.
func (s RelayStatus) Valid() bool {
	return s == RelayPending || s == RelayDelivered || s == RelayFailed
}

// RelayEvent is what ApplyWebhook enqueues for the relay with a delivery, in the same
// transaction: the body as Terra sent it and one delivery per destination. It is enqueued
// only when the delivery is recorded (not for a duplicate), and only when Destinations is
// not empty.
type RelayEvent struct {
	Type              string // Terra's event type
	TraceID           string // X-Terra-Trace-Id, when sent
	Reference         string // terra-reference, when sent
	OrderingTimestamp string // x-terra-ordering-timestamp, when sent
	Body              []byte // byte for byte (a small body; nil when Pieces holds it)
	Pieces            Pieces // a large body, in pieces; nil for a small one
	Destinations      []string
}

// Pieces is a large body already cut into bounded pieces (internal/spool), which the store
// keeps as they are and gives back one at a time (Outbox.RelayPiece).
type Pieces interface {
	// Count is the number of pieces.
	Count() int
	// Each hands every piece, in order, to fn; the slice may be reused after fn returns.
	Each(fn func(piece []byte) error) error
}

// RelayDelivery is one event to one destination, as the delivery log keeps it: never its
// body.
type RelayDelivery struct {
	ID                int64
	EventID           int64
	Destination       string
	WebhookID         string // the Standard Webhooks message id, the same on every attempt
	EventType         string
	TraceID           string
	Reference         string
	OrderingTimestamp string
	Status            RelayStatus
	Attempts          int // attempts started since it was enqueued or last replayed
	NextAttemptAt     *time.Time
	LastStatusCode    *int
	LastError         string // never anything of the body
	DeliveredAt       *time.Time
	CreatedAt         time.Time
}

// RelayResult is how one claimed attempt ended.
type RelayResult struct {
	Status      RelayStatus // DELIVERED, PENDING (due again at NextAttemptAt) or FAILED
	StatusCode  int         // the destination's answer; 0 when there was none
	Error       string      // why it failed, without anything of the body; ErrorText cuts it
	NextAttempt time.Time   // when it is due again (PENDING only)
	At          time.Time   // when the attempt ended
}

// RelayFilter narrows ListRelayDeliveries. Empty fields match any delivery.
type RelayFilter struct {
	Destination string
	Status      RelayStatus
	EventType   string
}

// RelayPage is one page of ListRelayDeliveries, newest first.
type RelayPage struct {
	Deliveries  []RelayDelivery
	EndCursor   string
	HasNextPage bool
}

// Outbox is the store's side of the relay: deliveries enqueued by ApplyWebhook, claimed by
// workers, finished, listed and replayed.
type Outbox interface {
	// ClaimRelayDeliveries claims up to max due PENDING deliveries of destination (soonest
	// first): each claim counts an attempt and makes the delivery due again at leaseUntil,
	// so that a delivery whose worker died is attempted again. On PostgreSQL several
	// instances claim side by side and never the same delivery at once.
	ClaimRelayDeliveries(ctx context.Context, destination string, now, leaseUntil time.Time, max int) ([]RelayDelivery, error)
	// ResumeRelayDeliveries makes destination's PENDING deliveries that wait for a retry due
	// at now (its backend answers again after an outage), and returns how many. Deliveries
	// with an attempt in flight keep their lease.
	ResumeRelayDeliveries(ctx context.Context, destination string, now time.Time) (int64, error)
	// RelayBody returns the body of a relay event kept inline, or ErrNotFound when it is not:
	// no longer kept, or kept in pieces (RelayPieces tells which).
	RelayBody(ctx context.Context, eventID int64) ([]byte, error)
	// RelayPieces says how many pieces a relay event's body is kept in (RelayEvent.Pieces):
	// 0 when it is kept inline (RelayBody) or no longer kept.
	RelayPieces(ctx context.Context, eventID int64) (int, error)
	// RelayPiece returns piece seq (from 0) of a relay event's body, or ErrNotFound once the
	// body is no longer kept.
	RelayPiece(ctx context.Context, eventID int64, seq int) ([]byte, error)
	// FinishRelayDelivery records how the claimed attempt d ended, and forgets the event's
	// body once every destination has it. It reports false (and changes nothing) when d is
	// no longer that attempt's: its lease ran out and it was claimed again, or replayed.
	FinishRelayDelivery(ctx context.Context, d RelayDelivery, r RelayResult) (bool, error)
	// ReplayRelayDelivery puts the dead letter id back to PENDING, due at now, its attempts
	// counted afresh, with the audit entries given in the same transaction. An unknown id
	// is ErrNotFound; a delivery that is not FAILED, or whose body is no longer kept,
	// ErrConflict (and no entry is stored).
	ReplayRelayDelivery(ctx context.Context, id int64, now time.Time, audit ...AuditEntry) (RelayDelivery, error)
	// ListRelayDeliveries returns a page of the delivery log, newest first.
	ListRelayDeliveries(ctx context.Context, f RelayFilter, p Page) (RelayPage, error)
	// PendingRelayDeliveries counts destination's PENDING deliveries and says when the
	// oldest was enqueued (zero when there is none), for the backlog metrics.
	PendingRelayDeliveries(ctx context.Context, destination string) (count int, oldest time.Time, err error)
	// DropExpiredRelayBodies forgets the bodies kept since before before that no PENDING
	// delivery needs (dead letters' bodies), and returns how many.
	DropExpiredRelayBodies(ctx context.Context, before time.Time) (int64, error)
}

// CheckRelayEvent validates what ApplyWebhook is asked to enqueue.
func CheckRelayEvent(r *RelayEvent) error {
	if r == nil || len(r.Destinations) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, d := range r.Destinations {
		if d == "" || seen[d] {
			return fmt.Errorf("relay event: destination %q empty or repeated: %w", d, ErrInvalid)
		}
		seen[d] = true
	}
	return nil
}

// RelayQuery is what an engine needs to run ListRelayDeliveries.
type RelayQuery struct {
	RelayFilter
	BeforeID int64
	Limit    int
}

// CheckRelayQuery validates a ListRelayDeliveries request and resolves its cursor.
func CheckRelayQuery(f RelayFilter, p Page) (RelayQuery, error) {
	if err := CheckPage(p); err != nil {
		return RelayQuery{}, err
	}
	if f.Status != "" && !f.Status.Valid() {
		return RelayQuery{}, &ArgumentError{Arg: "status", Reason: fmt.Sprintf("unknown status %q; want PENDING, DELIVERED or FAILED", f.Status)}
	}
	q := RelayQuery{RelayFilter: f, BeforeID: maxID, Limit: p.First + 1}
	if p.After != "" {
		c, err := decodeCursor(p.After, cursorRelay)
		if err != nil {
			return RelayQuery{}, err
		}
		q.BeforeID = c.ID
	}
	return q, nil
}

// RelayCursor is the opaque cursor that resumes ListRelayDeliveries after d.
func RelayCursor(d RelayDelivery) string {
	return encodeCursor(cursor{Kind: cursorRelay, ID: d.ID})
}
