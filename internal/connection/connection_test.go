package connection_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
	"github.com/terragate/terragate/internal/webhook"
)

const (
	testDevID  = "connection-test-dev"
	testAPIKey = "connection-test-key"
	testSecret = "connection-test-webhook-secret"
)

// env is the service over a real SQLite file, with the Terra emulator as a real HTTP
// server and, when webhooks are on, the emulator posting signed webhooks to the real
// webhook handler in front of the service.
type env struct {
	t     *testing.T
	emu   *terrasim.Emulator
	store *sqlite.DB
	bus   *events.Local
	svc   *connection.Service
	tc    *terra.Client
	calls *afterAnswer
}

func newEnv(t *testing.T, webhooks bool) *env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "terragate.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := &env{t: t, store: st, bus: events.NewLocal(log)}

	// The emulator and the webhook receiver each need the other's address first: both
	// handlers are set before any request can reach them.
	var emuHandler, hookHandler http.Handler
	emuSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { emuHandler.ServeHTTP(w, r) }))
	t.Cleanup(emuSrv.Close)
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hookHandler.ServeHTTP(w, r) }))
	t.Cleanup(hookSrv.Close)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	e.calls = &afterAnswer{next: transport, hooks: map[string]func(){}}
	tc := terra.New(terra.Config{
		BaseURL:         emuSrv.URL + "/v2",
		DevID:           testDevID,
		APIKey:          testAPIKey,
		Timeout:         5 * time.Second,
		BreakerDisabled: true,
	}, &http.Client{Transport: e.calls}, log)
	e.tc = tc
	mapping := connection.NewMapping(testRefs, nil)
	e.svc = connection.New(tc, st, e.bus, mapping, nil, log)

	cfg := terrasim.Config{
		DevID: testDevID, APIKey: testAPIKey, WebhookSecret: testSecret,
		RetryDelays: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond},
	}
	if webhooks {
		cfg.WebhookURL = hookSrv.URL
	}
	e.emu = terrasim.New(cfg)
	t.Cleanup(e.emu.Close)
	hooks, err := webhook.New([]string{testSecret}, mapping.DecodeEvent, e.svc, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	emuHandler, hookHandler = e.emu, hooks
	return e
}

// afterAnswer runs a hook once Terra has answered a call to a path and before the client
// reads the answer: what happens at Terra (and reaches terragate) between Terra building
// a list and terragate acting on it.
type afterAnswer struct {
	next  http.RoundTripper
	mu    sync.Mutex
	hooks map[string]func()
}

func (a *afterAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(r)
	a.mu.Lock()
	hook := a.hooks[r.URL.Path]
	delete(a.hooks, r.URL.Path)
	a.mu.Unlock()
	if err == nil && hook != nil {
		hook()
	}
	return resp, err
}

// once runs hook after the next answer to path (as the emulator sees it, e.g. /v2/userInfo).
func (a *afterAnswer) once(path string, hook func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hooks[path] = hook
}

