package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// The widget session's life after creation (reuse, the single-use return, expiry), what
// terragate feeds in itself, and the end users with connections.

// createKeyed stores a CREATED session with an input key, living 15 min from created.
func (s *suite) createKeyed(id, referenceID, inputKey string, created time.Time) store.WidgetSession {
	s.t.Helper()
	ws := store.WidgetSession{
		ID:             id,
		TerraSessionID: terraID(id),
		ReferenceID:    referenceID,
		InputKey:       inputKey,
		URL:            "https://widget.example/session/" + id,
		CreatedAt:      created,
		ExpiresAt:      created.Add(15 * time.Minute),
	}
	if err := s.s.CreateWidgetSession(s.ctx, ws); err != nil {
		s.t.Fatalf("CreateWidgetSession(%q): %v", id, err)
	}
	return s.session(id)
}

// reusable returns the id ReusableWidgetSession finds, or "" for ErrNotFound.
func (s *suite) reusable(referenceID, inputKey string, liveAfter time.Time) string {
	s.t.Helper()
	ws, err := s.s.ReusableWidgetSession(s.ctx, referenceID, inputKey, liveAfter)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		s.t.Fatalf("ReusableWidgetSession(%q, %q): %v", referenceID, inputKey, err)
	}
	if ws.ReferenceID != referenceID || ws.InputKey != inputKey {
		s.t.Errorf("ReusableWidgetSession(%q, %q) = %+v", referenceID, inputKey, ws)
	}
	wantSameSession(s.t, "reusable session", ws, s.session(ws.ID))
	return ws.ID
}

// expire runs the expiry sweep and returns the ids it expired, checking each is returned as
// stored.
func (s *suite) expire(now time.Time) []string {
	s.t.Helper()
	expired, err := s.s.ExpireWidgetSessions(s.ctx, now)
	if err != nil {
		s.t.Fatalf("ExpireWidgetSessions(%v): %v", now, err)
	}
	ids := make([]string, 0, len(expired))
	for _, ws := range expired {
		ids = append(ids, ws.ID)
		if ws.Status != store.SessionExpired {
			s.t.Errorf("expired session %q has status %s", ws.ID, ws.Status)
		}
		wantTime(s.t, "expired UpdatedAt", ws.UpdatedAt, now)
		wantSameSession(s.t, "expired session", ws, s.session(ws.ID))
	}
	slices.Sort(ids)
	return ids
}

func testSessionTerraIDConflict(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	dup := store.WidgetSession{ID: "ws-2", TerraSessionID: terraID("ws-1"), ReferenceID: "bob", ExpiresAt: at(900)}
	if err := s.s.CreateWidgetSession(s.ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateWidgetSession with a taken Terra id: %v; want ErrConflict", err)
	}
	// Sessions without a Terra id do not collide with each other.
	for _, id := range []string{"ws-3", "ws-4"} {
		if err := s.s.CreateWidgetSession(s.ctx, store.WidgetSession{ID: id, ReferenceID: "bob", ExpiresAt: at(900)}); err != nil {
			t.Fatalf("CreateWidgetSession(%s) without a Terra id: %v", id, err)
		}
	}
}

func testSessionReuse(t *testing.T, s *suite) {
	const key, other = "key-a", "key-b"
	s.createKeyed("ws-1", "alice", key, at(0))    // expires at 900 s
	s.createKeyed("ws-2", "alice", key, at(60))   // expires at 960 s
	s.createKeyed("ws-3", "alice", other, at(90)) // another input
	s.createKeyed("ws-4", "bob", key, at(120))    // another end user

	wantIDs(t, "newest live", []string{s.reusable("alice", key, at(100))}, "ws-2")
	wantIDs(t, "other key", []string{s.reusable("alice", other, at(100))}, "ws-3")
	wantIDs(t, "bob", []string{s.reusable("bob", key, at(100))}, "ws-4")
	wantIDs(t, "unknown key", []string{s.reusable("alice", "key-c", at(100))}, "")
	wantIDs(t, "unknown end user", []string{s.reusable("carol", key, at(100))}, "")
	// Live means expiring strictly after the given time.
	wantIDs(t, "only ws-2 left", []string{s.reusable("alice", key, at(900))}, "ws-2")
	wantIDs(t, "none left", []string{s.reusable("alice", key, at(960))}, "")

	// A completed session is not handed out again: the next newest is.
	d := authSuccess("k1", at(100), snap("u1", "alice", "OURA"))
	d.Event.WidgetSessionID = terraID("ws-2")
	s.apply(d)
	wantIDs(t, "after ws-2 completed", []string{s.reusable("alice", key, at(100))}, "ws-1")
	// Nor one whose return URL is spent (its next return would be refused).
	if err := s.s.ConsumeWidgetReturn(s.ctx, "ws-1", at(110)); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "after ws-1's return", []string{s.reusable("alice", key, at(110))}, "")
	// Nor a failed or an expired one.
	s.apply(delivery("k2", at(130), store.Event{Kind: store.EventAuthFailure, FlowID: terraID("ws-3")}))
	wantIDs(t, "after ws-3 failed", []string{s.reusable("alice", other, at(130))}, "")
	s.expire(at(1020))
	if s.session("ws-4").Status != store.SessionExpired {
		t.Fatal("ws-4 not expired")
	}
	wantIDs(t, "after ws-4 expired", []string{s.reusable("bob", key, at(0))}, "")
}

