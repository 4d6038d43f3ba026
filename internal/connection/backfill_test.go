package connection_test

import (
	"context"
	"errors"
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
}