func (e *env) connect(provider, ref string) terra.User {
	e.t.Helper()
	u, err := e.emu.Connect(provider, ref)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// stored returns a connection as the store has it, waiting up to 5 s for cond: webhooks
// arrive asynchronously.
func (e *env) stored(userID string, cond func(store.TerraUser) bool) store.TerraUser {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, err := e.store.TerraUser(context.Background(), userID)
		if err == nil && cond(u) {
			return u
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("connection %s: %+v (err %v) never met the condition", userID, u, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connected(u store.TerraUser) bool { return u.Status == store.StatusConnected && u.Active }

func (e *env) subscribe(ref string) <-chan events.Event {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	ch, err := e.bus.Subscribe(ctx, ref)
	if err != nil {
		e.t.Fatal(err)
	}
	return ch
}

// expect reads the next event and checks its type and Terra user.
func expect(t *testing.T, ch <-chan events.Event, typ events.Type, userID string) {
	t.Helper()
	select {
	case ev := <-ch:
		if ev.Type != typ || ev.UserID != userID {
			t.Fatalf("event %s for %s, want %s for %s", ev.Type, ev.UserID, typ, userID)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s event for %s", typ, userID)
	}
}

func expectNone(t *testing.T, ch <-chan events.Event, who string) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Errorf("%s received %s for %s", who, ev.Type, ev.UserID)
	case <-time.After(200 * time.Millisecond):
	}
}

// shapes are the two forms Terra answers userInfo?reference_id= with.
var shapes = []struct {
	name string
	// answer queues the emulator's answer to the next listing of ref in this shape.
	answer func(e *env, ref string)
}{
	{"bare array", func(*env, string) {}}, // the emulator's own answer
	{"users object", func(e *env, ref string) {
		users := []terra.User{}
		for _, u := range e.emu.Users() {
			if u.ReferenceID != nil && *u.ReferenceID == ref {
				users = append(users, u)
			}
		}
		body, err := json.Marshal(map[string]any{"users": users})
		if err != nil {
			e.t.Fatal(err)
		}
		e.emu.Fail("/v2/userInfo", terrasim.Fault{Status: http.StatusOK, Body: string(body), ContentType: "application/json"})
	}},
}

func TestSyncAddsMissingAndMarksVanished(t *testing.T) {
	for _, shape := range shapes {
		t.Run(shape.name, func(t *testing.T) {
			e := newEnv(t, false) // webhooks lost: only a sync can tell
			ctx := context.Background()
			alice, bob := e.subscribe("alice"), e.subscribe("bob")
			garmin := e.connect("GARMIN", "alice")
			e.connect("OURA", "bob")

			shape.answer(e, "alice")
			got, err := e.svc.Sync(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].UserID != garmin.UserID || !connected(got[0]) || got[0].ReferenceID != "alice" || got[0].Provider != "GARMIN" {
				t.Fatalf("first sync: %+v", got)
			}
			expect(t, alice, events.Connected, garmin.UserID)

			// At Terra, GARMIN goes and OURA comes; neither webhook reaches terragate.
			if err := e.emu.Deauth(garmin.UserID); err != nil {
				t.Fatal(err)
			}
			oura := e.connect("OURA", "alice")
			shape.answer(e, "alice")
			got, err = e.svc.Sync(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			status := map[string]store.ConnectionStatus{}
			for _, u := range got {
				status[u.UserID] = u.Status
			}
			if len(got) != 2 || status[oura.UserID] != store.StatusConnected || status[garmin.UserID] != store.StatusDisconnected {
				t.Fatalf("second sync: %+v", got)
			}
			if u, _ := e.store.TerraUser(ctx, garmin.UserID); u.Active {
				t.Errorf("the vanished connection is still active: %+v", u)
			}
			expect(t, alice, events.Connected, oura.UserID)
			expect(t, alice, events.Disconnected, garmin.UserID)

			// Nothing new at Terra: nothing changes, nothing is told.
			shape.answer(e, "alice")
			again, err := e.svc.Sync(ctx, "alice")
			if err != nil || len(again) != 2 {
				t.Fatalf("third sync: %+v %v", again, err)
			}
			expectNone(t, alice, "alice")
			// Bob's connection is his: alice's syncs neither add it nor tell him anything.
			expectNone(t, bob, "bob")
			if us, err := e.store.ListTerraUsers(ctx, "bob", true); err != nil || len(us) != 0 {
				t.Errorf("bob's connections after alice's syncs: %+v %v", us, err)
			}
		})
	}
}

func TestSyncFailureChangesNothing(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	oura := e.connect("OURA", "alice")
	if _, err := e.svc.Sync(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.emu.Deauth(oura.UserID); err != nil {
		t.Fatal(err)
	}
	e.emu.Fail("/v2/userInfo", terrasim.Fault{Status: http.StatusBadGateway, Body: "<html>bad gateway</html>", ContentType: "text/html"})
	if _, err := e.svc.Sync(ctx, "alice"); err == nil {
		t.Fatal("a sync against a failing Terra succeeded")
	}
	if u, err := e.store.TerraUser(ctx, oura.UserID); err != nil || !connected(u) {
		t.Errorf("a failed sync changed the connection: %+v %v", u, err)
	}
}

func TestSweepPagesThroughSubscriptions(t *testing.T) {
	e := newEnv(t, false)
	e.svc.SweepPageSize = 2
	ctx := context.Background()
	alice, bob := e.subscribe("alice"), e.subscribe("bob")
	a1, a2, a3 := e.connect("OURA", "alice"), e.connect("GARMIN", "alice"), e.connect("FITBIT", "alice")
	b1 := e.connect("OURA", "bob")
	c1 := e.connect("POLAR", "carol")
	e.connect("WHOOP", "") // no reference_id: no end user to give it to

	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []terra.User{a1, a2, a3, b1, c1} {
		if got, err := e.store.TerraUser(ctx, u.UserID); err != nil || !connected(got) || got.ReferenceID != *u.ReferenceID {
			t.Errorf("after the sweep, %s of %s: %+v %v", u.Provider, *u.ReferenceID, got, err)
		}
	}
	// Six users at two a page: pages 0, 1 and 2, each asked for with per_page=2.
	var pages []string
	for _, r := range e.emu.Requests() {
		if r.Path == "/v2/subscriptions" {
			if r.Query.Get("per_page") != "2" {
				t.Errorf("page asked with per_page=%q", r.Query.Get("per_page"))
			}
			pages = append(pages, r.Query.Get("page"))
		}
	}
	if strings.Join(pages, ",") != "0,1,2" {
		t.Errorf("pages read: %v", pages)
	}
	var aliceGot []string
	for range 3 {
		select {
		case ev := <-alice:
			if ev.Type != events.Connected {
				t.Errorf("alice got %s", ev.Type)
			}
			aliceGot = append(aliceGot, ev.UserID)
		case <-time.After(5 * time.Second):
			t.Fatalf("alice got %v, want three connections", aliceGot)
		}
	}
	slices.Sort(aliceGot)
	want := []string{a1.UserID, a2.UserID, a3.UserID}
	slices.Sort(want)
	if !slices.Equal(aliceGot, want) {
		t.Errorf("alice was told of %v, want %v", aliceGot, want)
	}
	expect(t, bob, events.Connected, b1.UserID)

	// A page that cannot be read leaves everything as it was: a partial list would look
	// like disconnections.
	for _, id := range []string{a2.UserID, c1.UserID} {
		if err := e.emu.Deauth(id); err != nil {
			t.Fatal(err)
		}
	}
	e.calls.once("/v2/subscriptions", func() {
		e.emu.Fail("/v2/subscriptions", terrasim.Fault{Status: http.StatusServiceUnavailable}) // page 1
	})
	if err := e.svc.Sweep(ctx); err == nil || !strings.Contains(err.Error(), "page 1") {
		t.Fatalf("a sweep with page 1 unreadable: %v", err)
	}
	for _, id := range []string{a2.UserID, c1.UserID} {
		if got, _ := e.store.TerraUser(ctx, id); !connected(got) {
			t.Errorf("a failed sweep changed %s: %+v", id, got)
		}
	}

	// Once Terra answers: alice's GARMIN and carol's only connection (carol is no longer in
	// Terra's list at all) are DISCONNECTED; the rest stays.
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]store.ConnectionStatus{
		a1.UserID: store.StatusConnected, a2.UserID: store.StatusDisconnected, a3.UserID: store.StatusConnected,
		b1.UserID: store.StatusConnected, c1.UserID: store.StatusDisconnected,
	} {
		if got, _ := e.store.TerraUser(ctx, id); got.Status != want {
			t.Errorf("%s: %s, want %s", id, got.Status, want)
		}
	}
	expect(t, alice, events.Disconnected, a2.UserID)
	expectNone(t, bob, "bob")
}

// A connection whose auth webhook lands after Terra built its list, but before the list
// is acted on, is newer than the list: it must stay CONNECTED (DISCONNECTED is final for a
// user_id), while one that was gone before the listing is still removed.
func TestReconcileKeepsConnectionsMadeWhileListing(t *testing.T) {
	paths := []struct {
		name, listing string
		reconcile     func(*connection.Service) error
	}{
		{"sync", "/v2/userInfo", func(s *connection.Service) error {
			_, err := s.Sync(context.Background(), "alice")
			return err
		}},
		{"sweep", "/v2/subscriptions", func(s *connection.Service) error { return s.Sweep(context.Background()) }},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			e := newEnv(t, true)
			ctx := context.Background()
			// A connection Terra no longer has, whose deauth webhook never came.
			now := time.Now().UTC()
			if _, err := e.svc.ApplyWebhook(ctx, store.Delivery{
				DedupeKey: "trace:lost", Source: store.SourceWebhook, SignedAt: now, ReceivedAt: now, Body: []byte(`{}`),
				Event: store.Event{Kind: store.EventAuthSuccess, Type: terra.EventAuth, ReferenceID: "alice",
					User: &store.UserSnapshot{UserID: "u-lost", Provider: "GARMIN", ReferenceID: "alice"}},
			}); err != nil {
				t.Fatal(err)
			}
			alice := e.subscribe("alice")

			var fresh terra.User
			e.calls.once(p.listing, func() {
				// Terra has built its list without it; the end user connects and the
				// signed auth webhook is applied before terragate reads the list.
				fresh = e.connect("OURA", "alice")
				e.stored(fresh.UserID, connected)
			})
			if err := p.reconcile(e.svc); err != nil {
				t.Fatal(err)
			}
			if fresh.UserID == "" {
				t.Fatal("the listing hook did not run")
			}
			if u, _ := e.store.TerraUser(ctx, fresh.UserID); !connected(u) {
				t.Errorf("the connection made while Terra listed is %s (active %v), want CONNECTED", u.Status, u.Active)
			}
			if u, _ := e.store.TerraUser(ctx, "u-lost"); u.Status != store.StatusDisconnected || u.Active {
				t.Errorf("the connection gone before the listing: %+v", u)
			}
			expect(t, alice, events.Connected, fresh.UserID)
			expect(t, alice, events.Disconnected, "u-lost")

			// The next reconcile sees it at Terra and keeps it.
			if err := p.reconcile(e.svc); err != nil {
				t.Fatal(err)
			}
			if u, _ := e.store.TerraUser(ctx, fresh.UserID); !connected(u) {
				t.Errorf("after the next reconcile: %s", u.Status)
			}
			expectNone(t, alice, "alice")
		})
	}
}

// Each kind of change Terra reports reaches the end user's subscribers as its event type,
// and no one else's.
func TestConnectionEventsReachTheirEndUserOnly(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	alice, bob := e.subscribe("alice"), e.subscribe("bob")
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	bobs := e.connect("OURA", "bob")
	expect(t, bob, events.Connected, bobs.UserID)

	oura := e.connect("OURA", "alice")
	expect(t, alice, events.Connected, oura.UserID)

	mustDo(e.emu.ChangePermissions(oura.UserID, []string{"heart:read"}, []string{"sleep:read"}))
	expect(t, alice, events.PermissionsChanged, oura.UserID)
	if u, _ := e.store.TerraUser(ctx, oura.UserID); !slices.Contains(u.Scopes, "heart:read") || slices.Contains(u.Scopes, "sleep:read") {
		t.Errorf("scopes after permission_change: %v", u.Scopes)
	}

	mustDo(e.emu.ConnectionError(oura.UserID))
	expect(t, alice, events.Error, oura.UserID)

	// Reconnecting the same account: one event, for the new user_id; the old one is gone.
	nu, err := e.emu.Reauth(oura.UserID)
	mustDo(err)
	expect(t, alice, events.Reauthenticated, nu.UserID)
	if u, _ := e.store.TerraUser(ctx, nu.UserID); !connected(u) {
		t.Errorf("the reauthenticated user: %+v", u)
	}

	fitbit := e.connect("FITBIT", "alice")
	expect(t, alice, events.Connected, fitbit.UserID)
	mustDo(e.emu.RevokeAccess(fitbit.UserID))
	expect(t, alice, events.Revoked, fitbit.UserID)

	garmin := e.connect("GARMIN", "alice")
	expect(t, alice, events.Connected, garmin.UserID)
	mustDo(e.emu.Deauth(garmin.UserID))
	expect(t, alice, events.Disconnected, garmin.UserID)

	expectNone(t, alice, "alice")
	expectNone(t, bob, "bob")

	// Bob cannot disconnect alice's connection: it reads as unknown, and no one is told.
	if _, err := e.svc.Disconnect(ctx, "bob", nu.UserID, store.AuditEntry{Actor: "bob", ActorKind: store.ActorUser}); !errors.Is(err, connection.ErrNotFound) {
		t.Errorf("bob disconnecting alice's: %v", err)
	}
	expectNone(t, alice, "alice")
}

// confirmed lists the user_ids the service asked Terra about one by one (userInfo?user_id=),
// sorted, each once.
func (e *env) confirmed() []string {
	var ids []string
	for _, r := range e.emu.Requests() {
		if r.Path == "/v2/userInfo" && r.Query.Has("user_id") {
			ids = append(ids, r.Query.Get("user_id"))
		}
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

// Terra deleting a user between two /subscriptions page reads shifts later users back a
// page, past the sweep: the skipped live connection must stay CONNECTED (DISCONNECTED is
// final for a user_id), while removed ones still end DISCONNECTED. Only users missing from
// the list are asked about.
func TestSweepConfirmsSkippedUsersBeforeDisconnecting(t *testing.T) {
	e := newEnv(t, false) // deauth webhooks are lost: only the sweep can tell
	e.svc.SweepPageSize = 2
	ctx := context.Background()
	// Oldest first, two a page: [a1 a2] [b1 c1] [d1].
	a1, a2 := e.connect("OURA", "alice"), e.connect("GARMIN", "alice")
	b1 := e.connect("OURA", "bob")
	c1, d1 := e.connect("POLAR", "carol"), e.connect("WHOOP", "dave")
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []terra.User{a1, a2, b1, c1, d1} {
		e.stored(u.UserID, connected)
	}
	if got := e.confirmed(); len(got) != 0 {
		t.Fatalf("a sweep that found everyone asked Terra about %v", got)
	}
	alice, bob, dave := e.subscribe("alice"), e.subscribe("bob"), e.subscribe("dave")

	// d1 goes before the sweep: [a1 a2] [b1 c1]. a1 goes once page 0 is read, so page 1
	// is [c1], the last: b1 slid back onto page 0, which was already read.
	if err := e.emu.Deauth(d1.UserID); err != nil {
		t.Fatal(err)
	}
	deleted := false
	e.calls.once("/v2/subscriptions", func() {
		if err := e.emu.Deauth(a1.UserID); err != nil {
			t.Error(err)
		}
		deleted = true
	})
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if !deleted {
		t.Fatal("the page hook did not run")
	}
	if got, want := e.confirmed(), sorted(b1.UserID, d1.UserID); !slices.Equal(got, want) {
		t.Errorf("asked Terra about %v, want the skipped and the removed user %v", got, want)
	}
	status := func(want map[string]store.ConnectionStatus) {
		t.Helper()
		for id, w := range want {
			u, err := e.store.TerraUser(ctx, id)
			if err != nil || u.Status != w || u.Active != (w == store.StatusConnected) {
				t.Errorf("%s: %+v %v, want %s", id, u, err, w)
			}
		}
	}
	// a1 was on page 0 when it was read: the next sweep sees it gone.
	status(map[string]store.ConnectionStatus{
		a1.UserID: store.StatusConnected, a2.UserID: store.StatusConnected, b1.UserID: store.StatusConnected,
		c1.UserID: store.StatusConnected, d1.UserID: store.StatusDisconnected,
	})
	expect(t, dave, events.Disconnected, d1.UserID)
	expectNone(t, bob, "bob")
	expectNone(t, alice, "alice")

	// Without a shift: a1 is missing, confirmed and disconnected; b1 is listed again.
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := e.confirmed(), sorted(a1.UserID, b1.UserID, d1.UserID); !slices.Equal(got, want) {
		t.Errorf("asked Terra about %v, want %v", got, want)
	}
	status(map[string]store.ConnectionStatus{
		a1.UserID: store.StatusDisconnected, a2.UserID: store.StatusConnected, b1.UserID: store.StatusConnected,
		c1.UserID: store.StatusConnected, d1.UserID: store.StatusDisconnected,
	})
	expect(t, alice, events.Disconnected, a1.UserID)
	expectNone(t, bob, "bob")
	expectNone(t, dave, "dave")
}

// When Terra cannot say whether a connection missing from its list is gone, the row is
// left as it is and the sweep carries on; the next sweep that gets an answer decides.
func TestSweepLeavesUnconfirmedConnectionsAlone(t *testing.T) {
	faults := []struct {
		name  string
		fault terrasim.Fault
	}{
		{"503", terrasim.Fault{Status: http.StatusServiceUnavailable}},
		{"500", terrasim.Fault{Status: http.StatusInternalServerError, Body: "<html>oops</html>", ContentType: "text/html"}},
		{"429", terrasim.Fault{Status: http.StatusTooManyRequests}},
		{"401", terrasim.Fault{Status: http.StatusUnauthorized, Body: `{"status":"error","message":"unauthorized"}`, ContentType: "application/json"}},
		{"connection reset", terrasim.Fault{Reset: true}},
		{"cut-off body", terrasim.Fault{Garbage: true}},
		{"200 without a user", terrasim.Fault{Status: http.StatusOK, Body: `{"status":"success"}`, ContentType: "application/json"}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			e := newEnv(t, false)
			if f.fault.Reset {
				// net/http repeats a GET whose reused connection was reset, which would
				// spend the fault meant for the other confirmation. No call has been made.
				e.calls.next.(*http.Transport).DisableKeepAlives = true
			}
			ctx := context.Background()
			a1, b1 := e.connect("OURA", "alice"), e.connect("GARMIN", "bob")
			if err := e.svc.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			// Both really go at Terra, but Terra fails to confirm it.
			for _, id := range []string{a1.UserID, b1.UserID} {
				if err := e.emu.Deauth(id); err != nil {
					t.Fatal(err)
				}
			}
			alice, bob := e.subscribe("alice"), e.subscribe("bob")
			fault := f.fault
			fault.Times = 2
			e.emu.Fail("/v2/userInfo", fault)
			if err := e.svc.Sweep(ctx); err != nil {
				t.Fatalf("a sweep whose confirmations failed: %v", err)
			}
			if got, want := e.confirmed(), sorted(a1.UserID, b1.UserID); !slices.Equal(got, want) {
				t.Errorf("asked Terra about %v, want %v", got, want)
			}
			for _, id := range []string{a1.UserID, b1.UserID} {
				if u, err := e.store.TerraUser(ctx, id); err != nil || !connected(u) {
					t.Errorf("an unconfirmed disconnection changed %s: %+v %v", id, u, err)
				}
			}
			expectNone(t, alice, "alice")
			expectNone(t, bob, "bob")

			// Terra answers again: both are confirmed gone.
			if err := e.svc.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{a1.UserID, b1.UserID} {
				if u, _ := e.store.TerraUser(ctx, id); u.Status != store.StatusDisconnected || u.Active {
					t.Errorf("%s once Terra confirmed it gone: %+v", id, u)
				}
			}
			expect(t, alice, events.Disconnected, a1.UserID)
			expect(t, bob, events.Disconnected, b1.UserID)
		})
	}
}

// Sync's listing is one call, so nothing slides past it, but it is still only a list: an
// answer that leaves out a live connection (Terra's accepted empty {}) must not end it.
func TestSyncConfirmsBeforeDisconnecting(t *testing.T) {
	cases := []struct {
		name string
		// deauth removes the user at Terra first; confirm, when set, answers the confirmation.
		deauth  bool
		confirm *terrasim.Fault
		want    store.ConnectionStatus
	}{
		{"still at Terra", false, nil, store.StatusConnected},
		{"not authenticated", false, &terrasim.Fault{Status: http.StatusOK, ContentType: "application/json"}, store.StatusDisconnected},
		{"gone", true, nil, store.StatusDisconnected},
		{"gone, Terra failing to say", true, &terrasim.Fault{Status: http.StatusBadGateway}, store.StatusConnected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, false)
			ctx := context.Background()
			oura := e.connect("OURA", "alice")
			if _, err := e.svc.Sync(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			alice := e.subscribe("alice")
			if c.deauth {
				if err := e.emu.Deauth(oura.UserID); err != nil {
					t.Fatal(err)
				}
			}
			// Both listings (the plain id, and the reference issued for the mobile SDK) answer {}.
			e.emu.Fail("/v2/userInfo", terrasim.Fault{Status: http.StatusOK, Body: `{}`, ContentType: "application/json", Times: 2})
			if c.confirm != nil {
				f := *c.confirm
				if f.Status == http.StatusOK {
					body, err := json.Marshal(map[string]any{"user": oura, "status": "success", "is_authenticated": false})
					if err != nil {
						t.Fatal(err)
					}
					f.Body = string(body)
				}
				e.emu.Fail("/v2/userInfo", f)
			}
			got, err := e.svc.Sync(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].UserID != oura.UserID || got[0].Status != c.want || got[0].Active != (c.want == store.StatusConnected) {
				t.Fatalf("after the sync: %+v, want %s", got, c.want)
			}
			if ids := e.confirmed(); !slices.Equal(ids, []string{oura.UserID}) {
				t.Errorf("asked Terra about %v, want %s once", ids, oura.UserID)
			}
			if c.want == store.StatusDisconnected {
				expect(t, alice, events.Disconnected, oura.UserID)
			}
			expectNone(t, alice, "alice")
		})
	}
}
