package storetest

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/terragate/terragate/internal/store"
)

// This file tests dead letters: deliveries the store refuses for a reason retrying will not
// fix, kept in the inbox with their reason, holding up nothing behind them, and replayed once
// the caller has a delivery that applies.

// selfReauth is a delivery every engine refuses with ErrInvalid once it has loaded the rows: a
// user_reauth whose old and new user are the same.
func selfReauth(key string, signed time.Time, userID string) store.Delivery {
	return delivery(key, signed, store.Event{
		Kind: store.EventReauth, Type: "user_reauth", User: snap(userID, "", ""), OldUser: snap(userID, "", ""),
	})
}

// deadLetter applies d, which must fail with ErrInvalid, and keeps it as a dead letter with
// that error as its reason, as the webhook handler does.
func (s *suite) deadLetter(d store.Delivery) store.InboxEvent {
	s.t.Helper()
	out, err := s.s.ApplyWebhook(s.ctx, d)
	if !errors.Is(err, store.ErrInvalid) {
		s.t.Fatalf("ApplyWebhook(%s) = %+v, %v; want ErrInvalid", d.DedupeKey, out, err)
	}
	e, err := s.s.RecordDeadLetter(s.ctx, d, err.Error())
	if err != nil {
		s.t.Fatalf("RecordDeadLetter(%s): %v", d.DedupeKey, err)
	}
	return e
}

func (s *suite) event(id int64) store.InboxEvent {
	s.t.Helper()
	e, err := s.s.WebhookEvent(s.ctx, id)
	if err != nil {
		s.t.Fatalf("WebhookEvent(%d): %v", id, err)
	}
	return e
}

func (s *suite) deadLetters() []string {
	s.t.Helper()
	events, _ := walk(s.t, 10, s.inboxPages(store.InboxFilter{Outcome: string(store.InboxFailed)}),
		func(e store.InboxEvent) string { return e.DedupeKey })
	for _, e := range events {
		if e.Outcome != store.InboxFailed {
			s.t.Errorf("dead letter listing holds %s, outcome %q", e.DedupeKey, e.Outcome)
		}
	}
	return dedupeKeys(events)
}

// diffEvent lists the fields in which two reads of one inbox row differ.
func diffEvent(a, b store.InboxEvent) []string {
	var d []string
	check := func(name string, same bool) {
		if !same {
			d = append(d, name)
		}
	}
	check("ID", a.ID == b.ID)
	check("DedupeKey", a.DedupeKey == b.DedupeKey)
	check("Source", a.Source == b.Source)
	check("TraceID", a.TraceID == b.TraceID)
	check("Type", a.Type == b.Type)
	check("Kind", a.Kind == b.Kind)
	check("SignedAt", a.SignedAt.Equal(b.SignedAt))
	check("ReceivedAt", a.ReceivedAt.Equal(b.ReceivedAt))
	check("Body", string(a.Body) == string(b.Body))
	check("AppliedAt", sameTimePtr(a.AppliedAt, b.AppliedAt))
	check("Outcome", a.Outcome == b.Outcome)
	check("Error", a.Error == b.Error)
	check("ReplayedAt", sameTimePtr(a.ReplayedAt, b.ReplayedAt))
	check("Replays", a.Replays == b.Replays)
	return d
}

func wantSameEvent(t *testing.T, what string, got, want store.InboxEvent) {
	t.Helper()
	if d := diffEvent(got, want); len(d) > 0 {
		t.Errorf("%s differs in %v:\n got %+v\nwant %+v", what, d, got, want)
	}
}