func testSessionReuseEmptyKey(t *testing.T, s *suite) {
	// Sessions without an input key (from before keys existed) answer no request.
	s.createKeyed("ws-1", "alice", "", at(0))
	s.createKeyed("ws-2", "", "key", at(0))
	wantIDs(t, "empty key", []string{s.reusable("alice", "", at(0))}, "")
	wantIDs(t, "empty end user", []string{s.reusable("", "key", at(0))}, "")
}

func testConsumeReturn(t *testing.T, s *suite) {
	before := s.createSession("ws-1", "alice", at(0))
	used := at(30).In(time.FixedZone("CEST", 2*3600)).Add(time.Nanosecond * 1500)
	if err := s.s.ConsumeWidgetReturn(s.ctx, "ws-1", used); err != nil {
		t.Fatalf("first ConsumeWidgetReturn: %v", err)
	}
	got := s.session("ws-1")
	wantTimePtr(t, "ReturnUsedAt", got.ReturnUsedAt, at(30).Add(time.Microsecond))
	// Only the return time changes: the session's outcome comes from events.
	want := before
	want.ReturnUsedAt = got.ReturnUsedAt
	wantSameSession(t, "session after its return", got, want)

	if err := s.s.ConsumeWidgetReturn(s.ctx, "ws-1", at(40)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second ConsumeWidgetReturn: %v; want ErrConflict", err)
	}
	wantTimePtr(t, "ReturnUsedAt after a second use", s.session("ws-1").ReturnUsedAt, at(30).Add(time.Microsecond))
	if err := s.s.ConsumeWidgetReturn(s.ctx, "missing", at(40)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ConsumeWidgetReturn(missing): %v; want ErrNotFound", err)
	}
	// The return is terragate's: Terra's id does not name it.
	if err := s.s.ConsumeWidgetReturn(s.ctx, terraID("ws-1"), at(40)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ConsumeWidgetReturn(Terra's id): %v; want ErrNotFound", err)
	}
	// Any outcome still accepts its one return.
	s.createSession("ws-2", "alice", at(0))
	s.expire(at(900))
	if err := s.s.ConsumeWidgetReturn(s.ctx, "ws-2", at(950)); err != nil {
		t.Errorf("ConsumeWidgetReturn(expired): %v", err)
	}
}

func testConsumeReturnConcurrent(t *testing.T, s *suite) {
	s.createSession("ws-1", "alice", at(0))
	const callers = 8
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { errs[i] = s.s.ConsumeWidgetReturn(s.ctx, "ws-1", at(10+i)) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("caller %d: %v; want nil or ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d callers used the return; want exactly 1", won)
	}
}

func testExpire(t *testing.T, s *suite) {
	s.createSession("due", "alice", at(0))      // expires at 900 s
	s.createSession("due-bob", "bob", at(50))   // expires at 950 s
	s.createSession("later", "alice", at(100))  // expires at 1000 s
	s.createSession("done", "alice", at(0))     // completed below
	s.createSession("failed", "alice", at(0))   // failed below
	s.createSession("returned", "carol", at(0)) // its return used, still CREATED
	d := authSuccess("k1", at(10), snap("u1", "alice", "OURA"))
	d.Event.WidgetSessionID = terraID("done")
	s.apply(d)
	s.apply(delivery("k2", at(10), store.Event{Kind: store.EventAuthFailure, FlowID: terraID("failed")}))
	if err := s.s.ConsumeWidgetReturn(s.ctx, "returned", at(20)); err != nil {
		t.Fatal(err)
	}
	done, failed, later := s.session("done"), s.session("failed"), s.session("later")

	wantIDs(t, "before expiry", s.expire(at(899)))
	wantIDs(t, "at 950 s", s.expire(at(950)), "due", "due-bob", "returned")
	wantIDs(t, "again", s.expire(at(950)))
	wantSameSession(t, "later", s.session("later"), later)
	wantIDs(t, "at 1000 s", s.expire(at(1000)), "later")
	wantIDs(t, "long after", s.expire(at(100_000)))
	wantSameSession(t, "completed session", s.session("done"), done)
	wantSameSession(t, "failed session", s.session("failed"), failed)
	if got := s.session("returned"); got.ReturnUsedAt == nil {
		t.Error("expiry cleared the return time")
	}

	// The returned sessions come in order of expiry.
	s.createSession("z", "dave", at(200))
	s.createSession("a", "dave", at(300))
	expired, err := s.s.ExpireWidgetSessions(s.ctx, at(2000))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, ws := range expired {
		order = append(order, ws.ID)
	}
	wantIDs(t, "order", order, "z", "a")
}

func testExpiredThenOutcome(t *testing.T, s *suite) {
	s.createSession("ws-ok", "alice", at(0))
	s.createSession("ws-fail", "alice", at(0))
	s.createSession("ws-cancel", "alice", at(0))
	wantIDs(t, "expired", s.expire(at(900)), "ws-cancel", "ws-fail", "ws-ok")

	// The end user finished just after expiry and Terra accepted it: the session completes.
	d := authSuccess("k1", at(905), snap("u1", "alice", "OURA"))
	d.Event.WidgetSessionID = terraID("ws-ok")
	out := s.apply(d)
	got := s.session("ws-ok")
	if got.Status != store.SessionCompleted || got.TerraUserID != "u1" || got.Provider != "OURA" {
		t.Errorf("ws-ok = %+v; want COMPLETED by u1", got)
	}
	if out.Session == nil {
		t.Fatal("no outcome session")
	}
	wantSameSession(t, "outcome session", *out.Session, got)

	// A failure never moves an expired session.
	for _, d := range []store.Delivery{
		delivery("k2", at(905), store.Event{Kind: store.EventAuthFailure, Type: "auth", WidgetSessionID: terraID("ws-fail"), Reason: "missing_permissions"}),
		delivery("k3", at(905), store.Event{Kind: store.EventAuthFailure, Type: "auth_cancelled", FlowID: terraID("ws-cancel")}),
	} {
		out := s.apply(d)
		if out.Session == nil || out.Session.Status != store.SessionExpired {
			t.Errorf("%s: outcome session = %+v; want the EXPIRED session", d.DedupeKey, out.Session)
		}
	}
	for _, id := range []string{"ws-fail", "ws-cancel"} {
		if got := s.session(id); got.Status != store.SessionExpired || got.FailureReason != "" {
			t.Errorf("%s = %+v; want EXPIRED without a failure reason", id, got)
		}
	}
	if inbox := s.inbox(); inbox[len(inbox)-1].Outcome != store.InboxUnchanged {
		t.Errorf("inbox outcome of a failure on an expired session = %q; want unchanged", inbox[len(inbox)-1].Outcome)
	}
}

func testMatchSwept(t *testing.T, s *suite) {
	// The event happened while the session was live, but the sweep ran before its delivery,
	// and the event names no session: it lands where it would have without the sweep.
	s.createSession("ws-1", "alice", at(0)) // expires at 900 s
	s.createSession("ws-2", "bob", at(0))
	s.expire(at(900))
	out := s.apply(authSuccess("k1", at(890), snap("u1", "alice", "OURA")))
	if out.Session == nil || out.Session.ID != "ws-1" || out.Session.Status != store.SessionCompleted {
		t.Errorf("outcome session = %+v; want ws-1 COMPLETED", out.Session)
	}
	out = s.apply(delivery("k2", at(890), store.Event{Kind: store.EventAuthFailure, Type: "auth_cancelled", ReferenceID: "bob"}))
	if out.Session == nil || out.Session.ID != "ws-2" || s.session("ws-2").Status != store.SessionExpired {
		t.Errorf("outcome session = %+v; want ws-2 still EXPIRED", out.Session)
	}
	// An event after the expiry does not land on it.
	s.createSession("ws-3", "carol", at(0))
	s.expire(at(900))
	if out := s.apply(authSuccess("k3", at(901), snap("u3", "carol", "OURA"))); out.Session != nil {
		t.Errorf("outcome session = %+v; want none", out.Session)
	}
}

// testSessionStateMachine applies every ordering of every non-empty subset of a session's
// possible news (auth success, auth_cancelled, a legacy auth error, the expiry sweep) and
// checks the result and each step: a success always wins; otherwise the first of the first
// failure and the expiry stands; and no step moves a session back.
func testSessionStateMachine(t *testing.T, s *suite) {
	const (
		success   = "success"
		cancelled = "cancelled"
		authError = "error"
		expiry    = "expiry"
	)
	allowed := map[store.SessionStatus][]store.SessionStatus{
		store.SessionCreated:   {store.SessionCreated, store.SessionCompleted, store.SessionFailed, store.SessionExpired},
		store.SessionFailed:    {store.SessionFailed, store.SessionCompleted},
		store.SessionExpired:   {store.SessionExpired, store.SessionCompleted},
		store.SessionCompleted: {store.SessionCompleted},
	}
	n := 0
	for seq := range orderings([]string{success, cancelled, authError, expiry}) {
		id, ref, user := fmt.Sprintf("ws-%02d", n), fmt.Sprintf("ref-%02d", n), fmt.Sprintf("u-%02d", n)
		base := n * 3600 // each session in its own hour, so one sweep cannot reach another
		n++
		prev := s.createSession(id, ref, at(base)) // expires at base + 900 s
		for step, news := range seq {
			key := fmt.Sprintf("%s-%d-%s", id, step, news)
			switch news {
			case success: // just after expiry: Terra may still accept it
				d := authSuccess(key, at(base+905), snap(user, ref, "OURA"))
				d.Event.WidgetSessionID = terraID(id)
				s.apply(d)
			case cancelled:
				s.apply(delivery(key, at(base+100), store.Event{
					Kind: store.EventAuthFailure, Type: "auth_cancelled", FlowID: terraID(id), Reason: "user_cancelled",
				}))
			case authError:
				s.apply(delivery(key, at(base+200), store.Event{
					Kind: store.EventAuthFailure, Type: "auth", WidgetSessionID: terraID(id), ReferenceID: ref,
					User: snap(user, ref, "GARMIN"), Reason: "missing_permissions",
				}))
			case expiry:
				var want []string
				if prev.Status == store.SessionCreated {
					want = []string{id}
				}
				wantIDs(t, fmt.Sprintf("%v step %d expired", seq, step), s.expire(at(base+900)), want...)
			}
			cur := s.session(id)
			if !slices.Contains(allowed[prev.Status], cur.Status) {
				t.Errorf("%v step %d (%s): %s -> %s", seq, step, news, prev.Status, cur.Status)
			}
			if prev.Status == store.SessionCompleted {
				wantSameSession(t, fmt.Sprintf("%v step %d completed session", seq, step), cur, prev)
			}
			prev = cur
		}

		var want store.SessionStatus
		wantReason, wantUser := "", ""
		firstFailure := slices.IndexFunc(seq, func(news string) bool { return news == cancelled || news == authError })
		expiredAt := slices.Index(seq, expiry)
		switch {
		case slices.Contains(seq, success):
			want, wantUser = store.SessionCompleted, user
		case firstFailure < 0 || (expiredAt >= 0 && expiredAt < firstFailure):
			want = store.SessionExpired
		default:
			want = store.SessionFailed
			wantReason = map[string]string{cancelled: "user_cancelled", authError: "missing_permissions"}[seq[firstFailure]]
		}
		if prev.Status != want || prev.FailureReason != wantReason || prev.TerraUserID != wantUser {
			t.Errorf("%v: %s reason %q user %q; want %s reason %q user %q",
				seq, prev.Status, prev.FailureReason, prev.TerraUserID, want, wantReason, wantUser)
		}
	}
	if n != 64 {
		t.Errorf("ran %d sequences; want 64", n)
	}
}

// orderings yields every ordering of every non-empty subset of items.
func orderings(items []string) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		var gen func(prefix, rest []string) bool
		gen = func(prefix, rest []string) bool {
			if len(prefix) > 0 && !yield(slices.Clone(prefix)) {
				return false
			}
			for i, item := range rest {
				others := slices.Concat(rest[:i], rest[i+1:])
				if !gen(append(prefix, item), others) {
					return false
				}
			}
			return true
		}
		gen(nil, items)
	}
}

