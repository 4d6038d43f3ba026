package connection_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/store"
)

func TestRequestBackfill(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	garmin := e.connect("GARMIN", "alice")
	if _, err := e.svc.Sync(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	until := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	since := until.AddDate(0, 0, -40)
	user := store.AuditEntry{Actor: "alice", ActorKind: store.ActorUser}
	asked := func() (n int) {
		for _, r := range e.emu.Requests() {
			if r.Query.Get("to_webhook") == "true" {
				n++
			}
		}
		return n
	}

	if err := e.svc.RequestBackfill(ctx, connection.BackfillRequest{Owner: "alice", UserID: garmin.UserID,
		Since: since, Until: until, Types: []string{"sleep", "daily"}}, user); err != nil {
		t.Fatal(err)
	}
	if n := asked(); n != 2 {
		t.Errorf("%d history requests, want one per type", n)
	}
	page, err := e.store.ListAudit(ctx, store.AuditFilter{Action: store.ActionBackfillRequested}, store.Page{First: 10})
	if err != nil || len(page.Entries) != 1 {
		t.Fatalf("audit %+v, %v", page.Entries, err)
	}
	if got := page.Entries[0]; got.Subject != garmin.UserID || got.ReferenceID != "alice" || got.Detail["types"] != "sleep,daily" {
		t.Errorf("entry %+v", got)
	}

	// Someone else's connection answers as an unknown one does; a service (no owner) may.
	if err := e.svc.RequestBackfill(ctx, connection.BackfillRequest{Owner: "mallory", UserID: garmin.UserID, Since: since, Until: until}, user); !errors.Is(err, connection.ErrNotFound) {
		t.Errorf("another's connection: %v", err)
	}
	if err := e.svc.RequestBackfill(ctx, connection.BackfillRequest{Owner: "alice", UserID: "nobody", Since: since, Until: until}, user); !errors.Is(err, connection.ErrNotFound) {
		t.Errorf("unknown connection: %v", err)
	}
	svc := store.AuditEntry{Actor: "svc:backend", ActorKind: store.ActorService}
	if err := e.svc.RequestBackfill(ctx, connection.BackfillRequest{AnyOwner: true, UserID: garmin.UserID, Since: since, Until: until, Types: []string{"body"}}, svc); err != nil {
		t.Errorf("service: %v", err)
	}

	before := asked()
	for _, c := range []struct {
		name, field string
		req         connection.BackfillRequest
	}{
		{"since after until", "since", connection.BackfillRequest{Since: until, Until: since}},
		{"too long", "since", connection.BackfillRequest{Since: until.AddDate(0, 0, -1826), Until: until}},
		{"unknown type", "types", connection.BackfillRequest{Since: since, Until: until, Types: []string{"steps"}}},
	} {
		c.req.Owner, c.req.UserID = "alice", garmin.UserID
		err := e.svc.RequestBackfill(ctx, c.req, user)
		var ae *store.ArgumentError
		if !errors.As(err, &ae) || ae.Arg != c.field {
			t.Errorf("%s: %v, want an invalid %s", c.name, err, c.field)
		}
	}
	if asked() != before {
		t.Error("bad input reached Terra")
	}

	// A connection Terra no longer knows is as unknown as any other.
	if err := e.emu.Deauth(garmin.UserID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RequestBackfill(ctx, connection.BackfillRequest{Owner: "alice", UserID: garmin.UserID, Since: since, Until: until}, user); !errors.Is(err, connection.ErrNotFound) {
		t.Errorf("gone at Terra: %v", err)
	}
}

// With BACKFILL_DAYS set, a new connection's auth records its backfill; a repeated auth
// keeps the first one.
func TestApplyWebhookRecordsBackfill(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	svc := connection.New(e.tc, e.store, e.bus, nil, nil, slog.New(slog.DiscardHandler), connection.WithBackfill(30, []string{"daily", "sleep"}, nil))
	auth := func(key string) {
		now := time.Now()
		_, err := svc.ApplyWebhook(ctx, store.Delivery{DedupeKey: key, SignedAt: now, ReceivedAt: now,
			Event: store.Event{Kind: store.EventAuthSuccess, Type: "auth", ReferenceID: "alice",
				User: &store.UserSnapshot{UserID: "u-new", ReferenceID: "alice", Provider: "OURA"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	auth("k1")
	b, err := e.store.GetBackfill(ctx, "u-new")
	if err != nil || strings.Join(b.Types, ",") != "daily,sleep" || b.Until.Sub(b.Since) != 30*24*time.Hour {
		t.Fatalf("backfill %+v, %v", b, err)
	}
	auth("k2")
	if b2, _ := e.store.GetBackfill(ctx, "u-new"); !b2.CreatedAt.Equal(b.CreatedAt) || !b2.Since.Equal(b.Since) {
		t.Errorf("a repeated auth changed the backfill: %+v, was %+v", b2, b)
	}
	// Without the setting nothing is recorded.
	e.svc.ApplyWebhook(ctx, store.Delivery{DedupeKey: "k3", SignedAt: time.Now(), ReceivedAt: time.Now(),
		Event: store.Event{Kind: store.EventAuthSuccess, Type: "auth", User: &store.UserSnapshot{UserID: "u-other", Provider: "OURA"}}})
	if _, err := e.store.GetBackfill(ctx, "u-other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("recorded without BACKFILL_DAYS: %v", err)
	}
}