func testDeadLetterRecord(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	before := s.user("u1")
	bad := selfReauth("k2", at(5), "u1")
	bad.Source = store.SourceWebhook
	e := s.deadLetter(bad)

	if e.ID == 0 || e.DedupeKey != "k2" || e.Source != store.SourceWebhook || e.TraceID != "trace-k2" ||
		e.Type != "user_reauth" || e.Kind != store.EventReauth || string(e.Body) != string(bad.Body) {
		t.Errorf("dead letter = %+v; want k2 as delivered", e)
	}
	wantTime(t, "SignedAt", e.SignedAt, at(5))
	wantTime(t, "ReceivedAt", e.ReceivedAt, at(7))
	if e.Outcome != store.InboxFailed || e.AppliedAt != nil || e.ReplayedAt != nil || e.Replays != 0 {
		t.Errorf("dead letter = %+v; want failed, never applied nor replayed", e)
	}
	if !strings.Contains(e.Error, "same old and new user") {
		t.Errorf("Error = %q; want the reason given", e.Error)
	}
	wantSameEvent(t, "WebhookEvent", s.event(e.ID), e)
	inbox := s.inbox()
	if len(inbox) != 2 {
		t.Fatalf("inbox has %d rows; want 2", len(inbox))
	}
	wantSameEvent(t, "inbox", inbox[1], e)
	wantIDs(t, "dead letters", s.deadLetters(), "k2")
	page, err := s.s.ListWebhookEvents(s.ctx, store.InboxFilter{Outcome: string(store.InboxFailed)}, store.Page{First: 10})
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("ListWebhookEvents(failed) = %+v, %v; want k2", page, err)
	}
	wantSameEvent(t, "ListWebhookEvents", page.Events[0], e)
	if d := diffUser(before, s.user("u1")); len(d) > 0 {
		t.Errorf("a dead letter changed the user: %v", d)
	}

	// A kind this build does not know may be the very bug: it is kept too.
	odd := delivery("k3", at(6), store.Event{Kind: "exploded", Type: "mystery"})
	if _, err := s.s.ApplyWebhook(s.ctx, odd); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ApplyWebhook(unknown kind): %v; want ErrInvalid", err)
	}
	if e, err := s.s.RecordDeadLetter(s.ctx, odd, "unknown kind"); err != nil || e.Kind != "exploded" || e.Error != "unknown kind" {
		t.Errorf("RecordDeadLetter(unknown kind) = %+v, %v; want it kept", e, err)
	}

	// Reasons are cleaned and cut: one line of valid UTF-8, at most MaxErrorLen bytes.
	long := "bad\x00 data\n\xff" + strings.Repeat("é", store.MaxErrorLen)
	e, err = s.s.RecordDeadLetter(s.ctx, delivery("k4", at(7), store.Event{Kind: store.EventIgnored}), long)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Error) > store.MaxErrorLen || !utf8.ValidString(e.Error) || !strings.HasPrefix(e.Error, "bad data \uFFFDé") ||
		!strings.HasSuffix(e.Error, "…") || s.event(e.ID).Error != e.Error {
		t.Errorf("Error = %q (%d bytes); want it cleaned and cut to %d bytes", e.Error, len(e.Error), store.MaxErrorLen)
	}

	for name, tc := range map[string]struct {
		d      store.Delivery
		reason string
	}{
		"no reason":      {delivery("k5", at(1), store.Event{Kind: store.EventIgnored}), " \n "},
		"no dedupe key":  {delivery("", at(1), store.Event{Kind: store.EventIgnored}), "bad"},
		"no signed time": {delivery("k6", time.Time{}, store.Event{Kind: store.EventIgnored}), "bad"},
		"no kind":        {delivery("k7", at(1), store.Event{}), "bad"},
		"unknown source": {func() store.Delivery {
			d := delivery("k8", at(1), store.Event{Kind: store.EventIgnored})
			d.Source = "mail"
			return d
		}(), "bad"},
	} {
		if e, err := s.s.RecordDeadLetter(s.ctx, tc.d, tc.reason); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("RecordDeadLetter(%s) = %+v, %v; want ErrInvalid", name, e, err)
		}
	}
	wantIDs(t, "dead letters", s.deadLetters(), "k4", "k3", "k2")
}

