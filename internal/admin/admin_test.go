package admin_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/admin"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/fault"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
)

func newService(t *testing.T) (*admin.Service, *sqlite.DB) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "admin.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	conns := connection.New(nil, st, events.NewLocal(log), nil, nil, log)
	return admin.New(st, conns, log), st
}

var (
	service = auth.WithUser(context.Background(), auth.User{ID: "svc:backend", Service: true})
	alice   = auth.WithUser(context.Background(), auth.User{ID: "alice"})
)

// Only service callers read; each read is recorded with the filters it used, and a refused
// caller leaves no entry.
func TestReadsAreForServicesAndRecorded(t *testing.T) {
	s, st := newService(t)
	if _, err := s.Users(alice, store.UserFilter{}, store.Page{First: 10}); fault.KindOf(err) != fault.Forbidden {
		t.Fatalf("an end user listing every user: %v, want Forbidden", err)
	}
	if _, err := s.AuditLog(context.Background(), store.AuditFilter{}, store.Page{First: 10}); fault.KindOf(err) != fault.Unauthenticated {
		t.Fatalf("nobody reading the audit log: %v, want Unauthenticated", err)
	}
	if _, err := s.Users(service, store.UserFilter{Provider: "OURA"}, store.Page{First: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebhookEvents(service, store.InboxFilter{Outcome: "failed"}, store.Page{First: 10}); err != nil {
		t.Fatal(err)
	}
	page, err := st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionAdminRead}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 2 {
		t.Fatalf("%d admin.read entries, want 2 (the refused reads record nothing)", len(page.Entries))
	}
	byQuery := map[string]store.AuditEntry{}
	for _, e := range page.Entries {
		byQuery[e.Subject] = e
	}
	if e := byQuery["users"]; e.Actor != "svc:backend" || e.ActorKind != store.ActorService || e.Detail["provider"] != "OURA" || len(e.Detail) != 1 {
		t.Errorf("users read: %+v", e)
	}
	if e := byQuery["webhookEvents"]; e.Detail["outcome"] != "failed" {
		t.Errorf("webhookEvents read: %+v", e)
	}
}

func TestReplay(t *testing.T) {
	s, st := newService(t)
	if _, err := s.Replay(alice, "1"); fault.KindOf(err) != fault.Forbidden {
		t.Errorf("an end user replaying: %v, want Forbidden", err)
	}
	for _, id := range []string{"x", "0", "-3", ""} {
		_, err := s.Replay(service, id)
		var f fault.Fielder
		if fault.KindOf(err) != fault.Invalid || !errors.As(err, &f) || f.FieldName() != "id" {
			t.Errorf("replay of %q: %v, want Invalid about id", id, err)
		}
	}
	if _, err := s.Replay(service, "42"); fault.KindOf(err) != fault.NotFound {
		t.Errorf("replay of an unknown row: %v, want NotFound", err)
	}

	// A dead letter whose body decodes now is applied, and the replay is recorded with
	// its outcome.
	now := time.Now().UTC()
	body := []byte(`{"type":"auth","status":"success","reference_id":"alice","user":{"user_id":"u1","provider":"OURA","reference_id":"alice","active":true}}`)
	dead, err := st.RecordDeadLetter(context.Background(), store.Delivery{DedupeKey: "k1", SignedAt: now, ReceivedAt: now, Body: body,
		Source: store.SourceWebhook, Event: store.Event{Type: "auth", Kind: "undecoded"}}, "a bug since fixed")
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Replay(service, strconv.FormatInt(dead.ID, 10))
	if err != nil || e.Outcome == store.InboxFailed {
		t.Fatalf("replay: %+v, %v", e, err)
	}
	page, err := st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionWebhookReplay}, store.Page{First: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Detail[store.ReplayOutcomeKey] != store.ReplaySucceeded || page.Entries[0].Actor != "svc:backend" {
		t.Errorf("replay entries: %+v, %v", page.Entries, err)
	}
}
