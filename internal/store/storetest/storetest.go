// Package storetest is the conformance suite every store engine passes, so that engines
// cannot drift apart: each engine's tests call Run with a function that opens a fresh, empty
// store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// T0 is the suite's reference time; event times are offsets from it.
var T0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// Run runs the suite. open must return a new, empty store each time it is called and close
// it when the test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	h := func(fn func(t *testing.T, s *suite)) func(t *testing.T) {
		return func(t *testing.T) {
			t.Parallel()
			fn(t, newSuite(t, open(t)))
		}
	}
	t.Run("Sessions", func(t *testing.T) {
		t.Run("CreateGet", h(testSessionCreateGet))
		t.Run("Defaults", h(testSessionDefaults))
		t.Run("Conflict", h(testSessionConflict))
		t.Run("NotFound", h(testNotFound))
		t.Run("Invalid", h(testSessionInvalid))
		t.Run("TerraIDConflict", h(testSessionTerraIDConflict))
		t.Run("Reuse", h(testSessionReuse))
		t.Run("ReuseEmptyKey", h(testSessionReuseEmptyKey))
		t.Run("ConsumeReturn", h(testConsumeReturn))
		t.Run("ConsumeReturnConcurrent", h(testConsumeReturnConcurrent))
		t.Run("Expire", h(testExpire))
		t.Run("ExpiredThenOutcome", h(testExpiredThenOutcome))
		t.Run("StateMachineEveryOrder", h(testSessionStateMachine))
	})
	t.Run("ReferenceIDs", h(testReferenceIDs))
	t.Run("List", func(t *testing.T) {
		t.Run("Order", h(testListOrder))
		t.Run("Filter", h(testListFilter))
		t.Run("Isolation", h(testListIsolation))
		t.Run("Many", h(testListMany))
	})
	t.Run("Events", func(t *testing.T) {
		t.Run("AuthSuccess", h(testAuthSuccess))
		t.Run("AuthSuccessReferenceFallback", h(testAuthSuccessReferenceFallback))
		t.Run("AuthSuccessKnownUser", h(testAuthSuccessKnownUser))
		t.Run("AuthFailure", h(testAuthFailure))
		t.Run("Deauth", h(testFinal(store.EventDeauth, store.StatusDisconnected)))
		t.Run("AccessRevoked", h(testFinal(store.EventAccessRevoked, store.StatusRevoked)))
		t.Run("FinalUnknownUser", h(testFinalUnknownUser))
		t.Run("ConnectionError", h(testConnectionError))
		t.Run("ConnectionErrorFinal", h(testConnectionErrorFinal))
		t.Run("PermissionChange", h(testPermissionChange))
		t.Run("PermissionChangeUnknownUser", h(testPermissionChangeUnknownUser))
		t.Run("Reauth", h(testReauth))
		t.Run("ReauthWithoutOldUser", h(testReauthWithoutOldUser))
		t.Run("Ignored", h(testIgnored))
		t.Run("WebhookTimeNeverGoesBack", h(testWebhookTimeMonotonic))
		t.Run("Invalid", h(testInvalidDelivery))
		t.Run("Source", h(testSource))
		t.Run("RedirectAndWebhook", h(testRedirectAndWebhook))
		t.Run("APIDeauth", h(testAPIDeauth))
		t.Run("SyncAuth", h(testSyncAuth))
	})
	t.Run("Duplicates", h(testDuplicates))
	t.Run("OutOfOrder", func(t *testing.T) {
		t.Parallel()
		testOutOfOrder(t, open)
	})
	t.Run("SessionMatching", func(t *testing.T) {
		t.Run("TerraSessionID", h(testMatchTerraSessionID))
		t.Run("TerragateID", h(testMatchTerragateID))
		t.Run("FlowID", h(testMatchFlowID))
		t.Run("ReferenceAndTime", h(testMatchReferenceAndTime))
		t.Run("UnknownIDFallsBackToReference", h(testMatchUnknownID))
		t.Run("ExpiredNotMatched", h(testMatchExpired))
		t.Run("SweptButAliveMatched", h(testMatchSwept))
		t.Run("CompletedNeverFallsBack", h(testCompletedNeverFallsBack))
		t.Run("SuccessOverridesFailure", h(testSuccessOverridesFailure))
	})
	t.Run("Rollback", h(testRollback))
	t.Run("ContextCanceled", h(testContextCanceled))
	t.Run("Concurrent", h(testConcurrent))
	t.Run("ConcurrentSameEvents", func(t *testing.T) {
		t.Parallel()
		testConcurrentSameEvents(t, open)
	})
	t.Run("TimesUTC", h(testTimesUTC))
	t.Run("Leases", h(testLeases))
	t.Run("Ready", h(testReady))
	t.Run("InboxPaging", h(testInboxPaging))
	t.Run("Audit", func(t *testing.T) {
		t.Run("RoundTrip", h(testAuditRoundTrip))
		t.Run("Filters", h(testAuditFilters))
		t.Run("Paging", h(testAuditPaging))
		t.Run("Invalid", h(testAuditInvalid))
		t.Run("Concurrent", h(testAuditConcurrent))
		t.Run("WithSession", h(testAuditWithSession))
		t.Run("WithDelivery", h(testAuditWithDelivery))
		t.Run("WithAPIDeauth", h(testAuditWithAPIDeauth))
	})
	t.Run("DeadLetters", func(t *testing.T) {
		t.Run("Record", h(testDeadLetterRecord))
		t.Run("Duplicates", h(testDeadLetterDuplicates))
		t.Run("Replay", h(testDeadLetterReplay))
		t.Run("ReplayFailsAgain", h(testDeadLetterReplayFailsAgain))
		t.Run("ReplayRefused", h(testDeadLetterReplayRefused))
		t.Run("NoBlocking", h(testDeadLetterNoBlocking))
		t.Run("ReplayConcurrent", h(testDeadLetterReplayConcurrent))
		t.Run("ReplayAudited", h(testDeadLetterReplayAudited))
	})
	t.Run("Relay", func(t *testing.T) { testRelay(t, open) })
	t.Run("Backfill", func(t *testing.T) { testBackfill(t, open) })
	t.Run("Admin", func(t *testing.T) {
		t.Run("UsersPage", h(testUsersPage))
		t.Run("UsersPageInvalid", h(testUsersPageInvalid))
		t.Run("Inbox", h(testInboxList))
		t.Run("InboxInvalid", h(testInboxListInvalid))
	})
}

// suite is one store under test with helpers bound to it.
type suite struct {
	t   *testing.T
	s   store.Store
	ctx context.Context
}