func testDeadLetterDuplicates(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	first := s.deadLetter(selfReauth("k2", at(5), "u1"))

	// Terra's retry of the same delivery, dead-lettered again: the row as it was.
	again, err := s.s.RecordDeadLetter(s.ctx, selfReauth("k2", at(5), "u1"), "another reason")
	if err != nil {
		t.Fatalf("second RecordDeadLetter: %v", err)
	}
	wantSameEvent(t, "second RecordDeadLetter", again, first)
	// Or applied: a duplicate, applying nothing and changing nothing.
	before := s.user("u1")
	fixed := delivery("k2", at(5), store.Event{Kind: store.EventReauth, User: snap("u2", "", ""), OldUser: snap("u1", "", "")})
	if out := s.apply(fixed); !out.Duplicate || len(out.Users) != 0 {
		t.Errorf("ApplyWebhook of a dead letter's key = %+v; want Duplicate only", out)
	}
	s.noUser("u2")
	if d := diffUser(before, s.user("u1")); len(d) > 0 {
		t.Errorf("a duplicate changed the user: %v", d)
	}
	wantSameEvent(t, "dead letter after duplicates", s.event(first.ID), first)

	// A dead letter of a key already applied returns the applied row, untouched.
	applied := s.inbox()[0]
	got, err := s.s.RecordDeadLetter(s.ctx, authSuccess("k1", at(1), snap("u1", "alice", "OURA")), "bad")
	if err != nil {
		t.Fatalf("RecordDeadLetter of an applied key: %v", err)
	}
	wantSameEvent(t, "RecordDeadLetter of an applied key", got, applied)
	if n := len(s.inbox()); n != 2 {
		t.Errorf("inbox has %d rows; want 2", n)
	}
	wantIDs(t, "dead letters", s.deadLetters(), "k2")
}

func testDeadLetterReplay(t *testing.T, s *suite) {
	// An auth success without a user id: the widget session waits for it.
	s.createSession("ws-1", "alice", at(0))
	bad := authSuccess("k1", at(1), snap("", "alice", "OURA"))
	bad.Event.WidgetSessionID = terraID("ws-1")
	dead := s.deadLetter(bad)
	if got := s.session("ws-1"); got.Status != store.SessionCreated {
		t.Fatalf("session %s after a dead letter; want CREATED", got.Status)
	}

	// The caller decodes it again with the bug fixed.
	fixed := bad
	fixed.Event.User = snap("u1", "alice", "OURA", "activity")
	fixed.Event.Type = "auth"
	out, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed)
	if err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	if out.Duplicate || out.Session == nil || !out.SessionChanged || out.Session.Status != store.SessionCompleted ||
		out.Session.TerraUserID != "u1" {
		t.Errorf("outcome = %+v; want ws-1 completed by u1", out)
	}
	if _, known := out.Before["u1"]; known {
		t.Errorf("Before = %+v; want u1 new", out.Before)
	}
	s.wantOutcomeUsers(out, "u1")
	u := s.wantState("u1", store.StatusConnected, true)
	wantTime(t, "ConnectedAt", u.ConnectedAt, at(1))
	wantTimePtr(t, "LastWebhookUpdate", u.LastWebhookUpdate, at(1))
	wantSameSession(t, "session", s.session("ws-1"), *out.Session)

	e := s.event(dead.ID)
	if e.Outcome != store.InboxApplied || e.AppliedAt == nil || e.ReplayedAt == nil || !e.AppliedAt.Equal(*e.ReplayedAt) ||
		e.Replays != 1 || e.Error != "" {
		t.Errorf("replayed row = %+v; want applied, replayed once, no error", e)
	}
	if e.AppliedAt != nil && (e.AppliedAt.Before(u.UpdatedAt) || e.AppliedAt.Location() != time.UTC) {
		t.Errorf("AppliedAt = %v; want the replay's time (the user's UpdatedAt %v), in UTC", e.AppliedAt, u.UpdatedAt)
	}
	dead.AppliedAt, dead.Outcome, dead.Error, dead.ReplayedAt, dead.Replays = e.AppliedAt, store.InboxApplied, "", e.ReplayedAt, 1
	wantSameEvent(t, "replayed row", e, dead)
	if n := len(s.inbox()); n != 1 {
		t.Errorf("inbox has %d rows; want the dead letter's alone", n)
	}
	wantIDs(t, "dead letters", s.deadLetters())
	page, err := s.s.ListWebhookEvents(s.ctx, store.InboxFilter{Outcome: string(store.InboxApplied)}, store.Page{First: 10})
	if err != nil || len(page.Events) != 1 || page.Events[0].ID != dead.ID {
		t.Errorf("applied events = %+v, %v; want the replayed row", page, err)
	}

	// Replaying again is a conflict and applies nothing twice.
	user, session := s.user("u1"), s.session("ws-1")
	if out, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second ReplayDeadLetter = %+v, %v; want ErrConflict", out, err)
	}
	if d := diffUser(user, s.user("u1")); len(d) > 0 {
		t.Errorf("second replay changed the user: %v", d)
	}
	wantSameSession(t, "session after a second replay", s.session("ws-1"), session)
	wantSameEvent(t, "row after a second replay", s.event(dead.ID), e)
}

