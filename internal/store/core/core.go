// Package core is the store written once for every engine: how a webhook delivery is applied
// and recorded, how a dead letter is kept and replayed, how a widget session moves through its
// states, how the admin listings page, how rows map to the domain types and driver errors to
// store kinds. Engines (store/sqlite, store/postgres) supply only what differs: their sqlc
// package, which satisfies Queries as generated (both query sets use the same names and
// parameters), transactions, locking, batching, and which driver errors mean what.
package core

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Queries are the statements the core runs, as both engines' sqlc packages generate them.
// The type parameters are what the two do not share: their row types (U Terra users,
// S widget sessions, E inbox events, A audit entries, R relay deliveries) and how they keep a
// list (L) and an audit entry's detail (D).
type Queries[U, S, E, A, L, D, R any] interface {
	CreateWidgetSession(ctx context.Context, id, terraSessionID, referenceID string, providers L, language, successRedirectURL, failureRedirectURL, url, status, provider, terraUserID, failureReason, inputKey string, returnUsedAt *time.Time, expiresAt, createdAt, updatedAt time.Time) error
	GetWidgetSession(ctx context.Context, id string) (S, error)
	LockWidgetSession(ctx context.Context, id string) (S, error)
	GetWidgetSessionByTerraID(ctx context.Context, terraSessionID string) (S, error)
	LatestWaitingWidgetSession(ctx context.Context, referenceID string, createdBy, aliveAt time.Time) (S, error)
	ReusableWidgetSession(ctx context.Context, referenceID, inputKey string, liveAfter time.Time) (S, error)
	UpdateWidgetSessionOutcome(ctx context.Context, status, provider, terraUserID, failureReason string, updatedAt time.Time, id string) (S, error)
	ConsumeWidgetReturn(ctx context.Context, returnUsedAt *time.Time, id string) (int64, error)
	ExpireWidgetSessions(ctx context.Context, now time.Time) ([]S, error)

	GetTerraUser(ctx context.Context, userID string) (U, error)
	LockTerraUser(ctx context.Context, userID string) (U, error)
	ListActiveTerraUsers(ctx context.Context, referenceID string) ([]U, error)
	ListTerraUsers(ctx context.Context, referenceID string) ([]U, error)
	SaveTerraUser(ctx context.Context, userID, referenceID, provider string, active bool, status string, scopes L, scopesAt *time.Time, connectedAt time.Time, lastWebhookUpdate *time.Time, updatedAt, stateAt time.Time, replacedBy string) error
	ListReferenceIDs(ctx context.Context) ([]string, error)
	ListTerraUsersPage(ctx context.Context, afterAt time.Time, afterUserID, provider, status string, maxRows int64) ([]U, error)
	ListTerraUsersPageByReference(ctx context.Context, referenceID string, afterAt time.Time, afterUserID, provider, status string, maxRows int64) ([]U, error)
	CountTerraUsers(ctx context.Context, provider, status string) (int64, error)
	CountTerraUsersByReference(ctx context.Context, referenceID, provider, status string) (int64, error)

	WebhookEventExists(ctx context.Context, dedupeKey string) (bool, error)
	InsertAppliedWebhookEvent(ctx context.Context, dedupeKey, source, traceID, typ, kind string, signedAt, receivedAt time.Time, body []byte, appliedAt *time.Time, outcome *string) (int64, error)
	GetWebhookEvent(ctx context.Context, id int64) (E, error)
	LockWebhookEvent(ctx context.Context, id int64) (E, error)
	GetWebhookEventByDedupeKey(ctx context.Context, dedupeKey string) (E, error)
	InsertDeadLetter(ctx context.Context, dedupeKey, source, traceID, typ, kind string, signedAt, receivedAt time.Time, body []byte, reason string) (E, error)
	RecordReplay(ctx context.Context, typ, kind string, appliedAt *time.Time, outcome *string, reason string, replayedAt *time.Time, id int64) (int64, error)
	ListWebhookEventsPage(ctx context.Context, beforeID int64, typ, source, outcome string, maxRows int64) ([]E, error)
	ListWebhookEventsPageByType(ctx context.Context, beforeID int64, typ, source, outcome string, maxRows int64) ([]E, error)
	ListDeadLettersPage(ctx context.Context, beforeID int64, typ, source string, maxRows int64) ([]E, error)

	InsertAuditEntry(ctx context.Context, at time.Time, actor, actorKind, action, subject, referenceID, clientIP string, detail D) error
	ListAuditEntries(ctx context.Context, since, until, beforeAt time.Time, beforeID int64, referenceID, actor, action string, maxRows int64) ([]A, error)
	ListAuditEntriesByReference(ctx context.Context, since, until, beforeAt time.Time, beforeID int64, referenceID, actor, action string, maxRows int64) ([]A, error)
	ListAuditEntriesByActor(ctx context.Context, since, until, beforeAt time.Time, beforeID int64, referenceID, actor, action string, maxRows int64) ([]A, error)
	ListAuditEntriesByAction(ctx context.Context, since, until, beforeAt time.Time, beforeID int64, referenceID, actor, action string, maxRows int64) ([]A, error)

	ReleaseLease(ctx context.Context, name, holder string) error

	InsertBackfill(ctx context.Context, userID, types string, since, until, createdAt time.Time) error

	InsertRelayEvent(ctx context.Context, body []byte, createdAt time.Time) (int64, error)
	InsertRelayDelivery(ctx context.Context, eventID int64, destination, webhookID, eventType, traceID, terraReference, orderingTimestamp string, nextAttemptAt *time.Time, createdAt time.Time) error
	ClaimRelayDeliveries(ctx context.Context, leaseUntil *time.Time, destination string, now *time.Time, maxRows int64) ([]R, error)
	ResumeRelayDeliveries(ctx context.Context, now *time.Time, destination string) (int64, error)
	GetRelayBody(ctx context.Context, id int64) ([]byte, error)
	InsertStreamedRelayEvent(ctx context.Context, pieces int64, createdAt time.Time) (int64, error)
	InsertRelayPiece(ctx context.Context, eventID int64, seq int64, data []byte) error
	GetRelayPieces(ctx context.Context, id int64) (int64, error)
	GetRelayPiece(ctx context.Context, eventID int64, seq int64) ([]byte, error)
	DeleteDroppedRelayPieces(ctx context.Context, id int64) error
	DeleteOrphanRelayPieces(ctx context.Context) error
	FinishRelayDelivery(ctx context.Context, status string, nextAttemptAt *time.Time, lastStatusCode *int64, lastError string, deliveredAt *time.Time, id, attempts int64) (int64, error)
	DropDeliveredRelayBody(ctx context.Context, id int64) error
	DropExpiredRelayBodies(ctx context.Context, before time.Time) (int64, error)
	GetRelayDelivery(ctx context.Context, id int64) (R, error)
	ReplayRelayDelivery(ctx context.Context, now *time.Time, id int64) (R, error)
	ListRelayDeliveriesPage(ctx context.Context, beforeID int64, destination, status, eventType string, maxRows int64) ([]R, error)
	CountPendingRelayDeliveries(ctx context.Context, destination string) (int64, error)
	OldestPendingRelayDelivery(ctx context.Context, destination string) (time.Time, error)
}