func newSuite(t *testing.T, s store.Store) *suite {
	t.Helper()
	return &suite{t: t, s: s, ctx: t.Context()}
}

// at is T0 plus n seconds.
func at(n int) time.Time { return T0.Add(time.Duration(n) * time.Second) }

func snap(userID, referenceID, provider string, scopes ...string) *store.UserSnapshot {
	return &store.UserSnapshot{UserID: userID, ReferenceID: referenceID, Provider: provider, Scopes: scopes}
}

// delivery builds a delivery of ev signed at signed, keyed by key.
func delivery(key string, signed time.Time, ev store.Event) store.Delivery {
	if ev.Type == "" {
		ev.Type = string(ev.Kind)
	}
	return store.Delivery{
		DedupeKey:  key,
		TraceID:    "trace-" + key,
		SignedAt:   signed,
		ReceivedAt: signed.Add(2 * time.Second),
		Body:       fmt.Appendf(nil, `{"type":%q,"key":%q}`, ev.Type, key),
		Event:      ev,
	}
}

func authSuccess(key string, signed time.Time, u *store.UserSnapshot) store.Delivery {
	return delivery(key, signed, store.Event{Kind: store.EventAuthSuccess, Type: "auth", User: u, ReferenceID: u.ReferenceID})
}

func userEvent(kind store.EventKind, key string, signed time.Time, userID string) store.Delivery {
	return delivery(key, signed, store.Event{Kind: kind, User: &store.UserSnapshot{UserID: userID}})
}

func (s *suite) apply(d store.Delivery) store.Outcome {
	s.t.Helper()
	out, err := s.s.ApplyWebhook(s.ctx, d)
	if err != nil {
		s.t.Fatalf("ApplyWebhook(%s %s): %v", d.DedupeKey, d.Event.Kind, err)
	}
	return out
}

func (s *suite) user(userID string) store.TerraUser {
	s.t.Helper()
	u, err := s.s.TerraUser(s.ctx, userID)
	if err != nil {
		s.t.Fatalf("TerraUser(%q): %v", userID, err)
	}
	return u
}

func (s *suite) noUser(userID string) {
	s.t.Helper()
	if u, err := s.s.TerraUser(s.ctx, userID); !errors.Is(err, store.ErrNotFound) {
		s.t.Fatalf("TerraUser(%q) = %+v, %v; want ErrNotFound", userID, u, err)
	}
}

func (s *suite) session(id string) store.WidgetSession {
	s.t.Helper()
	ws, err := s.s.WidgetSession(s.ctx, id)
	if err != nil {
		s.t.Fatalf("WidgetSession(%q): %v", id, err)
	}
	return ws
}

func (s *suite) list(referenceID string, includeInactive bool) []string {
	s.t.Helper()
	users, err := s.s.ListTerraUsers(s.ctx, referenceID, includeInactive)
	if err != nil {
		s.t.Fatalf("ListTerraUsers(%q, %v): %v", referenceID, includeInactive, err)
	}
	ids := make([]string, 0, len(users))
	for _, u := range users {
		ids = append(ids, u.UserID)
	}
	return ids
}

func (s *suite) inbox() []store.InboxEvent {
	s.t.Helper()
	events, err := Inbox(s.ctx, s.s)
	if err != nil {
		s.t.Fatalf("inbox: %v", err)
	}
	return events
}

// Inbox returns every delivery in s's inbox, oldest first, read page by page through
// ListWebhookEvents as operators read it.
func Inbox(ctx context.Context, s store.Store) ([]store.InboxEvent, error) {
	var events []store.InboxEvent
	p := store.Page{First: store.MaxPageSize}
	for {
		page, err := s.ListWebhookEvents(ctx, store.InboxFilter{}, p)
		if err != nil {
			return nil, err
		}
		events = append(events, page.Events...)
		if !page.HasNextPage {
			break
		}
		p.After = page.EndCursor
	}
	slices.Reverse(events)
	return events, nil
}

// terraID is the Terra session id the suite gives terragate's session id: webhooks carry it.
func terraID(id string) string { return "terra-" + id }

// createSession stores a CREATED session of referenceID created at created, living 15 min,
// with Terra's session id terraID(id).
func (s *suite) createSession(id, referenceID string, created time.Time) store.WidgetSession {
	s.t.Helper()
	ws := store.WidgetSession{
		ID:             id,
		TerraSessionID: terraID(id),
		ReferenceID:    referenceID,
		Providers:      []string{"GARMIN", "OURA"},
		URL:            "https://widget.example/session/" + id,
		CreatedAt:      created,
		ExpiresAt:      created.Add(15 * time.Minute),
	}
	if err := s.s.CreateWidgetSession(s.ctx, ws); err != nil {
		s.t.Fatalf("CreateWidgetSession(%q): %v", id, err)
	}
	return s.session(id)
}

// wantState checks the parts of a user's row that events decide.
func (s *suite) wantState(userID string, status store.ConnectionStatus, active bool) store.TerraUser {
	s.t.Helper()
	u := s.user(userID)
	if u.Status != status || u.Active != active {
		s.t.Fatalf("user %q: status %s active %v; want %s active %v", userID, u.Status, u.Active, status, active)
	}
	return u
}

func wantTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("%s = %v; want %v (UTC)", what, got, want)
	}
}

func wantTimePtr(t *testing.T, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil {
		t.Errorf("%s = nil; want %v", what, want)
		return
	}
	wantTime(t, what, *got, want)
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Errorf("%s = %q; want %q", what, got, want)
	}
}

// diffUser lists the fields that differ between two rows.
func diffUser(a, b store.TerraUser) []string {
	var d []string
	check := func(name string, same bool) {
		if !same {
			d = append(d, name)
		}
	}
	check("UserID", a.UserID == b.UserID)
	check("Provider", a.Provider == b.Provider)
	check("ReferenceID", a.ReferenceID == b.ReferenceID)
	check("Active", a.Active == b.Active)
	check("Status", a.Status == b.Status)
	check("Scopes", slices.Equal(a.Scopes, b.Scopes))
	check("ScopesAt", sameTimePtr(a.ScopesAt, b.ScopesAt))
	check("ConnectedAt", a.ConnectedAt.Equal(b.ConnectedAt))
	check("LastWebhookUpdate", sameTimePtr(a.LastWebhookUpdate, b.LastWebhookUpdate))
	check("UpdatedAt", a.UpdatedAt.Equal(b.UpdatedAt))
	check("StateAt", a.StateAt.Equal(b.StateAt))
	check("ReplacedBy", a.ReplacedBy == b.ReplacedBy)
	return d
}