func testDeadLetterReplayFailsAgain(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	dead := s.deadLetter(selfReauth("k2", at(5), "u1"))
	user := s.user("u1")

	// The same bad data, and then a decoding whose kind is still unknown: both fail, count,
	// and leave the row a dead letter with the latest reason and its first decoding.
	for i, d := range []store.Delivery{
		selfReauth("k2", at(5), "u1"),
		delivery("k2", at(5), store.Event{Kind: "exploded", Type: "user_reauth"}),
	} {
		out, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, d)
		if !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("replay %d = %+v, %v; want ErrInvalid", i+1, out, err)
		}
		e := s.event(dead.ID)
		if e.Outcome != store.InboxFailed || e.AppliedAt != nil || e.ReplayedAt == nil || e.Replays != i+1 ||
			e.Error == "" || e.Kind != store.EventReauth || e.Type != "user_reauth" {
			t.Errorf("row after replay %d = %+v; want still failed, %d replays", i+1, e, i+1)
		}
		if i == 1 && !strings.Contains(e.Error, "exploded") {
			t.Errorf("Error = %q; want the new reason", e.Error)
		}
	}
	if d := diffUser(user, s.user("u1")); len(d) > 0 {
		t.Errorf("failed replays changed the user: %v", d)
	}
	s.noUser("u2")
	wantIDs(t, "dead letters", s.deadLetters(), "k2")

	// The fix, at last.
	fixed := delivery("k2", at(5), store.Event{Kind: store.EventReauth, Type: "user_reauth", User: snap("u2", "", ""), OldUser: snap("u1", "", "")})
	out, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed)
	if err != nil {
		t.Fatalf("third replay: %v", err)
	}
	s.wantOutcomeUsers(out, "u1", "u2")
	if o := s.wantState("u1", store.StatusDisconnected, false); o.ReplacedBy != "u2" {
		t.Errorf("u1 ReplacedBy = %q; want u2", o.ReplacedBy)
	}
	if n := s.wantState("u2", store.StatusConnected, true); n.ReferenceID != "alice" || n.Provider != "OURA" {
		t.Errorf("u2 = %+v; want alice's OURA", n)
	}
	if e := s.event(dead.ID); e.Outcome != store.InboxApplied || e.Replays != 3 || e.Error != "" || e.AppliedAt == nil {
		t.Errorf("row = %+v; want applied after 3 replays", e)
	}
}

func testDeadLetterReplayRefused(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	applied := s.inbox()[0]
	dead := s.deadLetter(selfReauth("k2", at(5), "u1"))
	fixed := delivery("k2", at(5), store.Event{Kind: store.EventDeauth, User: snap("u1", "", "")})

	if e, err := s.s.WebhookEvent(s.ctx, 999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WebhookEvent(999) = %+v, %v; want ErrNotFound", e, err)
	}
	if out, err := s.s.ReplayDeadLetter(s.ctx, 999, fixed); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReplayDeadLetter(999) = %+v, %v; want ErrNotFound", out, err)
	}
	// A row that never failed.
	if out, err := s.s.ReplayDeadLetter(s.ctx, applied.ID, authSuccess("k1", at(1), snap("u1", "alice", "OURA"))); !errors.Is(err, store.ErrConflict) {
		t.Errorf("ReplayDeadLetter(applied row) = %+v, %v; want ErrConflict", out, err)
	}
	wantSameEvent(t, "applied row", s.event(applied.ID), applied)
	// Another delivery than the row's: refused, not counted as a replay.
	other := fixed
	other.DedupeKey = "k3"
	fromSync := fixed
	fromSync.Source = store.SourceSync
	for name, d := range map[string]store.Delivery{"another key": other, "another source": fromSync} {
		if out, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, d); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ReplayDeadLetter(%s) = %+v, %v; want ErrInvalid", name, out, err)
		}
	}
	wantSameEvent(t, "dead letter after refused replays", s.event(dead.ID), dead)
	s.wantState("u1", store.StatusConnected, true)
}

