// Package store holds terragate's domain records (widget sessions, Terra users, the webhook
// inbox, the audit log), the Store interface the rest of the program depends on, and the
// error kinds it returns. Engines (store/sqlite, store/postgres) implement Store over the sqlc code
// they own; store/storetest is the conformance suite every engine passes.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/terragate/terragate/internal/fault"
)

// Error kinds. Engines wrap them with context; callers test with errors.Is.
var (
	ErrNotFound = fault.New(fault.NotFound, "not found")
	ErrConflict = fault.New(fault.Conflict, "conflict")
	ErrInvalid  = fault.New(fault.Invalid, "invalid")
	// ErrSchemaOutdated reports a database whose schema lacks migrations this build needs:
	// Open refuses it unless told to migrate, and Ready reports it.
	ErrSchemaOutdated = errors.New("database schema is older than this build")
)

// ArgumentError is an ErrInvalid about one argument of a request, such as a listing's
// page size, cursor or filter, in words that may be shown to whoever sent it: the other
// ErrInvalid errors are about data the store refuses, and say so only to its callers.
type ArgumentError struct {
	Arg    string // the argument's name: first, after, status, source, outcome, action, until
	Reason string // what is wrong with it
}

func (e *ArgumentError) Error() string { return "invalid " + e.Arg + ": " + e.Reason }

// Unwrap makes the error an ErrInvalid.
func (e *ArgumentError) Unwrap() error { return ErrInvalid }

// Kind is fault.Invalid; FieldName names the argument for the client.
func (e *ArgumentError) Kind() fault.Kind { return fault.Invalid }

// FieldName is the argument the error is about.
func (e *ArgumentError) FieldName() string { return e.Arg }

// ConnectionStatus is the state of one Terra user (one provider connection).
type ConnectionStatus string

// Connection states. DISCONNECTED and REVOKED are final for a Terra user_id: Terra deletes
// the id, and a reconnection issues a new one.
const (
	StatusConnected    ConnectionStatus = "CONNECTED"
	StatusError        ConnectionStatus = "ERROR"
	StatusRevoked      ConnectionStatus = "REVOKED"
	StatusDisconnected ConnectionStatus = "DISCONNECTED"
)

// SessionStatus is the state of a widget session.
type SessionStatus string

// Widget session states; transitions are one-way (CREATED -> COMPLETED|FAILED|EXPIRED, and
// a COMPLETED session never falls back).
const (
	SessionCreated   SessionStatus = "CREATED"
	SessionCompleted SessionStatus = "COMPLETED"
	SessionFailed    SessionStatus = "FAILED"
	SessionExpired   SessionStatus = "EXPIRED"
)

// WidgetSession is a Terra widget session created for one end user.
type WidgetSession struct {
	ID                 string // terragate's id for the session (a UUID it generates)
	TerraSessionID     string // Terra's session_id, which webhooks carry as widget_session_id
	ReferenceID        string // the authenticated end user's id
	Providers          []string
	Language           string
	SuccessRedirectURL string
	FailureRedirectURL string
	URL                string
	ExpiresAt          time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
	Status             SessionStatus
	Provider           string // the provider the user picked, once known
	TerraUserID        string // set on completion
	FailureReason      string // set on failure
	// InputKey identifies the caller's input (providers, language, redirects) so that the
	// same request within a live session's lifetime can get that session back.
	InputKey string
	// ReturnUsedAt is when the session's signed return URL was used; it is single-use.
	ReturnUsedAt *time.Time
}

// TerraUser is one provider connection of one end user, as kept current by webhooks.
type TerraUser struct {
	UserID      string
	Provider    string
	ReferenceID string // empty when Terra has none
	Active      bool
	Status      ConnectionStatus
	Scopes      []string
	// ScopesAt is the signed time of the event that last set Scopes (nil while none has
	// said), so that an older permission_change cannot undo a newer one.
	ScopesAt          *time.Time
	ConnectedAt       time.Time
	LastWebhookUpdate *time.Time
	UpdatedAt         time.Time
	// StateAt is the signed time of the event that last set Status; it orders events that
	// arrive out of order.
	StateAt time.Time
	// ReplacedBy is the new user_id when a user_reauth replaced this one; replaced users
	// are kept as tombstones so late events cannot revive them, and are never listed.
	ReplacedBy string
}