func testSource(t *testing.T, s *suite) {
	sources := []store.DeliverySource{"", store.SourceWebhook, store.SourceRedirect, store.SourceAPI, store.SourceSync}
	for i, src := range sources {
		d := delivery(fmt.Sprintf("%s:%d", src, i), at(i+1), store.Event{Kind: store.EventIgnored, Type: "activity"})
		d.Source = src
		s.apply(d)
	}
	bad := delivery("mail:1", at(9), store.Event{Kind: store.EventIgnored})
	bad.Source = "mail"
	if _, err := s.s.ApplyWebhook(s.ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ApplyWebhook with source %q: %v; want ErrInvalid", bad.Source, err)
	}
	inbox := s.inbox()
	var got []store.DeliverySource
	for _, e := range inbox {
		got = append(got, e.Source)
	}
	want := []store.DeliverySource{store.SourceWebhook, store.SourceWebhook, store.SourceRedirect, store.SourceAPI, store.SourceSync}
	if !slices.Equal(got, want) {
		t.Errorf("inbox sources = %q; want %q", got, want)
	}
}

// testRedirectAndWebhook delivers a confirmed redirect and Terra's webhook for the same
// connection in both orders: one session, one user, the same result.
func testRedirectAndWebhook(t *testing.T, s *suite) {
	results := map[string]store.WidgetSession{}
	for _, order := range []string{"RedirectFirst", "WebhookFirst"} {
		id, ref, user := "ws-"+order, "ref-"+order, "u-"+order
		s.createSession(id, ref, at(0))
		created := at(-5)
		u := snap(user, ref, "OURA", "activity")
		u.CreatedAt = &created
		redirect := authSuccess("redirect:"+id, at(12), u)
		redirect.Source, redirect.Event.WidgetSessionID = store.SourceRedirect, id
		redirect.Body = fmt.Appendf(nil, `{"source":"redirect","session_id":%q,"user_id":%q}`, id, user)
		webhook := authSuccess("trace-"+id, at(10), u)
		webhook.Event.WidgetSessionID = terraID(id)

		first, second := redirect, webhook
		if order == "WebhookFirst" {
			first, second = webhook, redirect
		}
		out := s.apply(first)
		if out.Session == nil || out.Session.ID != id || out.Session.Status != store.SessionCompleted {
			t.Fatalf("%s: first outcome session = %+v; want %s COMPLETED", order, out.Session, id)
		}
		done := s.session(id)
		out = s.apply(second)
		if out.Session == nil || out.Session.ID != id {
			t.Errorf("%s: second outcome session = %+v; want %s", order, out.Session, id)
		}
		wantSameSession(t, order+" session after both", s.session(id), done)
		results[order] = done
		got := s.wantState(user, store.StatusConnected, true)
		wantTime(t, order+" ConnectedAt", got.ConnectedAt, created)
		wantIDs(t, order+" list", s.list(ref, false), user)
	}
	a, b := results["RedirectFirst"], results["WebhookFirst"]
	if a.Status != b.Status || a.Provider != b.Provider || a.FailureReason != b.FailureReason {
		t.Errorf("orders disagree: %+v and %+v", a, b)
	}

	var sources []store.DeliverySource
	for _, e := range s.inbox() {
		sources = append(sources, e.Source)
	}
	want := []store.DeliverySource{store.SourceRedirect, store.SourceWebhook, store.SourceWebhook, store.SourceRedirect}
	if !slices.Equal(sources, want) {
		t.Errorf("inbox sources = %q; want %q", sources, want)
	}
}

