package connection_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/terragate/terragate/internal/store"
)

// A disconnect stores its audit entry with the change, in one commit: when Disconnect
// returns, the entry is there, naming who asked.
func TestDisconnectStoresItsAuditEntry(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	garmin := e.connect("GARMIN", "alice")
	if _, err := e.svc.Sync(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	by := store.AuditEntry{Actor: "svc:backend", ActorKind: store.ActorService, ClientIP: "192.0.2.3"}
	u, err := e.svc.Disconnect(ctx, "alice", garmin.UserID, by)
	if err != nil || u.Status != store.StatusDisconnected {
		t.Fatalf("Disconnect = %+v, %v", u, err)
	}
	page, err := e.store.ListAudit(ctx, store.AuditFilter{Action: store.ActionConnectionDisconnected}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 {
		t.Fatalf("%d disconnect entries once Disconnect returned; want 1", len(page.Entries))
	}
	if got := page.Entries[0]; got.Actor != "svc:backend" || got.Subject != garmin.UserID || got.ReferenceID != "alice" ||
		got.ClientIP != "192.0.2.3" || got.Detail["provider"] != "GARMIN" {
		t.Errorf("entry = %+v", got)
	}
	// Disconnecting it again changes nothing and records nothing.
	if _, err := e.svc.Disconnect(ctx, "alice", garmin.UserID, by); err != nil {
		t.Fatal(err)
	}
	if page, _ := e.store.ListAudit(ctx, store.AuditFilter{Action: store.ActionConnectionDisconnected}, store.Page{First: 10}); len(page.Entries) != 1 {
		t.Errorf("%d entries after a second disconnect; want 1", len(page.Entries))
	}
}

// An entry the store would refuse stops the disconnect before Terra is asked: a disconnect
// is never left without its entry.
func TestDisconnectRefusesAnUnrecordableEntry(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	garmin := e.connect("GARMIN", "alice")
	if _, err := e.svc.Sync(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	bad := store.AuditEntry{Actor: "svc:backend", ActorKind: store.ActorUser} // a service posing as a user
	if _, err := e.svc.Disconnect(ctx, "alice", garmin.UserID, bad); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Disconnect with a refused entry: %v; want ErrInvalid", err)
	}
	if u, _ := e.store.TerraUser(ctx, garmin.UserID); u.Status != store.StatusConnected {
		t.Errorf("the connection: %+v", u)
	}
	for _, r := range e.emu.Requests() {
		if strings.Contains(r.Path, "deauth") {
			t.Errorf("Terra was asked to deauthenticate: %s", r.Path)
		}
	}
}