// Tx is an engine's queries inside one write transaction, with what only the engine knows how
// to do there.
type Tx[U, S, E, A, L, D, R any] interface {
	Queries[U, S, E, A, L, D, R]
	// LockUsers holds off, until the transaction ends, every other transaction that locks one
	// of these Terra users, stored or not yet; LockTerraUser then reads each. An engine whose
	// transactions already run one at a time does nothing.
	LockUsers(ctx context.Context, userIDs []string) error
	// Savepoint runs fn in a savepoint of the transaction. When fn fails, what it wrote is
	// undone and the transaction can go on; if even that fails, the error no longer carries
	// fn's, so that the caller rolls the whole transaction back instead of going on.
	Savepoint(ctx context.Context, fn func(Tx[U, S, E, A, L, D, R]) error) error
}

// Engine runs the core's transactions and tells what a driver error means.
type Engine[U, S, E, A, L, D, R any] interface {
	// InTx runs fn in a write transaction, committing if it returns nil. An engine may run fn
	// again after a failure that running again resolves (a deadlock); fn starts afresh.
	InTx(ctx context.Context, fn func(Tx[U, S, E, A, L, D, R]) error) error
	// InReadTx runs fn in a read-only transaction whose reads see one snapshot.
	InReadTx(ctx context.Context, fn func(Queries[U, S, E, A, L, D, R]) error) error
	// Classify says what a driver error means, and returns the driver's own error within err
	// (nil if there is none), whose text names tables and columns.
	Classify(err error) (Kind, error)
}

// Kind is what a driver error means for the store.
type Kind int

// Driver error kinds.
const (
	Other   Kind = iota // anything else: an internal error
	NoRows              // the statement found no row
	Unique              // a unique key is taken
	Refused             // the database refuses a value (a check, NOT NULL, a value it cannot hold)
)

// Config is what an engine gives New.
type Config[U, S, E, A, L, D, R any] struct {
	Name   string // the engine's name, which starts its errors
	Engine Engine[U, S, E, A, L, D, R]
	// Read runs the statements that read outside a transaction, Write those that write.
	Read, Write Queries[U, S, E, A, L, D, R]
	Rows        Rows[U, S, E, A, L, D, R]
	Log         *slog.Logger
	Now         func() time.Time
	// AfterApply, when set (by tests), runs inside the ApplyWebhook and ReplayDeadLetter
	// transactions after the event's rows are saved; an error aborts applying the event.
	AfterApply func() error
}

// Store is store.Store written once over an Engine. Engines embed it and add what is theirs
// (Ready, Ping, Close, AcquireLease; SQLite's group commit of ApplyWebhook).
type Store[U, S, E, A, L, D, R any] struct {
	name        string
	e           Engine[U, S, E, A, L, D, R]
	read, write Queries[U, S, E, A, L, D, R]
	rows        Rows[U, S, E, A, L, D, R]
	log         *slog.Logger
	now         func() time.Time
	afterApply  func() error
}

// New returns the core of an engine's store.
func New[U, S, E, A, L, D, R any](c Config[U, S, E, A, L, D, R]) *Store[U, S, E, A, L, D, R] {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Store[U, S, E, A, L, D, R]{
		name: c.Name, e: c.Engine, read: c.Read, write: c.Write, rows: c.Rows,
		log: c.Log, now: c.Now, afterApply: c.AfterApply,
	}
}

// ErrDuplicate ends applying a delivery already in the inbox: Apply's answer, which
// ApplyResult turns into an Outcome with Duplicate set.
var ErrDuplicate = errors.New("duplicate delivery")
