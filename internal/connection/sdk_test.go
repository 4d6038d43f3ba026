package connection_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/sdkref"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// testRefKey keys the references the tests' service verifies.
var testRefs = sdkref.New([]byte("connection-test-sdk-reference-key"))

// sdkConnect plays a phone connecting provider through Terra's mobile SDK with a fresh
// token and the reference_id the device chose.
func (e *env) sdkConnect(provider, ref string) terra.User {
	e.t.Helper()
	tok, _, err := e.tc.GenerateAuthToken(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := e.emu.SDKConnect(tok, provider, ref)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *env) listed(ref string) []string {
	e.t.Helper()
	users, err := e.store.ListTerraUsers(context.Background(), ref, true)
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, u := range users {
		ids = append(ids, u.UserID)
	}
	return ids
}

func (e *env) audits(action string) []store.AuditEntry {
	e.t.Helper()
	page, err := e.store.ListAudit(context.Background(), store.AuditFilter{Action: action}, store.Page{First: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	return page.Entries
}

// TestSDKAttribution: with the mobile SDK the device sets reference_id, so an SDK
// connection belongs to an end user only when its reference is one terragate issued.
func TestSDKAttribution(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	_, bobTag, _ := sdkref.Split(testRefs.For("bob"))
	issued := testRefs.For("alice")
	altered := []byte(issued)
	altered[len(altered)-1] ^= 1

	// A widget session of alice's that is still open: an SDK connection is not its outcome.
	sess := store.WidgetSession{ID: "sess-alice", ReferenceID: "alice", ExpiresAt: time.Now().Add(time.Hour), InputKey: "k"}
	if err := e.store.CreateWidgetSession(ctx, sess); err != nil {
		t.Fatal(err)
	}

	good := e.sdkConnect("APPLE", issued)
	if u := e.stored(good.UserID, connected); u.ReferenceID != "alice" {
		t.Errorf("verified SDK connection stored for %q, want alice", u.ReferenceID)
	}
	forged := map[string]string{}
	for reason, ref := range map[string]string{
		"reference_not_issued":   "alice",
		"reference_tag_invalid":  string(altered),
		"reference_tag_invalid ": "alice~" + bobTag, // someone else's tag
		"no_reference":           "",
	} {
		u := e.sdkConnect("SAMSUNG", ref)
		forged[u.UserID] = reason
		if got := e.stored(u.UserID, connected); got.ReferenceID != "" {
			t.Errorf("reference %q: stored for %q, want nobody", ref, got.ReferenceID)
		}
	}

	if s, err := e.store.WidgetSession(ctx, sess.ID); err != nil || s.Status != store.SessionCreated {
		t.Errorf("alice's open widget session: %+v, %v; want it left CREATED", s, err)
	}
	widget := e.connect("OURA", "alice") // widget connections are unchanged
	e.stored(widget.UserID, connected)
	if got, want := sorted(e.listed("alice")...), sorted(good.UserID, widget.UserID); !slices.Equal(got, want) {
		t.Errorf("alice's connections %v, want %v", got, want)
	}
	if got := e.listed("bob"); len(got) != 0 {
		t.Errorf("bob's connections %v", got)
	}

	// Why each forged one is listed for nobody is in the audit log, with the end user it
	// claimed; the verified one is an ordinary connection.added.
	entries := e.audits(store.ActionConnectionUnattributed)
	if len(entries) != len(forged) {
		t.Fatalf("%d unattributed entries, want %d: %+v", len(entries), len(forged), entries)
	}
	for _, a := range entries {
		reason, ok := forged[a.Subject]
		if !ok {
			t.Errorf("entry about %s", a.Subject)
			continue
		}
		wantClaim := "alice"
		if reason == "no_reference" {
			wantClaim = ""
		}
		if a.Detail["reason"] != trim(reason) || a.Detail["provider"] != "SAMSUNG" || a.ReferenceID != wantClaim || a.ActorKind != store.ActorTerra {
			t.Errorf("entry %+v, want reason %s claiming %q", a, reason, wantClaim)
		}
	}
	added := e.audits(store.ActionConnectionAdded)
	if !slices.ContainsFunc(added, func(a store.AuditEntry) bool { return a.Subject == good.UserID && a.ReferenceID == "alice" }) {
		t.Errorf("no connection.added for the verified SDK connection: %+v", added)
	}

	// A later event naming the plain id does not attach a forged connection to anyone.
	for id := range forged {
		if err := e.emu.ChangePermissions(id, []string{"heart:read"}, nil); err != nil {
			t.Fatal(err)
		}
		if u := e.stored(id, func(u store.TerraUser) bool { return slices.Contains(u.Scopes, "heart:read") }); u.ReferenceID != "" {
			t.Errorf("after permission_change: stored for %q", u.ReferenceID)
		}
	}

	// Reconnecting keeps the attribution, and a deauth ends it as for any connection.
	nu, err := e.emu.Reauth(good.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if u := e.stored(nu.UserID, connected); u.ReferenceID != "alice" {
		t.Errorf("reauthenticated SDK connection stored for %q", u.ReferenceID)
	}
	u, err := e.svc.Disconnect(ctx, "alice", nu.UserID, store.AuditEntry{Actor: "alice", ActorKind: store.ActorUser})
	if err != nil || u.Status != store.StatusDisconnected {
		t.Errorf("Disconnect = %+v, %v", u, err)
	}
}

func trim(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

// TestSDKReauthKeepsAttribution: a user_reauth whose new user carries a reference that does
// not verify (the app re-initialised with a plain id) stays with the old connection's end
// user; one for a connection listed for nobody stays with nobody.
func TestSDKReauthKeepsAttribution(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	good := e.sdkConnect("APPLE", testRefs.For("alice"))
	e.stored(good.UserID, connected)
	forged := e.sdkConnect("APPLE", "alice")
	e.stored(forged.UserID, connected)

	mapping := connection.NewMapping(testRefs, nil)
	for i, old := range []terra.User{good, forged} {
		body, _ := json.Marshal(map[string]any{
			"type": "user_reauth", "status": "warning",
			"old_user": old,
			"new_user": map[string]any{"user_id": "new-" + old.UserID, "provider": "APPLE", "reference_id": "alice"},
		})
		ev, err := mapping.DecodeEvent(body)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		if _, err := e.svc.ApplyWebhook(ctx, store.Delivery{DedupeKey: "reauth-" + old.UserID, Source: store.SourceWebhook,
			SignedAt: now, ReceivedAt: now, Body: body, Event: ev}); err != nil {
			t.Fatal(err)
		}
		want := []string{"alice", ""}[i]
		if u := e.stored("new-"+old.UserID, connected); u.ReferenceID != want {
			t.Errorf("reauth of %s: stored for %q, want %q", old.UserID, u.ReferenceID, want)
		}
	}
}

// TestSDKSync: reconciliation reads Terra's lists by reference; an SDK connection with a
// plain reference is at Terra under the end user's plain id but must not be added for
// them, and a verified one is listed under its tagged reference, which sync asks for too.
func TestSDKSync(t *testing.T) {
	setup := func(t *testing.T) (e *env, good, widget terra.User) {
		e = newEnv(t, false) // webhooks lost: only the lists tell
		good = e.sdkConnect("HEALTH_CONNECT", testRefs.For("alice"))
		e.sdkConnect("APPLE", "alice")
		e.sdkConnect("SAMSUNG", "alice~AAAAAAAAAAAAAAAA")
		widget = e.connect("GARMIN", "alice")
		return e, good, widget
	}
	t.Run("sync", func(t *testing.T) {
		e, good, widget := setup(t)
		users, err := e.svc.Sync(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range users {
			got = append(got, u.UserID)
			if u.ReferenceID != "alice" {
				t.Errorf("%s stored for %q", u.UserID, u.ReferenceID)
			}
		}
		if want := sorted(good.UserID, widget.UserID); !slices.Equal(sorted(got...), want) {
			t.Errorf("after sync: %v, want %v", got, want)
		}
	})
	t.Run("sweep", func(t *testing.T) {
		e, good, widget := setup(t)
		if err := e.svc.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, want := sorted(e.listed("alice")...), sorted(good.UserID, widget.UserID); !slices.Equal(got, want) {
			t.Errorf("after the sweep: %v, want %v", got, want)
		}
		if refs, _ := e.store.ReferenceIDs(context.Background()); !slices.Equal(refs, []string{"alice"}) {
			t.Errorf("end users after the sweep: %v", refs)
		}
	})
}