// EventKind is what a webhook event means for the store.
type EventKind string

// Event kinds the store applies. Anything else is recorded in the inbox and ignored.
const (
	EventAuthSuccess      EventKind = "auth_success"      // auth / success
	EventAuthFailure      EventKind = "auth_failure"      // auth / error, or auth_cancelled
	EventDeauth           EventKind = "deauth"            // -> DISCONNECTED, inactive
	EventReauth           EventKind = "user_reauth"       // new user replaces old
	EventAccessRevoked    EventKind = "access_revoked"    // -> REVOKED, inactive
	EventConnectionError  EventKind = "connection_error"  // -> ERROR, still listed
	EventPermissionChange EventKind = "permission_change" // scopes change
	EventIgnored          EventKind = "ignored"           // other types: acknowledged only
)

// UserSnapshot is a Terra user as carried by one event. Nil pointers and nil Scopes mean
// the event did not say.
type UserSnapshot struct {
	UserID            string
	Provider          string
	ReferenceID       string
	Active            *bool
	Scopes            []string
	CreatedAt         *time.Time
	LastWebhookUpdate *time.Time
}

// Event is a decoded webhook event in the store's terms.
type Event struct {
	Kind            EventKind
	Type            string        // Terra's type, as received
	User            *UserSnapshot // user (or new_user for user_reauth)
	OldUser         *UserSnapshot // old_user for user_reauth; may be nil
	ReferenceID     string
	WidgetSessionID string
	FlowID          string
	Provider        string
	Reason          string
	ScopesAdded     []string
	ScopesRemoved   []string
	// NoSession marks an event that is no widget session's outcome (a connection made
	// through Terra's mobile SDK): no session is looked for, even by end user.
	NoSession bool
	// Unattributed, when set, says why Terra named an end user for the connection but the
	// event names none (its reference was not one terragate issued; see package sdkref):
	// the connection is stored for nobody. Claimed is the end user the reference named, if
	// any. The store applies the event as one without a reference; these are for the audit.
	Unattributed string
	Claimed      string
}

// Delivery is one webhook request: the raw body for the inbox and its decoded event.
type Delivery struct {
	// DedupeKey identifies a delivery across retries: X-Terra-Trace-Id when present, else
	// a hash of the body. Deliveries from other sources use keys of their own
	// ("redirect:<session>", "api:...", "sync:...").
	DedupeKey string
	// Source says where the event came from: SourceWebhook (the default when empty) or
	// what terragate learned itself (a confirmed redirect, an API call, a sync).
	Source     DeliverySource
	TraceID    string
	SignedAt   time.Time // the signature's timestamp: the event's time for ordering
	ReceivedAt time.Time
	Body       []byte
	Event      Event
	// Audit, when set, names the audit entries of what applying changed. The store calls
	// it inside the transaction, once the event is applied, and stores its entries there:
	// one commit, and no change without its entry. An entry CheckAudit refuses is left out
	// (and logged), never a reason to refuse the event.
	Audit func(Outcome) []AuditEntry
	// Relay, when set, is enqueued for the relay in the transaction that records the
	// delivery, so that a relay delivery exists if and only if the event was stored. The
	// inbox row keeps Body; the relay keeps Relay.Body (a data event's inbox row keeps none).
	Relay *RelayEvent
	// Backfill, when set, is recorded for each Terra user the delivery connects for the
	// first time (an auth event for a user not stored before), in the same transaction:
	// history to ask Terra for once, by a background worker (ClaimBackfill). A user that
	// has a backfill keeps it, so a repeated auth asks nothing again.
	Backfill *BackfillPlan
}

// BackfillPlan is the history to ask Terra for about a new connection.
type BackfillPlan struct {
	Types        []string // Terra data types (activity, sleep, ...)
	Since, Until time.Time
}