func sameTimePtr(x, y *time.Time) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x.Equal(*y)
}

// diffSession lists the fields that differ between two sessions.
func diffSession(a, b store.WidgetSession) []string {
	var d []string
	check := func(name string, same bool) {
		if !same {
			d = append(d, name)
		}
	}
	check("ID", a.ID == b.ID)
	check("TerraSessionID", a.TerraSessionID == b.TerraSessionID)
	check("ReferenceID", a.ReferenceID == b.ReferenceID)
	check("Providers", slices.Equal(a.Providers, b.Providers))
	check("Language", a.Language == b.Language)
	check("SuccessRedirectURL", a.SuccessRedirectURL == b.SuccessRedirectURL)
	check("FailureRedirectURL", a.FailureRedirectURL == b.FailureRedirectURL)
	check("URL", a.URL == b.URL)
	check("ExpiresAt", a.ExpiresAt.Equal(b.ExpiresAt))
	check("CreatedAt", a.CreatedAt.Equal(b.CreatedAt))
	check("UpdatedAt", a.UpdatedAt.Equal(b.UpdatedAt))
	check("Status", a.Status == b.Status)
	check("Provider", a.Provider == b.Provider)
	check("TerraUserID", a.TerraUserID == b.TerraUserID)
	check("FailureReason", a.FailureReason == b.FailureReason)
	check("InputKey", a.InputKey == b.InputKey)
	check("ReturnUsedAt", sameTimePtr(a.ReturnUsedAt, b.ReturnUsedAt))
	return d
}

// wantSameSession fails when got differs from want in any field.
func wantSameSession(t *testing.T, what string, got, want store.WidgetSession) {
	t.Helper()
	if d := diffSession(got, want); len(d) > 0 {
		t.Errorf("%s differs in %v:\n got %+v\nwant %+v", what, d, got, want)
	}
}

// wantOutcomeUsers checks the outcome lists exactly the given users, as stored now.
func (s *suite) wantOutcomeUsers(out store.Outcome, userIDs ...string) {
	s.t.Helper()
	var got []string
	for _, u := range out.Users {
		got = append(got, u.UserID)
		if d := diffUser(u, s.user(u.UserID)); len(d) > 0 {
			s.t.Errorf("outcome user %q differs from the stored row in %v", u.UserID, d)
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(userIDs))
	wantIDs(s.t, "outcome users", got, want...)
}

func testSessionCreateGet(t *testing.T, s *suite) {
	loc := time.FixedZone("CEST", 2*3600)
	used := T0.In(loc).Add(5*time.Minute + 987654321*time.Nanosecond)
	in := store.WidgetSession{
		ID:                 "ws-1",
		TerraSessionID:     "terra-session-1",
		ReferenceID:        "alice",
		Providers:          []string{"GARMIN", "FITBIT", "OURA"},
		Language:           "en",
		SuccessRedirectURL: "https://app.example/ok?x=1",
		FailureRedirectURL: "myapp://failed",
		URL:                "https://widget.tryterra.co/session/ws-1",
		CreatedAt:          T0.In(loc).Add(123456789 * time.Nanosecond),
		UpdatedAt:          T0.In(loc).Add(time.Second),
		ExpiresAt:          T0.Add(15 * time.Minute),
		Status:             store.SessionCreated,
		InputKey:           "sha256:0a1b2c",
		ReturnUsedAt:       &used,
	}
	if err := s.s.CreateWidgetSession(s.ctx, in); err != nil {
		t.Fatal(err)
	}
	got := s.session("ws-1")
	want := in
	want.CreatedAt = T0.Add(123456 * time.Microsecond) // kept to the microsecond
	wantUsed := T0.Add(5*time.Minute + 987654*time.Microsecond)
	want.ReturnUsedAt = &wantUsed
	wantTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	wantTime(t, "UpdatedAt", got.UpdatedAt, T0.Add(time.Second))
	wantTime(t, "ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	wantTimePtr(t, "ReturnUsedAt", got.ReturnUsedAt, wantUsed)
	wantSameSession(t, "WidgetSession", got, want)
}

func testSessionDefaults(t *testing.T, s *suite) {
	before := time.Now().Add(-time.Second)
	err := s.s.CreateWidgetSession(s.ctx, store.WidgetSession{ID: "ws-d", ReferenceID: "alice", ExpiresAt: T0})
	if err != nil {
		t.Fatal(err)
	}
	got := s.session("ws-d")
	if got.Status != store.SessionCreated {
		t.Errorf("Status = %q; want CREATED", got.Status)
	}
	if got.CreatedAt.Before(before) || !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("CreatedAt %v, UpdatedAt %v; want now, and equal", got.CreatedAt, got.UpdatedAt)
	}
	if len(got.Providers) != 0 || got.TerraSessionID != "" || got.InputKey != "" || got.ReturnUsedAt != nil {
		t.Errorf("session = %+v; want no providers, Terra id, input key nor return time", got)
	}
}

func testSessionConflict(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", T0)
	err := s.s.CreateWidgetSession(s.ctx, store.WidgetSession{ID: "ws-1", ReferenceID: "bob", ExpiresAt: T0})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateWidgetSession: %v; want ErrConflict", err)
	}
	if got := s.session("ws-1"); got.ReferenceID != "alice" {
		t.Errorf("ReferenceID = %q after conflict; want alice", got.ReferenceID)
	}
}

func testNotFound(t *testing.T, s *suite) {
	if _, err := s.s.WidgetSession(s.ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WidgetSession(missing): %v; want ErrNotFound", err)
	}
	s.noUser("missing")
	if ids := s.list("nobody", true); len(ids) != 0 {
		t.Errorf("ListTerraUsers(nobody) = %q; want none", ids)
	}
}

func testSessionInvalid(t *testing.T, s *suite) {
	for name, ws := range map[string]store.WidgetSession{
		"no id":     {ReferenceID: "alice", ExpiresAt: T0},
		"no expiry": {ID: "ws-x", ReferenceID: "alice"},
		"status":    {ID: "ws-y", ReferenceID: "alice", ExpiresAt: T0, Status: "DONE"},
	} {
		if err := s.s.CreateWidgetSession(s.ctx, ws); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: CreateWidgetSession: %v; want ErrInvalid", name, err)
		}
	}
}

