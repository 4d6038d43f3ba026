package tracing

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/terragate/terragate/internal/store"
)

// Attributes of store spans, after OpenTelemetry's database conventions.
const (
	attrDBSystem  = attribute.Key("db.system.name")
	attrDBOp      = attribute.Key("db.operation.name")
	attrErrorType = attribute.Key("error.type")
)

// Store wraps s so that each of its methods runs in a client span named "store <Method>",
// marked with the database system (sqlite, postgresql) and the method. Arguments, rows
// and error messages are never recorded: they carry end-user ids and health connections.
// A failed call records only the kind of its error (not_found, invalid, conflict, ...).
//
// Only wrap when tracing is on (Setup returned an exporter): without it, s is faster alone.
func Store(s store.Store, system string) store.Store {
	return &tracedStore{next: s, system: attrDBSystem.String(system)}
}

type tracedStore struct {
	next   store.Store
	system attribute.KeyValue
}

var _ store.Store = (*tracedStore)(nil)

// start opens the span of one store method; the returned function ends it with the
// method's error.
func (t *tracedStore) start(ctx context.Context, method string) (context.Context, func(error)) {
	ctx, span := tracer().Start(ctx, "store "+method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(t.system, attrDBOp.String(method)))
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(attrErrorType.String(errorKind(err)))
			span.SetStatus(codes.Error, errorKind(err))
		}
		span.End()
	}
}

// errorKind names a store error by its kind, never by its message.
func errorKind(err error) string {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrInvalid):
		return "invalid"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	default:
		return "internal"
	}
}

func (t *tracedStore) CreateWidgetSession(ctx context.Context, s store.WidgetSession, audit ...store.AuditEntry) (err error) {
	ctx, end := t.start(ctx, "CreateWidgetSession")
	defer func() { end(err) }()
	return t.next.CreateWidgetSession(ctx, s, audit...)
}

func (t *tracedStore) WidgetSession(ctx context.Context, id string) (_ store.WidgetSession, err error) {
	ctx, end := t.start(ctx, "WidgetSession")
	defer func() { end(err) }()
	return t.next.WidgetSession(ctx, id)
}

func (t *tracedStore) TerraUser(ctx context.Context, userID string) (_ store.TerraUser, err error) {
	ctx, end := t.start(ctx, "TerraUser")
	defer func() { end(err) }()
	return t.next.TerraUser(ctx, userID)
}

func (t *tracedStore) ListTerraUsers(ctx context.Context, referenceID string, includeInactive bool) (_ []store.TerraUser, err error) {
	ctx, end := t.start(ctx, "ListTerraUsers")
	defer func() { end(err) }()
	return t.next.ListTerraUsers(ctx, referenceID, includeInactive)
}

func (t *tracedStore) ApplyWebhook(ctx context.Context, d store.Delivery) (_ store.Outcome, err error) {
	ctx, end := t.start(ctx, "ApplyWebhook")
	defer func() { end(err) }()
	return t.next.ApplyWebhook(ctx, d)
}

func (t *tracedStore) RecordDeadLetter(ctx context.Context, d store.Delivery, reason string) (_ store.InboxEvent, err error) {
	ctx, end := t.start(ctx, "RecordDeadLetter")
	defer func() { end(err) }()
	return t.next.RecordDeadLetter(ctx, d, reason)
}

func (t *tracedStore) WebhookEvent(ctx context.Context, id int64) (_ store.InboxEvent, err error) {
	ctx, end := t.start(ctx, "WebhookEvent")
	defer func() { end(err) }()
	return t.next.WebhookEvent(ctx, id)
}

func (t *tracedStore) ReplayDeadLetter(ctx context.Context, id int64, d store.Delivery, audit ...store.AuditEntry) (_ store.Outcome, err error) {
	ctx, end := t.start(ctx, "ReplayDeadLetter")
	defer func() { end(err) }()
	return t.next.ReplayDeadLetter(ctx, id, d, audit...)
}

func (t *tracedStore) ReusableWidgetSession(ctx context.Context, referenceID, inputKey string, liveAfter time.Time) (_ store.WidgetSession, err error) {
	ctx, end := t.start(ctx, "ReusableWidgetSession")
	defer func() { end(err) }()
	return t.next.ReusableWidgetSession(ctx, referenceID, inputKey, liveAfter)
}

func (t *tracedStore) ConsumeWidgetReturn(ctx context.Context, id string, at time.Time) (err error) {
	ctx, end := t.start(ctx, "ConsumeWidgetReturn")
	defer func() { end(err) }()
	return t.next.ConsumeWidgetReturn(ctx, id, at)
}

func (t *tracedStore) ExpireWidgetSessions(ctx context.Context, now time.Time) (_ []store.WidgetSession, err error) {
	ctx, end := t.start(ctx, "ExpireWidgetSessions")
	defer func() { end(err) }()
	return t.next.ExpireWidgetSessions(ctx, now)
}

func (t *tracedStore) ReferenceIDs(ctx context.Context) (_ []string, err error) {
	ctx, end := t.start(ctx, "ReferenceIDs")
	defer func() { end(err) }()
	return t.next.ReferenceIDs(ctx)
}

func (t *tracedStore) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (_ bool, err error) {
	ctx, end := t.start(ctx, "AcquireLease")
	defer func() { end(err) }()
	return t.next.AcquireLease(ctx, name, holder, now, until)
}

func (t *tracedStore) ReleaseLease(ctx context.Context, name, holder string) (err error) {
	ctx, end := t.start(ctx, "ReleaseLease")
	defer func() { end(err) }()
	return t.next.ReleaseLease(ctx, name, holder)
}