// Backfill is a connection's recorded backfill and how far it got.
type Backfill struct {
	UserID       string
	Types        []string
	Since, Until time.Time
	// Step counts the Terra requests already made, in the order the worker makes them.
	Step int
	// Attempts counts claims; FinishBackfill must name the claim's.
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	DoneAt        *time.Time
	CreatedAt     time.Time
}

// DeliverySource is where an event came from.
type DeliverySource string

// Delivery sources. Everything terragate learns goes through the same rules and the inbox.
const (
	SourceWebhook  DeliverySource = "webhook"  // a signed Terra webhook
	SourceRedirect DeliverySource = "redirect" // a widget return confirmed with Terra
	SourceAPI      DeliverySource = "api"      // an API call made on Terra (disconnectUser)
	SourceSync     DeliverySource = "sync"     // reconciliation with Terra's user list
)

// Outcome tells what applying a delivery changed.
type Outcome struct {
	Duplicate bool           // already in the inbox: nothing applied
	Users     []TerraUser    // Terra users whose row changed, as they are now
	Session   *WidgetSession // the widget session the event was recorded against, if any
	// Before holds the changed users as they were, by user_id (absent: new), so callers
	// can tell a visible change from a refreshed timestamp.
	Before map[string]TerraUser
	// SessionChanged is true when the event moved Session.
	SessionChanged bool
}