func testListOrder(t *testing.T, s *suite) {
	// Delivered newest first: the list still runs oldest connection first.
	for i, id := range []string{"u3", "u1", "u2"} {
		n := map[string]int{"u1": 10, "u2": 20, "u3": 30}[id]
		s.apply(authSuccess(fmt.Sprint("k", i), at(n), snap(id, "alice", "OURA")))
	}
	wantIDs(t, "list", s.list("alice", false), "u1", "u2", "u3")
}

func testListFilter(t *testing.T, s *suite) {
	s.apply(authSuccess("a1", at(1), snap("live", "alice", "OURA")))
	s.apply(authSuccess("a2", at(2), snap("failing", "alice", "GARMIN")))
	s.apply(authSuccess("a3", at(3), snap("gone", "alice", "FITBIT")))
	s.apply(authSuccess("a4", at(4), snap("revoked", "alice", "WHOOP")))
	s.apply(authSuccess("a5", at(5), snap("old", "alice", "POLAR")))
	s.apply(userEvent(store.EventConnectionError, "e1", at(10), "failing"))
	s.apply(userEvent(store.EventDeauth, "e2", at(11), "gone"))
	s.apply(userEvent(store.EventAccessRevoked, "e3", at(12), "revoked"))
	s.apply(delivery("e4", at(13), store.Event{Kind: store.EventReauth, User: snap("new", "", ""), OldUser: snap("old", "", "")}))

	wantIDs(t, "active", s.list("alice", false), "live", "failing", "new")
	wantIDs(t, "all", s.list("alice", true), "live", "failing", "gone", "revoked", "new")
}

func testListIsolation(t *testing.T, s *suite) {
	s.apply(authSuccess("a1", at(1), snap("ua", "alice", "OURA")))
	s.apply(authSuccess("b1", at(2), snap("ub", "bob", "OURA")))
	s.apply(userEvent(store.EventDeauth, "b2", at(3), "ub"))
	wantIDs(t, "alice", s.list("alice", true), "ua")
	wantIDs(t, "bob", s.list("bob", true), "ub")
	wantIDs(t, "bob active", s.list("bob", false))
	wantIDs(t, "empty reference", s.list("", true))
}

func testAuthSuccess(t *testing.T, s *suite) {
	created := at(-30)
	lwu := at(2)
	u := snap("u1", "alice", "OURA", "activity", "sleep")
	u.CreatedAt, u.LastWebhookUpdate = &created, &lwu
	d := authSuccess("k1", at(1), u)
	out := s.apply(d)
	if out.Duplicate {
		t.Fatal("first delivery reported Duplicate")
	}
	s.wantOutcomeUsers(out, "u1")
	got := s.wantState("u1", store.StatusConnected, true)
	if got.Provider != "OURA" || got.ReferenceID != "alice" || got.ReplacedBy != "" {
		t.Errorf("row = %+v", got)
	}
	wantIDs(t, "Scopes", got.Scopes, "activity", "sleep")
	wantTime(t, "ConnectedAt", got.ConnectedAt, created)
	wantTime(t, "StateAt", got.StateAt, at(1))
	wantTimePtr(t, "ScopesAt", got.ScopesAt, at(1))
	wantTimePtr(t, "LastWebhookUpdate", got.LastWebhookUpdate, lwu)
	if got.UpdatedAt.IsZero() {
		t.Error("UpdatedAt not set")
	}

	inbox := s.inbox()
	if len(inbox) != 1 {
		t.Fatalf("inbox has %d rows; want 1", len(inbox))
	}
	e := inbox[0]
	if e.DedupeKey != "k1" || e.TraceID != "trace-k1" || e.Type != "auth" || e.Kind != store.EventAuthSuccess ||
		string(e.Body) != string(d.Body) || e.Outcome != store.InboxApplied || e.AppliedAt == nil {
		t.Errorf("inbox row = %+v", e)
	}
	wantTime(t, "inbox SignedAt", e.SignedAt, d.SignedAt)
	wantTime(t, "inbox ReceivedAt", e.ReceivedAt, d.ReceivedAt)
}

func testAuthSuccessReferenceFallback(t *testing.T, s *suite) {
	d := delivery("k1", at(1), store.Event{Kind: store.EventAuthSuccess, User: snap("u1", "", "OURA"), ReferenceID: "alice"})
	s.apply(d)
	if got := s.user("u1"); got.ReferenceID != "alice" {
		t.Errorf("ReferenceID = %q; want the event's alice", got.ReferenceID)
	}
	wantTime(t, "ConnectedAt", s.user("u1").ConnectedAt, at(1))
}

func testAuthSuccessKnownUser(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA", "activity")))
	s.apply(userEvent(store.EventConnectionError, "k2", at(5), "u1"))
	before := s.user("u1")
	// A later, repeated auth (another delivery) must not clear ERROR nor change filled fields.
	out := s.apply(authSuccess("k3", at(3), snap("u1", "bob", "GARMIN", "sleep")))
	s.wantOutcomeUsers(out)
	if d := diffUser(before, s.user("u1")); len(d) > 0 {
		t.Errorf("repeated auth changed %v", d)
	}
	if e := s.inbox()[2]; e.Outcome != store.InboxUnchanged {
		t.Errorf("inbox outcome = %q; want unchanged", e.Outcome)
	}
}

func testAuthFailure(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	s.createSession("ws-2", "bob", at(0))
	out := s.apply(delivery("k1", at(10), store.Event{
		Kind: store.EventAuthFailure, Type: "auth", User: snap("u1", "alice", "OURA"),
		WidgetSessionID: terraID("ws-1"), Reason: "missing_permissions", ReferenceID: "alice",
	}))
	s.wantOutcomeUsers(out)
	s.noUser("u1")
	if out.Session == nil || out.Session.ID != "ws-1" {
		t.Fatalf("outcome session = %+v; want ws-1", out.Session)
	}
	got := s.session("ws-1")
	if got.Status != store.SessionFailed || got.FailureReason != "missing_permissions" || got.Provider != "OURA" || got.TerraUserID != "" {
		t.Errorf("session = %+v", got)
	}
	wantSameSession(t, "outcome session", *out.Session, got)

	// auth_cancelled carries no user and may carry no reason.
	s.apply(delivery("k2", at(11), store.Event{Kind: store.EventAuthFailure, Type: "auth_cancelled", ReferenceID: "bob"}))
	if got := s.session("ws-2"); got.Status != store.SessionFailed || got.FailureReason != "cancelled" {
		t.Errorf("cancelled session = %+v", got)
	}
}

