// Package admin serves what only the app's own backends (service callers) may do: list
// every connection, the webhook inbox, the relay's delivery log and the audit log, and
// replay a dead letter (of the inbox or of the relay). It owns
// the audit policy of those acts: each read is recorded before it runs, and a replay is
// recorded with its outcome in the transaction that stores it.
package admin

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/terragate/terragate/internal/audit"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/store"
)

// Replayer applies a dead letter again and records who asked with the outcome: the
// connection service, which owns the mapping from Terra's terms.
type Replayer interface {
	Replay(ctx context.Context, id int64, by store.AuditEntry) (store.InboxEvent, error)
}

// Service answers service callers' admin queries and mutations.
type Service struct {
	store    store.Store
	replayer Replayer
	log      *slog.Logger
	now      func() time.Time
}

// New returns the admin service over st, replaying dead letters through r.
func New(st store.Store, r Replayer, log *slog.Logger) *Service {
	return &Service{store: st, replayer: r, log: log, now: time.Now}
}

// Users lists every end user's connections, filtered, a page at a time.
func (s *Service) Users(ctx context.Context, f store.UserFilter, p store.Page) (store.UserPage, error) {
	if err := s.read(ctx, "users", "referenceId", f.ReferenceID, "provider", f.Provider, "status", string(f.Status)); err != nil {
		return store.UserPage{}, err
	}
	return s.store.ListTerraUsersPage(ctx, f, p)
}

// WebhookEvents lists the webhook inbox, newest first, filtered, a page at a time.
func (s *Service) WebhookEvents(ctx context.Context, f store.InboxFilter, p store.Page) (store.InboxPage, error) {
	if err := s.read(ctx, "webhookEvents", "type", f.Type, "source", string(f.Source), "outcome", f.Outcome); err != nil {
		return store.InboxPage{}, err
	}
	return s.store.ListWebhookEvents(ctx, f, p)
}

// AuditLog lists the audit log, newest first, filtered, a page at a time.
func (s *Service) AuditLog(ctx context.Context, f store.AuditFilter, p store.Page) (store.AuditPage, error) {
	if err := s.read(ctx, "auditLog", "actor", f.Actor, "referenceId", f.ReferenceID, "action", f.Action); err != nil {
		return store.AuditPage{}, err
	}
	return s.store.ListAudit(ctx, f, p)
}

// RelayDeliveries lists the relay's delivery log, newest first, filtered, a page at a time.
func (s *Service) RelayDeliveries(ctx context.Context, f store.RelayFilter, p store.Page) (store.RelayPage, error) {
	if err := s.read(ctx, "relayDeliveries", "destination", f.Destination, "status", string(f.Status), "eventType", f.EventType); err != nil {
		return store.RelayPage{}, err
	}
	return s.store.ListRelayDeliveries(ctx, f, p)
}

// ReplayRelay puts the relay dead letter id back to PENDING, due at once, audited with its
// outcome in the transaction that does it.
func (s *Service) ReplayRelay(ctx context.Context, id string) (store.RelayDelivery, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return store.RelayDelivery{}, err
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 1 {
		return store.RelayDelivery{}, &store.ArgumentError{Arg: "id", Reason: "want a delivery id from relayDeliveries"}
	}
	now := s.now().UTC()
	by := audit.By(ctx)
	by.At, by.Action, by.Subject = now, store.ActionRelayReplay, id
	return s.store.ReplayRelayDelivery(ctx, n, now, by)
}

// Replay applies the dead letter id (an inbox id from WebhookEvents) again, decoded anew by
// today's rules, and returns the inbox row as it is afterwards.
func (s *Service) Replay(ctx context.Context, id string) (store.InboxEvent, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return store.InboxEvent{}, err
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 1 {
		return store.InboxEvent{}, &store.ArgumentError{Arg: "id", Reason: "want an inbox id from webhookEvents"}
	}
	by := audit.By(ctx)
	by.At = s.now().UTC()
	return s.replayer.Replay(ctx, n, by)
}

// read lets service callers through, and records the read with the filters it used
// (pairs of name and value; empty values are left out). A read that cannot be recorded is
// refused: no one reads every user's connections unrecorded.
func (s *Service) read(ctx context.Context, query string, filters ...string) error {
	if _, err := auth.RequireService(ctx); err != nil {
		return err
	}
	e := audit.By(ctx)
	e.At, e.Action, e.Subject = s.now().UTC(), store.ActionAdminRead, query
	e.Detail = map[string]string{}
	for i := 0; i+1 < len(filters); i += 2 {
		if filters[i+1] != "" {
			e.Detail[filters[i]] = filters[i+1]
		}
	}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "audit entry not recorded", "action", e.Action, "err", err)
		return fmt.Errorf("recording the read: %w", err)
	}
	return nil
}