func testDeadLetterNoBlocking(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA", "activity")))
	dead := s.deadLetter(selfReauth("k2", at(5), "u1"))

	// Deliveries behind the dead letter, about the same user and others, apply as usual.
	out := s.apply(userEvent(store.EventConnectionError, "k3", at(6), "u1"))
	s.wantOutcomeUsers(out, "u1")
	s.wantState("u1", store.StatusError, true)
	s.apply(authSuccess("k4", at(7), snap("u9", "bob", "GARMIN")))
	s.wantState("u9", store.StatusConnected, true)
	s.apply(userEvent(store.EventDeauth, "k5", at(10), "u1"))
	s.wantState("u1", store.StatusDisconnected, false)
	for _, e := range s.inbox() {
		if want := e.DedupeKey == "k2"; (e.Outcome == store.InboxFailed) != want {
			t.Errorf("inbox %s: outcome %q", e.DedupeKey, e.Outcome)
		}
	}

	// A replay later goes through the same ordering rules: an older permission change
	// applies its scopes to the final row but cannot revive it.
	fixed := delivery("k2", at(5), store.Event{Kind: store.EventPermissionChange, Type: "permission_change", User: snap("u1", "", "", "activity", "sleep")})
	out, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed)
	if err != nil {
		t.Fatal(err)
	}
	s.wantOutcomeUsers(out, "u1")
	if u := s.wantState("u1", store.StatusDisconnected, false); !slices.Equal(u.Scopes, []string{"activity", "sleep"}) {
		t.Errorf("u1 scopes = %q; want the replayed ones", u.Scopes)
	}
	// Replaying old news that changes nothing is recorded as such, under the replayed kind.
	s.apply(authSuccess("k7", at(20), snap("u9", "bob", "GARMIN")))
	dead2 := s.deadLetter(selfReauth("k6", at(8), "u9"))
	out, err = s.s.ReplayDeadLetter(s.ctx, dead2.ID, authSuccess("k6", at(8), snap("u9", "bob", "GARMIN")))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Users) != 0 {
		t.Errorf("outcome users = %+v; want none", out.Users)
	}
	if e := s.event(dead2.ID); e.Outcome != store.InboxUnchanged || e.Kind != store.EventAuthSuccess || e.Type != "auth" {
		t.Errorf("row = %+v; want unchanged, as the auth_success replayed", e)
	}
}

// testDeadLetterReplayConcurrent replays one dead letter from many goroutines at once: one
// applies it, every other finds it replayed.
func testDeadLetterReplayConcurrent(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	dead := s.deadLetter(selfReauth("k2", at(5), "u1"))
	fixed := delivery("k2", at(5), store.Event{Kind: store.EventPermissionChange, User: snap("u1", "", ""), ScopesAdded: []string{"sleep"}})
	const workers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	for range workers {
		wg.Go(func() {
			_, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed)
			name := "applied"
			switch {
			case errors.Is(err, store.ErrConflict):
				name = "conflict"
			case err != nil:
				name = err.Error()
			}
			mu.Lock()
			results[name]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if results["applied"] != 1 || results["conflict"] != workers-1 {
		t.Errorf("replays: %v; want 1 applied and %d conflicts", results, workers-1)
	}
	if e := s.event(dead.ID); e.Replays != 1 || e.Outcome != store.InboxApplied {
		t.Errorf("row = %+v; want applied by one replay", e)
	}
}