func testFinal(kind store.EventKind, status store.ConnectionStatus) func(*testing.T, *suite) {
	return func(t *testing.T, s *suite) {
		s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
		out := s.apply(userEvent(kind, "k2", at(5), "u1"))
		s.wantOutcomeUsers(out, "u1")
		got := s.wantState("u1", status, false)
		wantTime(t, "StateAt", got.StateAt, at(5))
		wantTimePtr(t, "LastWebhookUpdate", got.LastWebhookUpdate, at(5))
		if got.ReferenceID != "alice" || got.Provider != "OURA" {
			t.Errorf("row lost fields: %+v", got)
		}
		// Final: nothing revives it.
		s.apply(userEvent(store.EventConnectionError, "k3", at(6), "u1"))
		s.apply(authSuccess("k4", at(7), snap("u1", "alice", "OURA")))
		s.apply(userEvent(store.EventPermissionChange, "k5", at(8), "u1"))
		s.wantState("u1", status, false)
	}
}

func testFinalUnknownUser(t *testing.T, s *suite) {
	d := userEvent(store.EventAccessRevoked, "k1", at(5), "u1")
	d.Event.User.ReferenceID, d.Event.User.Provider = "alice", "OURA"
	out := s.apply(d)
	s.wantOutcomeUsers(out, "u1")
	got := s.wantState("u1", store.StatusRevoked, false)
	if got.ReferenceID != "alice" || got.Provider != "OURA" {
		t.Errorf("tombstone = %+v", got)
	}
	wantIDs(t, "list", s.list("alice", false))
	wantIDs(t, "list all", s.list("alice", true), "u1")
}

func testConnectionError(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	out := s.apply(userEvent(store.EventConnectionError, "k2", at(5), "u1"))
	s.wantOutcomeUsers(out, "u1")
	got := s.wantState("u1", store.StatusError, true)
	wantTime(t, "StateAt", got.StateAt, at(5))
	wantIDs(t, "list", s.list("alice", false), "u1")

	// Unknown user: inserted as ERROR, still listed.
	d := userEvent(store.EventConnectionError, "k3", at(6), "u2")
	d.Event.User.ReferenceID = "alice"
	s.apply(d)
	s.wantState("u2", store.StatusError, true)
	wantIDs(t, "list", s.list("alice", false), "u1", "u2")
}

func testConnectionErrorFinal(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	s.apply(userEvent(store.EventDeauth, "k2", at(5), "u1"))
	s.apply(userEvent(store.EventConnectionError, "k3", at(9), "u1"))
	got := s.wantState("u1", store.StatusDisconnected, false)
	wantTime(t, "StateAt", got.StateAt, at(5))
	wantTimePtr(t, "LastWebhookUpdate", got.LastWebhookUpdate, at(9))
}

func testPermissionChange(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA", "activity", "sleep")))

	out := s.apply(delivery("k2", at(5), store.Event{
		Kind: store.EventPermissionChange, User: snap("u1", "", ""),
		ScopesAdded: []string{"heart"}, ScopesRemoved: []string{"sleep"},
	}))
	s.wantOutcomeUsers(out, "u1")
	got := s.wantState("u1", store.StatusConnected, true)
	wantIDs(t, "Scopes after deltas", got.Scopes, "activity", "heart")
	wantTimePtr(t, "ScopesAt", got.ScopesAt, at(5))
	wantTime(t, "StateAt", got.StateAt, at(1))

	// A full list replaces the set.
	s.apply(delivery("k3", at(6), store.Event{Kind: store.EventPermissionChange, User: snap("u1", "", "", "body")}))
	wantIDs(t, "Scopes after full list", s.user("u1").Scopes, "body")

	// An older change does not touch the scopes.
	s.apply(delivery("k4", at(4), store.Event{Kind: store.EventPermissionChange, User: snap("u1", "", ""), ScopesAdded: []string{"nutrition"}}))
	wantIDs(t, "Scopes after older change", s.user("u1").Scopes, "body")
}

func testPermissionChangeUnknownUser(t *testing.T, s *suite) {
	out := s.apply(delivery("k1", at(5), store.Event{
		Kind: store.EventPermissionChange, User: snap("u1", "alice", "OURA"), ScopesAdded: []string{"activity"},
	}))
	s.wantOutcomeUsers(out, "u1")
	got := s.wantState("u1", store.StatusConnected, true)
	wantIDs(t, "Scopes", got.Scopes, "activity")
	wantIDs(t, "list", s.list("alice", false), "u1")
}

func testReauth(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("old", "alice", "OURA", "activity")))
	out := s.apply(delivery("k2", at(10), store.Event{
		Kind: store.EventReauth, Type: "user_reauth", User: snap("new", "", "", "activity", "sleep"), OldUser: snap("old", "", ""),
	}))
	s.wantOutcomeUsers(out, "new", "old")
	n := s.wantState("new", store.StatusConnected, true)
	if n.ReferenceID != "alice" || n.Provider != "OURA" || n.ReplacedBy != "" {
		t.Errorf("new user = %+v; want alice's OURA", n)
	}
	wantTime(t, "new ConnectedAt", n.ConnectedAt, at(10))
	o := s.wantState("old", store.StatusDisconnected, false)
	if o.ReplacedBy != "new" {
		t.Errorf("old ReplacedBy = %q; want new", o.ReplacedBy)
	}
	wantIDs(t, "list", s.list("alice", false), "new")
	wantIDs(t, "list all", s.list("alice", true), "new")

	// The old id stays dead; the new one is a user like any other.
	s.apply(authSuccess("k3", at(2), snap("old", "alice", "OURA")))
	s.apply(userEvent(store.EventAccessRevoked, "k4", at(20), "old"))
	s.wantState("old", store.StatusDisconnected, false)
	s.apply(authSuccess("k5", at(11), snap("new", "alice", "OURA")))
	s.wantState("new", store.StatusConnected, true)
}

func testReauthWithoutOldUser(t *testing.T, s *suite) {
	out := s.apply(delivery("k1", at(10), store.Event{Kind: store.EventReauth, User: snap("new", "alice", "OURA")}))
	s.wantOutcomeUsers(out, "new")
	s.wantState("new", store.StatusConnected, true)
}

func testIgnored(t *testing.T, s *suite) {
	out := s.apply(delivery("k1", at(1), store.Event{Kind: store.EventIgnored, Type: "sleep", User: snap("u1", "alice", "OURA")}))
	if out.Duplicate || len(out.Users) != 0 || out.Session != nil {
		t.Errorf("outcome = %+v; want nothing", out)
	}
	s.noUser("u1")
	inbox := s.inbox()
	if len(inbox) != 1 || inbox[0].Outcome != store.InboxIgnored || inbox[0].Type != "sleep" {
		t.Errorf("inbox = %+v; want one ignored sleep row", inbox)
	}
}