func testAPIDeauth(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("live", "alice", "OURA")))
	s.apply(authSuccess("k2", at(1), snap("failing", "alice", "GARMIN")))
	s.apply(userEvent(store.EventConnectionError, "k3", at(5), "failing"))
	for i, userID := range []string{"live", "failing"} {
		d := userEvent(store.EventDeauth, "api:disconnect:"+userID, at(10+i), userID)
		d.Source = store.SourceAPI
		out := s.apply(d)
		s.wantOutcomeUsers(out, userID)
		got := s.wantState(userID, store.StatusDisconnected, false)
		wantTime(t, userID+" StateAt", got.StateAt, at(10+i))
	}
	wantIDs(t, "active", s.list("alice", false))
	// Terra's own deauth follows: nothing moves back, and a late error cannot revive it.
	s.apply(userEvent(store.EventDeauth, "k4", at(15), "live"))
	s.apply(userEvent(store.EventConnectionError, "k5", at(20), "live"))
	s.wantState("live", store.StatusDisconnected, false)
	// A second disconnect through the API changes nothing.
	again := userEvent(store.EventDeauth, "api:disconnect:failing:2", at(9), "failing")
	again.Source = store.SourceAPI
	s.apply(again)
	got := s.wantState("failing", store.StatusDisconnected, false)
	wantTime(t, "failing StateAt", got.StateAt, at(11))
}

