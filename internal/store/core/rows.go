package core

import (
	"context"
	"fmt"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// Rows maps an engine's rows to the core's. The core's row types have the fields of the
// generated ones, in the same order, so that an engine whose generated type matches converts
// it as it is; the other copies it field by field (its table has its columns in another order).
type Rows[U, S, E, A, L, D, R any] struct {
	User    func(U) UserRow[L]
	Session func(S) SessionRow[L]
	Event   func(E) InboxRow
	Audit   func(A) AuditRow[D]
	Relay   func(R) RelayRow
	// List is a list as the engine keeps it, Items the list it keeps back (nil when empty).
	List  func([]string) L
	Items func(L) []string
	// Detail is an audit entry's detail (store.AuditDetailJSON) as the engine keeps it, JSON
	// the JSON it keeps back.
	Detail func([]byte) D
	JSON   func(D) []byte
}

// UserRow is a terra_users row.
type UserRow[L any] struct {
	UserID            string
	ReferenceID       string
	Provider          string
	Active            bool
	Status            string
	Scopes            L
	ScopesAt          *time.Time
	ConnectedAt       time.Time
	LastWebhookUpdate *time.Time
	UpdatedAt         time.Time
	StateAt           time.Time
	ReplacedBy        string
}

// SessionRow is a widget_sessions row, its columns in PostgreSQL's order (and
// CreateWidgetSession's).
type SessionRow[L any] struct {
	ID                 string
	TerraSessionID     string
	ReferenceID        string
	Providers          L
	Language           string
	SuccessRedirectURL string
	FailureRedirectURL string
	URL                string
	Status             string
	Provider           string
	TerraUserID        string
	FailureReason      string
	InputKey           string
	ReturnUsedAt       *time.Time
	ExpiresAt          time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

// InboxRow is a webhook_events row, its columns in SQLite's order.
type InboxRow struct {
	ID         int64
	DedupeKey  string
	TraceID    string
	Type       string
	Kind       string
	SignedAt   time.Time
	ReceivedAt time.Time
	Body       []byte
	AppliedAt  *time.Time
	Outcome    *string
	Source     string
	Error      string
	ReplayedAt *time.Time
	Replays    int64
}

// AuditRow is an audit_log row.
type AuditRow[D any] struct {
	ID          int64
	At          time.Time
	Actor       string
	ActorKind   string
	Action      string
	Subject     string
	ReferenceID string
	ClientIP    string
	Detail      D
}

// Drivers read times back in whatever zone they parse; the store hands out UTC.

func utc(t time.Time) time.Time { return t.UTC() }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func storedPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := store.StoredTime(*t)
	return &u
}

func (c *Store[U, S, E, A, L, D, R]) user(r U) store.TerraUser { return c.userOf(c.rows.User(r)) }

func (c *Store[U, S, E, A, L, D, R]) userOf(r UserRow[L]) store.TerraUser {
	return store.TerraUser{
		UserID:            r.UserID,
		Provider:          r.Provider,
		ReferenceID:       r.ReferenceID,
		Active:            r.Active,
		Status:            store.ConnectionStatus(r.Status),
		Scopes:            c.rows.Items(r.Scopes),
		ScopesAt:          utcPtr(r.ScopesAt),
		ConnectedAt:       utc(r.ConnectedAt),
		LastWebhookUpdate: utcPtr(r.LastWebhookUpdate),
		UpdatedAt:         utc(r.UpdatedAt),
		StateAt:           utc(r.StateAt),
		ReplacedBy:        r.ReplacedBy,
	}
}

func (c *Store[U, S, E, A, L, D, R]) users(rows []U) []store.TerraUser {
	users := make([]store.TerraUser, 0, len(rows))
	for _, r := range rows {
		users = append(users, c.user(r))
	}
	return users
}

// userRow is u as SaveTerraUser stores it.
func (c *Store[U, S, E, A, L, D, R]) userRow(u store.TerraUser) UserRow[L] {
	return UserRow[L]{
		UserID:            u.UserID,
		ReferenceID:       u.ReferenceID,
		Provider:          u.Provider,
		Active:            u.Active,
		Status:            string(u.Status),
		Scopes:            c.rows.List(u.Scopes),
		ScopesAt:          storedPtr(u.ScopesAt),
		ConnectedAt:       store.StoredTime(u.ConnectedAt),
		LastWebhookUpdate: storedPtr(u.LastWebhookUpdate),
		UpdatedAt:         store.StoredTime(u.UpdatedAt),
		StateAt:           store.StoredTime(u.StateAt),
		ReplacedBy:        u.ReplacedBy,
	}
}

func (c *Store[U, S, E, A, L, D, R]) session(row S) store.WidgetSession {
	r := c.rows.Session(row)
	return store.WidgetSession{
		ID:                 r.ID,
		TerraSessionID:     r.TerraSessionID,
		ReferenceID:        r.ReferenceID,
		Providers:          c.rows.Items(r.Providers),
		Language:           r.Language,
		SuccessRedirectURL: r.SuccessRedirectURL,
		FailureRedirectURL: r.FailureRedirectURL,
		URL:                r.URL,
		ExpiresAt:          utc(r.ExpiresAt),
		CreatedAt:          utc(r.CreatedAt),
		UpdatedAt:          utc(r.UpdatedAt),
		Status:             store.SessionStatus(r.Status),
		Provider:           r.Provider,
		TerraUserID:        r.TerraUserID,
		FailureReason:      r.FailureReason,
		InputKey:           r.InputKey,
		ReturnUsedAt:       utcPtr(r.ReturnUsedAt),
	}
}

func (c *Store[U, S, E, A, L, D, R]) event(row E) store.InboxEvent {
	r := c.rows.Event(row)
	e := store.InboxEvent{
		ID:         r.ID,
		DedupeKey:  r.DedupeKey,
		Source:     store.DeliverySource(r.Source),
		TraceID:    r.TraceID,
		Type:       r.Type,
		Kind:       store.EventKind(r.Kind),
		SignedAt:   utc(r.SignedAt),
		ReceivedAt: utc(r.ReceivedAt),
		Body:       r.Body,
		AppliedAt:  utcPtr(r.AppliedAt),
		Error:      r.Error,
		ReplayedAt: utcPtr(r.ReplayedAt),
		Replays:    int(r.Replays),
	}
	if r.Outcome != nil {
		e.Outcome = store.InboxOutcome(*r.Outcome)
	}
	return e
}

func (c *Store[U, S, E, A, L, D, R]) events(rows []E) []store.InboxEvent {
	events := make([]store.InboxEvent, 0, len(rows))
	for _, r := range rows {
		events = append(events, c.event(r))
	}
	return events
}

func (c *Store[U, S, E, A, L, D, R]) audit(row A) (store.AuditEntry, error) {
	r := c.rows.Audit(row)
	detail, err := store.ParseAuditDetail(c.rows.JSON(r.Detail))
	if err != nil {
		return store.AuditEntry{}, err
	}
	return store.AuditEntry{
		ID:          r.ID,
		At:          utc(r.At),
		Actor:       r.Actor,
		ActorKind:   r.ActorKind,
		Action:      r.Action,
		Subject:     r.Subject,
		ReferenceID: r.ReferenceID,
		ClientIP:    r.ClientIP,
		Detail:      detail,
	}, nil
}

// insertAudit appends checked entries.
func (c *Store[U, S, E, A, L, D, R]) insertAudit(ctx context.Context, q Queries[U, S, E, A, L, D, R], entries []store.AuditEntry) error {
	for _, e := range entries {
		err := q.InsertAuditEntry(ctx, e.At, e.Actor, e.ActorKind, e.Action, e.Subject, e.ReferenceID, e.ClientIP,
			c.rows.Detail(store.AuditDetailJSON(e.Detail)))
		if err != nil {
			return fmt.Errorf("audit %s: %w", e.Action, err)
		}
	}
	return nil
}

// NonNil keeps an empty body from being stored as NULL.
func NonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