func testWebhookTimeMonotonic(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	s.apply(userEvent(store.EventConnectionError, "k2", at(10), "u1"))
	s.apply(userEvent(store.EventPermissionChange, "k3", at(5), "u1"))
	got := s.user("u1")
	wantTimePtr(t, "LastWebhookUpdate", got.LastWebhookUpdate, at(10))
	wantTime(t, "StateAt", got.StateAt, at(10))
}

func testInvalidDelivery(t *testing.T, s *suite) {
	for name, d := range map[string]store.Delivery{
		"no dedupe key":    delivery("", at(1), store.Event{Kind: store.EventIgnored}),
		"no signed time":   delivery("k1", time.Time{}, store.Event{Kind: store.EventIgnored}),
		"unknown kind":     delivery("k2", at(1), store.Event{Kind: "exploded"}),
		"deauth, no user":  delivery("k3", at(1), store.Event{Kind: store.EventDeauth}),
		"auth, no user id": delivery("k4", at(1), store.Event{Kind: store.EventAuthSuccess, User: &store.UserSnapshot{}}),
		"reauth onto self": delivery("k5", at(1), store.Event{Kind: store.EventReauth, User: snap("u1", "", ""), OldUser: snap("u1", "", "")}),
	} {
		out, err := s.s.ApplyWebhook(s.ctx, d)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: ApplyWebhook = %+v, %v; want ErrInvalid", name, out, err)
		}
	}
	if inbox := s.inbox(); len(inbox) != 0 {
		t.Errorf("invalid deliveries left %d inbox rows", len(inbox))
	}
	s.noUser("u1")
}

func testDuplicates(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	first := s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	if first.Duplicate || first.Session == nil || first.Session.Status != store.SessionCompleted {
		t.Fatalf("first outcome = %+v", first)
	}
	before, sessionBefore := s.user("u1"), s.session("ws-1")

	// The same key again, even with other content (a retry is the same delivery).
	again := authSuccess("k1", at(9), snap("u1", "bob", "GARMIN", "sleep"))
	again.Event.Kind = store.EventDeauth
	out := s.apply(again)
	if !out.Duplicate || len(out.Users) != 0 || out.Session != nil {
		t.Errorf("second outcome = %+v; want Duplicate only", out)
	}
	if d := diffUser(before, s.user("u1")); len(d) > 0 {
		t.Errorf("duplicate changed the user: %v", d)
	}
	wantSameSession(t, "session after a duplicate", s.session("ws-1"), sessionBefore)
	if inbox := s.inbox(); len(inbox) != 1 {
		t.Errorf("inbox has %d rows; want 1", len(inbox))
	}
}

// pair is two deliveries to apply in both orders, and what must hold either way.
type pair struct {
	name  string
	a, b  store.Delivery
	check func(t *testing.T, s *suite)
}

func testOutOfOrder(t *testing.T, open func(t *testing.T) store.Store) {
	const u = "u1"
	auth := authSuccess("auth", at(1), snap(u, "alice", "OURA", "activity"))
	scopes := func(key string, n int, add, remove []string, full ...string) store.Delivery {
		ev := store.Event{Kind: store.EventPermissionChange, User: snap(u, "", ""), ScopesAdded: add, ScopesRemoved: remove}
		if full != nil {
			ev.User.Scopes = full
		}
		return delivery(key, at(n), ev)
	}
	pairs := []pair{
		{
			name: "DeauthAndAuth",
			a:    auth, b: userEvent(store.EventDeauth, "deauth", at(5), u),
			check: func(t *testing.T, s *suite) {
				got := s.wantState(u, store.StatusDisconnected, false)
				if got.Provider != "OURA" || got.ReferenceID != "alice" {
					t.Errorf("row = %+v; want auth's fields filled", got)
				}
				wantTime(t, "ConnectedAt", got.ConnectedAt, at(1))
				wantIDs(t, "list", s.list("alice", false))
			},
		},
		{
			name: "ConnectionErrorAndAuth",
			a:    auth, b: userEvent(store.EventConnectionError, "error", at(5), u),
			check: func(t *testing.T, s *suite) {
				s.wantState(u, store.StatusError, true)
				wantIDs(t, "list", s.list("alice", false), u)
			},
		},
		{
			name: "RevokedThenDeauth",
			a:    userEvent(store.EventAccessRevoked, "revoked", at(5), u), b: userEvent(store.EventDeauth, "deauth", at(6), u),
			check: func(t *testing.T, s *suite) { s.wantState(u, store.StatusDisconnected, false) },
		},
		{
			name: "DeauthThenRevoked",
			a:    userEvent(store.EventDeauth, "deauth", at(5), u), b: userEvent(store.EventAccessRevoked, "revoked", at(6), u),
			check: func(t *testing.T, s *suite) { s.wantState(u, store.StatusRevoked, false) },
		},
		{
			name: "PermissionChangesAddRemove",
			a:    scopes("p1", 5, []string{"sleep"}, nil), b: scopes("p2", 6, nil, []string{"sleep"}),
			check: func(t *testing.T, s *suite) {
				got := s.user(u)
				if slices.Contains(got.Scopes, "sleep") {
					t.Errorf("Scopes = %q; the newer removal must win", got.Scopes)
				}
				wantTimePtr(t, "ScopesAt", got.ScopesAt, at(6))
			},
		},
		{
			name: "PermissionChangesFull",
			a:    scopes("p1", 5, nil, nil, "activity"), b: scopes("p2", 6, nil, nil, "activity", "sleep"),
			check: func(t *testing.T, s *suite) { wantIDs(t, "Scopes", s.user(u).Scopes, "activity", "sleep") },
		},
		{
			name: "ReauthAndOldUsersAuth",
			a:    auth,
			b:    delivery("reauth", at(10), store.Event{Kind: store.EventReauth, User: snap("u2", "alice", ""), OldUser: snap(u, "", "")}),
			check: func(t *testing.T, s *suite) {
				old := s.wantState(u, store.StatusDisconnected, false)
				if old.ReplacedBy != "u2" {
					t.Errorf("old ReplacedBy = %q; want u2", old.ReplacedBy)
				}
				s.wantState("u2", store.StatusConnected, true)
				wantIDs(t, "list", s.list("alice", true), "u2")
			},
		},
	}
	for _, p := range pairs {
		for _, order := range []string{"InOrder", "Reversed"} {
			t.Run(p.name+"/"+order, func(t *testing.T) {
				t.Parallel()
				s := newSuite(t, open(t))
				first, second := p.a, p.b
				if order == "Reversed" {
					first, second = second, first
				}
				// The pairs about one user's later events start from a connected user.
				if p.a.DedupeKey != "auth" {
					s.apply(auth)
				}
				s.apply(first)
				s.apply(second)
				p.check(t, s)
			})
		}
	}
}