func testSyncAuth(t *testing.T, s *suite) {
	sync := func(kind store.EventKind, n int, u *store.UserSnapshot) store.Delivery {
		d := delivery(fmt.Sprintf("sync:%s:%s:%d", kind, u.UserID, n), at(n), store.Event{Kind: kind, User: u, ReferenceID: u.ReferenceID})
		d.Source = store.SourceSync
		return d
	}
	// A connection terragate missed is added.
	s.apply(sync(store.EventAuthSuccess, 100, snap("missed", "alice", "OURA", "activity")))
	s.wantState("missed", store.StatusConnected, true)
	wantIDs(t, "list", s.list("alice", false), "missed")

	// A final user_id stays final, whatever a sync later says.
	s.apply(authSuccess("k1", at(1), snap("gone", "alice", "GARMIN")))
	s.apply(userEvent(store.EventDeauth, "k2", at(5), "gone"))
	s.apply(authSuccess("k3", at(1), snap("revoked", "alice", "WHOOP")))
	s.apply(userEvent(store.EventAccessRevoked, "k4", at(5), "revoked"))
	s.apply(delivery("k5", at(6), store.Event{Kind: store.EventReauth, User: snap("new", "alice", "POLAR"), OldUser: snap("old", "alice", "POLAR")}))
	for _, userID := range []string{"gone", "revoked", "old"} {
		before := s.user(userID)
		s.apply(sync(store.EventAuthSuccess, 200, snap(userID, "alice", "OURA", "sleep")))
		got := s.user(userID)
		if got.Status != before.Status || got.Active || got.ReplacedBy != before.ReplacedBy || !got.StateAt.Equal(before.StateAt) {
			t.Errorf("sync revived %q: %+v; was %+v", userID, got, before)
		}
	}
	// A connection Terra no longer has is disconnected.
	s.apply(sync(store.EventDeauth, 300, snap("missed", "", "")))
	s.wantState("missed", store.StatusDisconnected, false)
	wantIDs(t, "list after sync", s.list("alice", false), "new")
}