// Store is the persistence terragate depends on. Every method honours ctx.
type Store interface {
	Outbox
	// CreateWidgetSession stores a new session, with the audit entries given in the same
	// transaction (one commit, and no session without its entry). A duplicate ID is
	// ErrConflict; an entry CheckAudit refuses is ErrInvalid; either way nothing is stored.
	CreateWidgetSession(ctx context.Context, s WidgetSession, audit ...AuditEntry) error
	// WidgetSession returns one session, or ErrNotFound.
	WidgetSession(ctx context.Context, id string) (WidgetSession, error)
	// TerraUser returns one Terra user (tombstones included), or ErrNotFound.
	TerraUser(ctx context.Context, userID string) (TerraUser, error)
	// ListTerraUsers returns the end user's Terra users, oldest connection first. Inactive
	// ones are left out unless includeInactive; replaced ones are always left out.
	ListTerraUsers(ctx context.Context, referenceID string, includeInactive bool) ([]TerraUser, error)
	// ApplyWebhook records the delivery in the inbox and applies its event in the same
	// transaction. A delivery whose DedupeKey is already in the inbox changes nothing and
	// reports Duplicate.
	ApplyWebhook(ctx context.Context, d Delivery) (Outcome, error)
	// RecordDeadLetter keeps a delivery the store refused for a reason retrying will not fix
	// (ApplyWebhook's ErrInvalid) as a dead letter: an inbox row with outcome InboxFailed and
	// the reason, in a transaction of its own, applying nothing. The reason is the caller's
	// short message, cleaned and cut by ErrorText; it must hold no secrets. A delivery whose
	// DedupeKey is already in the inbox changes nothing: the existing row, dead letter or
	// not, comes back. What CheckDeadLetter refuses is ErrInvalid.
	RecordDeadLetter(ctx context.Context, d Delivery, reason string) (InboxEvent, error)
	// WebhookEvent returns one inbox row by its ID, or ErrNotFound.
	WebhookEvent(ctx context.Context, id int64) (InboxEvent, error)
	// ReplayDeadLetter applies d, the caller's fresh decoding of the dead letter id, by the
	// same rules and in the same way as ApplyWebhook, and records the result on that row (no
	// new inbox row) in one transaction: the outcome, AppliedAt, ReplayedAt, Replays+1 and no
	// Error. When applying fails again with ErrInvalid, nothing of it is applied, the row stays
	// a dead letter with the new reason, ReplayedAt and Replays+1, and the error is returned.
	// An unknown id is ErrNotFound, a row that is not a dead letter (already replayed, or
	// never failed) ErrConflict, and a d with another DedupeKey or Source than the row's
	// ErrInvalid, leaving the row as it was. The audit entries given (who asked for the
	// replay) are stored as ReplayAudits makes them, with the outcome of the replay, in the
	// transaction that records it, whichever it is: no replay without its entries. An entry
	// ReplayAudits refuses is ErrInvalid, and nothing is replayed or stored. A replay refused
	// before it runs (ErrNotFound, ErrConflict, ErrInvalid for another delivery) stores none.
	ReplayDeadLetter(ctx context.Context, id int64, d Delivery, audit ...AuditEntry) (Outcome, error)
	// ReusableWidgetSession returns the end user's newest CREATED session with this input
	// key that expires after liveAfter, or ErrNotFound.
	ReusableWidgetSession(ctx context.Context, referenceID, inputKey string, liveAfter time.Time) (WidgetSession, error)
	// ConsumeWidgetReturn marks the session's return URL as used at the given time, once:
	// a second call is ErrConflict, an unknown id ErrNotFound.
	ConsumeWidgetReturn(ctx context.Context, id string, at time.Time) error
	// ExpireWidgetSessions moves every CREATED session whose expiry is at or before now to
	// EXPIRED and returns them as they are now, oldest expiry first.
	ExpireWidgetSessions(ctx context.Context, now time.Time) ([]WidgetSession, error)
	// ReferenceIDs lists the end users that have at least one active Terra user, in order.
	ReferenceIDs(ctx context.Context) ([]string, error)
	// AcquireLease gives holder the named lease until the given time when it is free,
	// expired (at or before now) or already holder's, and reports whether holder has it.
	// Background work that must run once per cluster (the sync sweep, session expiry)
	// runs only while its instance holds the lease.
	AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
	// ReleaseLease gives the lease up if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error
	// AppendAudit adds an entry to the audit log (see CheckAudit for what it refuses, as
	// ErrInvalid). The log is append-only: nothing changes or removes an entry, and the
	// database refuses UPDATE and DELETE on it.
	AppendAudit(ctx context.Context, e AuditEntry) error

	// ClaimBackfill claims the pending backfill due soonest, if any (ok false otherwise): it
	// is not due again for lease, so that one instance works it at a time and a crashed
	// worker's is picked up again once the lease ends.
	ClaimBackfill(ctx context.Context, lease time.Duration) (b Backfill, ok bool, err error)
	// FinishBackfill records how far a claimed backfill got: Step, LastError, and DoneAt
	// when done, else NextAttemptAt. A claim whose lease another claim replaced is
	// ErrConflict, and nothing is written.
	FinishBackfill(ctx context.Context, b Backfill) error
	// GetBackfill returns a connection's backfill, or ErrNotFound.
	GetBackfill(ctx context.Context, userID string) (Backfill, error)
	// ListAudit returns a page of the audit entries matching the filter, newest first (by
	// At, then ID). A malformed cursor or a page size outside 1..MaxPageSize is ErrInvalid.
	ListAudit(ctx context.Context, f AuditFilter, p Page) (AuditPage, error)
	// ListTerraUsersPage returns a page of the Terra users matching the filter, for admins,
	// in (ConnectedAt, UserID) order, inactive ones included and replaced ones left out,
	// with the total count of matching users. A malformed cursor, an unknown status or a
	// page size outside 1..MaxPageSize is ErrInvalid.
	ListTerraUsersPage(ctx context.Context, f UserFilter, p Page) (UserPage, error)
	// ListWebhookEvents returns a page of the inbox deliveries matching the filter, newest
	// first, bodies included: the caller decides what to show. Outcome InboxFailed lists the
	// dead letters. A malformed cursor, an
	// unknown source or outcome or a page size outside 1..MaxPageSize is ErrInvalid.
	ListWebhookEvents(ctx context.Context, f InboxFilter, p Page) (InboxPage, error)
	// Ready reports whether the store can serve: the database answers and its schema is
	// at the version this build expects.
	Ready(ctx context.Context) error
	// Ping checks the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}