func testMatchTerraSessionID(t *testing.T, s *suite) {
	s.createSession("ws-old", "alice", at(0))
	s.createSession("ws-new", "alice", at(5))
	d := authSuccess("k1", at(10), snap("u1", "alice", "OURA"))
	d.Event.WidgetSessionID = terraID("ws-old")
	out := s.apply(d)
	if out.Session == nil || out.Session.ID != "ws-old" {
		t.Fatalf("outcome session = %+v; want ws-old", out.Session)
	}
	got := s.session("ws-old")
	if got.Status != store.SessionCompleted || got.TerraUserID != "u1" || got.Provider != "OURA" {
		t.Errorf("ws-old = %+v", got)
	}
	if !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("UpdatedAt %v not moved", got.UpdatedAt)
	}
	if s.session("ws-new").Status != store.SessionCreated {
		t.Error("ws-new changed")
	}
}

func testMatchTerragateID(t *testing.T, s *suite) {
	// terragate's own events (a confirmed redirect) name its own id, not Terra's.
	s.createSession("ws-old", "alice", at(0))
	s.createSession("ws-new", "alice", at(5))
	d := authSuccess("redirect:ws-old", at(10), snap("u1", "alice", "OURA"))
	d.Source, d.Event.WidgetSessionID = store.SourceRedirect, "ws-old"
	out := s.apply(d)
	if out.Session == nil || out.Session.ID != "ws-old" || out.Session.Status != store.SessionCompleted {
		t.Fatalf("outcome session = %+v; want ws-old COMPLETED", out.Session)
	}
	wantSameSession(t, "outcome session", *out.Session, s.session("ws-old"))
	if s.session("ws-new").Status != store.SessionCreated {
		t.Error("ws-new changed")
	}
	// A session from before terragate had ids of its own keeps Terra's id as its id.
	legacy := store.WidgetSession{ID: "terra-legacy", ReferenceID: "bob", CreatedAt: at(0), ExpiresAt: at(900)}
	if err := s.s.CreateWidgetSession(s.ctx, legacy); err != nil {
		t.Fatal(err)
	}
	d = authSuccess("k2", at(10), snap("u2", "bob", "OURA"))
	d.Event.WidgetSessionID = "terra-legacy"
	if out := s.apply(d); out.Session == nil || out.Session.ID != "terra-legacy" {
		t.Errorf("outcome session = %+v; want terra-legacy", out.Session)
	}
}

func testMatchFlowID(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	s.createSession("ws-2", "alice", at(5))
	out := s.apply(delivery("k1", at(10), store.Event{Kind: store.EventAuthFailure, Type: "auth_cancelled", FlowID: terraID("ws-1"), Reason: "user_cancelled"}))
	if out.Session == nil || out.Session.ID != "ws-1" || out.Session.Status != store.SessionFailed {
		t.Fatalf("outcome session = %+v; want ws-1 FAILED", out.Session)
	}
	if s.session("ws-2").Status != store.SessionCreated {
		t.Error("ws-2 changed")
	}
}

func testMatchReferenceAndTime(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	s.createSession("ws-2", "alice", at(60))
	s.createSession("ws-3", "alice", at(600)) // after the events
	s.createSession("ws-bob", "bob", at(100))

	out := s.apply(authSuccess("k1", at(120), snap("u1", "alice", "OURA")))
	if out.Session == nil || out.Session.ID != "ws-2" {
		t.Fatalf("outcome session = %+v; want ws-2, the newest created before the event", out.Session)
	}
	// ws-2 is done: the next one goes to the newest still CREATED.
	out = s.apply(authSuccess("k2", at(130), snap("u2", "alice", "GARMIN")))
	if out.Session == nil || out.Session.ID != "ws-1" {
		t.Fatalf("outcome session = %+v; want ws-1", out.Session)
	}
	if s.session("ws-3").Status != store.SessionCreated || s.session("ws-bob").Status != store.SessionCreated {
		t.Error("a session created later, or another end user's, changed")
	}
	// Signature times are whole seconds: a session created within the event's second counts.
	s.createSession("ws-4", "carol", at(200).Add(300*time.Millisecond))
	out = s.apply(authSuccess("k3", at(200), snap("u3", "carol", "OURA")))
	if out.Session == nil || out.Session.ID != "ws-4" {
		t.Errorf("outcome session = %+v; want ws-4", out.Session)
	}
}

func testMatchUnknownID(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	d := authSuccess("k1", at(10), snap("u1", "alice", "OURA"))
	d.Event.WidgetSessionID = "terra-unknown"
	out := s.apply(d)
	if out.Session == nil || out.Session.ID != "ws-1" {
		t.Errorf("outcome session = %+v; want ws-1", out.Session)
	}
}

func testMatchExpired(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0)) // expires at 900 s
	out := s.apply(authSuccess("k1", at(1000), snap("u1", "alice", "OURA")))
	if out.Session != nil {
		t.Errorf("outcome session = %+v; want none (expired)", out.Session)
	}
	if s.session("ws-1").Status != store.SessionCreated {
		t.Error("expired session changed")
	}
	s.wantState("u1", store.StatusConnected, true)
}

func testCompletedNeverFallsBack(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	d := authSuccess("k1", at(10), snap("u1", "alice", "OURA"))
	d.Event.WidgetSessionID = terraID("ws-1")
	s.apply(d)
	done := s.session("ws-1")

	fail := delivery("k2", at(20), store.Event{Kind: store.EventAuthFailure, WidgetSessionID: terraID("ws-1"), Reason: "late"})
	out := s.apply(fail)
	if out.Session == nil || out.Session.Status != store.SessionCompleted {
		t.Errorf("outcome session = %+v; want ws-1 still COMPLETED", out.Session)
	}
	other := authSuccess("k3", at(30), snap("u2", "alice", "GARMIN"))
	other.Event.WidgetSessionID = terraID("ws-1")
	s.apply(other)
	// Nor does terragate's own news, nor an expiry sweep.
	redirect := authSuccess("redirect:ws-1", at(40), snap("u3", "alice", "WHOOP"))
	redirect.Source, redirect.Event.WidgetSessionID = store.SourceRedirect, "ws-1"
	s.apply(redirect)
	if _, err := s.s.ExpireWidgetSessions(s.ctx, at(10_000)); err != nil {
		t.Fatal(err)
	}
	wantSameSession(t, "completed session", s.session("ws-1"), done)
}