func testReferenceIDs(t *testing.T, s *suite) {
	ids, err := s.s.ReferenceIDs(s.ctx)
	if err != nil || len(ids) != 0 {
		t.Fatalf("ReferenceIDs of an empty store = %q, %v; want none", ids, err)
	}
	s.apply(authSuccess("a1", at(1), snap("a1", "alice", "OURA")))
	s.apply(authSuccess("a2", at(2), snap("a2", "alice", "GARMIN")))
	s.apply(authSuccess("b1", at(1), snap("b1", "Bob", "OURA")))
	s.apply(userEvent(store.EventConnectionError, "b2", at(5), "b1")) // ERROR is still active
	s.apply(authSuccess("c1", at(1), snap("c1", "carol", "OURA")))
	s.apply(userEvent(store.EventDeauth, "c2", at(5), "c1"))
	s.apply(authSuccess("d1", at(1), snap("d1", "dave", "OURA")))
	s.apply(delivery("d2", at(5), store.Event{Kind: store.EventReauth, User: snap("d2", "", ""), OldUser: snap("d1", "", "")}))
	s.apply(authSuccess("e1", at(1), snap("e1", "erin", "OURA")))
	s.apply(userEvent(store.EventAccessRevoked, "e2", at(5), "e1"))
	s.apply(authSuccess("n1", at(1), snap("n1", "", "OURA"))) // Terra knows no end user
	s.createSession("ws-1", "frank", at(0))                   // a session alone is no connection

	ids, err = s.s.ReferenceIDs(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Byte order, as Go sorts strings: every engine must agree, whatever its collation.
	wantIDs(t, "ReferenceIDs", ids, "Bob", "alice", "dave")
}