func (t *tracedStore) AppendAudit(ctx context.Context, e store.AuditEntry) (err error) {
	ctx, end := t.start(ctx, "AppendAudit")
	defer func() { end(err) }()
	return t.next.AppendAudit(ctx, e)
}

func (t *tracedStore) ClaimBackfill(ctx context.Context, lease time.Duration) (_ store.Backfill, _ bool, err error) {
	ctx, end := t.start(ctx, "ClaimBackfill")
	defer func() { end(err) }()
	return t.next.ClaimBackfill(ctx, lease)
}

func (t *tracedStore) FinishBackfill(ctx context.Context, b store.Backfill) (err error) {
	ctx, end := t.start(ctx, "FinishBackfill")
	defer func() { end(err) }()
	return t.next.FinishBackfill(ctx, b)
}

func (t *tracedStore) GetBackfill(ctx context.Context, userID string) (_ store.Backfill, err error) {
	ctx, end := t.start(ctx, "GetBackfill")
	defer func() { end(err) }()
	return t.next.GetBackfill(ctx, userID)
}

func (t *tracedStore) ListAudit(ctx context.Context, f store.AuditFilter, p store.Page) (_ store.AuditPage, err error) {
	ctx, end := t.start(ctx, "ListAudit")
	defer func() { end(err) }()
	return t.next.ListAudit(ctx, f, p)
}

func (t *tracedStore) ListTerraUsersPage(ctx context.Context, f store.UserFilter, p store.Page) (_ store.UserPage, err error) {
	ctx, end := t.start(ctx, "ListTerraUsersPage")
	defer func() { end(err) }()
	return t.next.ListTerraUsersPage(ctx, f, p)
}

func (t *tracedStore) ListWebhookEvents(ctx context.Context, f store.InboxFilter, p store.Page) (_ store.InboxPage, err error) {
	ctx, end := t.start(ctx, "ListWebhookEvents")
	defer func() { end(err) }()
	return t.next.ListWebhookEvents(ctx, f, p)
}

// Ready, Ping and Close are left unspanned: health probes every few seconds would bury
// the spans of real work.
func (t *tracedStore) Ready(ctx context.Context) error { return t.next.Ready(ctx) }
func (t *tracedStore) Ping(ctx context.Context) error  { return t.next.Ping(ctx) }
func (t *tracedStore) Close() error                    { return t.next.Close() }

func (t *tracedStore) ClaimRelayDeliveries(ctx context.Context, destination string, now, leaseUntil time.Time, max int) (_ []store.RelayDelivery, err error) {
	ctx, end := t.start(ctx, "ClaimRelayDeliveries")
	defer func() { end(err) }()
	return t.next.ClaimRelayDeliveries(ctx, destination, now, leaseUntil, max)
}

func (t *tracedStore) ResumeRelayDeliveries(ctx context.Context, destination string, now time.Time) (_ int64, err error) {
	ctx, end := t.start(ctx, "ResumeRelayDeliveries")
	defer func() { end(err) }()
	return t.next.ResumeRelayDeliveries(ctx, destination, now)
}

func (t *tracedStore) RelayBody(ctx context.Context, eventID int64) (_ []byte, err error) {
	ctx, end := t.start(ctx, "RelayBody")
	defer func() { end(err) }()
	return t.next.RelayBody(ctx, eventID)
}

func (t *tracedStore) RelayPieces(ctx context.Context, eventID int64) (_ int, err error) {
	ctx, end := t.start(ctx, "RelayPieces")
	defer func() { end(err) }()
	return t.next.RelayPieces(ctx, eventID)
}

// RelayPiece is not traced: a large body reads a piece per MiB, and its send is traced.
func (t *tracedStore) RelayPiece(ctx context.Context, eventID int64, seq int) ([]byte, error) {
	return t.next.RelayPiece(ctx, eventID, seq)
}

func (t *tracedStore) FinishRelayDelivery(ctx context.Context, d store.RelayDelivery, r store.RelayResult) (_ bool, err error) {
	ctx, end := t.start(ctx, "FinishRelayDelivery")
	defer func() { end(err) }()
	return t.next.FinishRelayDelivery(ctx, d, r)
}

func (t *tracedStore) ReplayRelayDelivery(ctx context.Context, id int64, now time.Time, audit ...store.AuditEntry) (_ store.RelayDelivery, err error) {
	ctx, end := t.start(ctx, "ReplayRelayDelivery")
	defer func() { end(err) }()
	return t.next.ReplayRelayDelivery(ctx, id, now, audit...)
}

func (t *tracedStore) ListRelayDeliveries(ctx context.Context, f store.RelayFilter, p store.Page) (_ store.RelayPage, err error) {
	ctx, end := t.start(ctx, "ListRelayDeliveries")
	defer func() { end(err) }()
	return t.next.ListRelayDeliveries(ctx, f, p)
}

func (t *tracedStore) DropExpiredRelayBodies(ctx context.Context, before time.Time) (_ int64, err error) {
	ctx, end := t.start(ctx, "DropExpiredRelayBodies")
	defer func() { end(err) }()
	return t.next.DropExpiredRelayBodies(ctx, before)
}

func (t *tracedStore) PendingRelayDeliveries(ctx context.Context, destination string) (_ int, _ time.Time, err error) {
	ctx, end := t.start(ctx, "PendingRelayDeliveries")
	defer func() { end(err) }()
	return t.next.PendingRelayDeliveries(ctx, destination)
}