func testSuccessOverridesFailure(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	s.apply(delivery("k1", at(10), store.Event{Kind: store.EventAuthFailure, WidgetSessionID: terraID("ws-1"), Reason: "timeout"}))
	d := authSuccess("k2", at(20), snap("u1", "alice", "OURA"))
	d.Event.WidgetSessionID = terraID("ws-1")
	s.apply(d)
	got := s.session("ws-1")
	if got.Status != store.SessionCompleted || got.TerraUserID != "u1" || got.FailureReason != "" {
		t.Errorf("session = %+v; want COMPLETED by u1, no failure reason", got)
	}
	// A second failure does not reopen it.
	s.apply(delivery("k3", at(30), store.Event{Kind: store.EventAuthFailure, WidgetSessionID: terraID("ws-1"), Reason: "again"}))
	if got := s.session("ws-1"); got.Status != store.SessionCompleted {
		t.Errorf("Status = %s; want COMPLETED", got.Status)
	}
}

func testRollback(t *testing.T, s *suite) {
	// The first delivery of a reauth passes the checks made before the transaction and
	// fails once the rows are loaded: nothing of it may stay.
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	before := s.user("u1")
	bad := delivery("k2", at(5), store.Event{Kind: store.EventReauth, User: snap("u1", "", ""), OldUser: snap("u1", "", "")})
	if _, err := s.s.ApplyWebhook(s.ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ApplyWebhook: %v; want ErrInvalid", err)
	}
	if inbox := s.inbox(); len(inbox) != 1 {
		t.Errorf("inbox has %d rows; want 1", len(inbox))
	}
	if d := diffUser(before, s.user("u1")); len(d) > 0 {
		t.Errorf("failed delivery changed %v", d)
	}
	// The key is free again: a corrected retry applies.
	s.apply(delivery("k2", at(5), store.Event{Kind: store.EventDeauth, User: snap("u1", "", "")}))
	s.wantState("u1", store.StatusDisconnected, false)
}

func testContextCanceled(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	ctx, cancel := context.WithCancel(s.ctx)
	cancel()
	checks := map[string]error{}
	checks["CreateWidgetSession"] = s.s.CreateWidgetSession(ctx, store.WidgetSession{ID: "ws-2", ExpiresAt: T0})
	_, checks["WidgetSession"] = s.s.WidgetSession(ctx, "ws-1")
	_, checks["TerraUser"] = s.s.TerraUser(ctx, "u1")
	_, checks["ListTerraUsers"] = s.s.ListTerraUsers(ctx, "alice", true)
	_, checks["ApplyWebhook"] = s.s.ApplyWebhook(ctx, authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	_, checks["ReusableWidgetSession"] = s.s.ReusableWidgetSession(ctx, "alice", "key", at(0))
	checks["ConsumeWidgetReturn"] = s.s.ConsumeWidgetReturn(ctx, "ws-1", at(1))
	_, checks["ExpireWidgetSessions"] = s.s.ExpireWidgetSessions(ctx, at(10_000))
	_, checks["ReferenceIDs"] = s.s.ReferenceIDs(ctx)
	checks["Ping"] = s.s.Ping(ctx)
	checks["Ready"] = s.s.Ready(ctx)
	_, checks["AcquireLease"] = s.s.AcquireLease(ctx, "sweep", "a", at(0), at(30))
	checks["ReleaseLease"] = s.s.ReleaseLease(ctx, "sweep", "a")
	_, checks["RecordDeadLetter"] = s.s.RecordDeadLetter(ctx, delivery("k2", at(1), store.Event{Kind: store.EventIgnored}), "bad")
	_, checks["WebhookEvent"] = s.s.WebhookEvent(ctx, 1)
	_, checks["ReplayDeadLetter"] = s.s.ReplayDeadLetter(ctx, 1, delivery("k2", at(1), store.Event{Kind: store.EventIgnored}))
	for name, err := range checks {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v; want context.Canceled", name, err)
		}
	}
	if _, err := s.s.WidgetSession(s.ctx, "ws-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("session created despite the canceled context: %v", err)
	}
	s.noUser("u1")
	if inbox := s.inbox(); len(inbox) != 0 {
		t.Errorf("inbox has %d rows; want 0", len(inbox))
	}
	if got := s.session("ws-1"); got.Status != store.SessionCreated || got.ReturnUsedAt != nil {
		t.Errorf("session changed despite the canceled context: %+v", got)
	}
}

func testConcurrent(t *testing.T, s *suite) {
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				uid := fmt.Sprintf("u%d", w)
				d := userEvent(store.EventPermissionChange, fmt.Sprintf("k%d-%d", w, i), at(i), uid)
				d.Event.ScopesAdded = []string{fmt.Sprint("s", i)}
				if i == 0 {
					d = authSuccess(d.DedupeKey, at(0), snap(uid, "alice", "OURA"))
				}
				if _, err := s.s.ApplyWebhook(s.ctx, d); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(s.inbox()); n != workers*each {
		t.Errorf("inbox has %d rows; want %d", n, workers*each)
	}
	if ids := s.list("alice", false); len(ids) != workers {
		t.Errorf("list = %q; want %d users", ids, workers)
	}
	if got := s.user("u0").Scopes; len(got) != each-1 {
		t.Errorf("u0 scopes = %q; want %d", got, each-1)
	}
}

func testTimesUTC(t *testing.T, s *suite) {
	loc := time.FixedZone("PDT", -7*3600)
	created := T0.In(loc).Add(-time.Hour)
	u := snap("u1", "alice", "OURA")
	u.CreatedAt = &created
	d := authSuccess("k1", at(1).In(loc), u)
	s.apply(d)
	got := s.user("u1")
	wantTime(t, "ConnectedAt", got.ConnectedAt, created)
	wantTime(t, "StateAt", got.StateAt, at(1))
	wantTimePtr(t, "LastWebhookUpdate", got.LastWebhookUpdate, at(1))
	if got.UpdatedAt.Location() != time.UTC {
		t.Errorf("UpdatedAt in %v; want UTC", got.UpdatedAt.Location())
	}
	e := s.inbox()[0]
	wantTime(t, "inbox SignedAt", e.SignedAt, at(1))
	if e.AppliedAt == nil || e.AppliedAt.Location() != time.UTC {
		t.Errorf("inbox AppliedAt = %v; want a UTC time", e.AppliedAt)
	}
}
