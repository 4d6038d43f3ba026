package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func dl(kind EventKind, n int, user *UserSnapshot) Delivery {
	return Delivery{DedupeKey: fmt.Sprint(kind, n), SignedAt: sec(n), Event: Event{Kind: kind, User: user}}
}

func us(id string, scopes ...string) *UserSnapshot {
	return &UserSnapshot{UserID: id, ReferenceID: "alice", Provider: "OURA", Scopes: scopes}
}

// run applies deliveries one after another as an engine would, saving what changes.
func run(t *testing.T, ds ...Delivery) map[string]TerraUser {
	t.Helper()
	rows := map[string]TerraUser{}
	for i, d := range ds {
		cur := Current{Users: map[string]TerraUser{}}
		for _, id := range UserIDs(d.Event) {
			if u, ok := rows[id]; ok {
				cur.Users[id] = u
			}
		}
		ch, err := Apply(d, cur, sec(1000+i))
		if err != nil {
			t.Fatalf("Apply(%s): %v", d.DedupeKey, err)
		}
		for _, u := range ch.Users {
			rows[u.UserID] = u
		}
	}
	return rows
}

func TestApplyRules(t *testing.T) {
	revoked := dl(EventAccessRevoked, 8, us("u1"))
	for _, tc := range []struct {
		name       string
		ds         []Delivery
		status     ConnectionStatus
		active     bool
		scopes     []string
		replacedBy string
	}{
		{"auth", []Delivery{dl(EventAuthSuccess, 1, us("u1", "a"))}, StatusConnected, true, []string{"a"}, ""},
		{"deauth", []Delivery{dl(EventAuthSuccess, 1, us("u1")), dl(EventDeauth, 5, us("u1"))}, StatusDisconnected, false, nil, ""},
		{"deauth first", []Delivery{dl(EventDeauth, 5, us("u1")), dl(EventAuthSuccess, 1, us("u1", "a"))}, StatusDisconnected, false, []string{"a"}, ""},
		{"error", []Delivery{dl(EventAuthSuccess, 1, us("u1")), dl(EventConnectionError, 5, us("u1"))}, StatusError, true, nil, ""},
		{"older error", []Delivery{dl(EventConnectionError, 5, us("u1")), dl(EventAuthSuccess, 1, us("u1"))}, StatusError, true, nil, ""},
		{"error after final", []Delivery{dl(EventDeauth, 5, us("u1")), dl(EventConnectionError, 6, us("u1"))}, StatusDisconnected, false, nil, ""},
		{"newer final wins", []Delivery{revoked, dl(EventDeauth, 5, us("u1"))}, StatusRevoked, false, nil, ""},
		{"revoked wins a tie", []Delivery{dl(EventAccessRevoked, 5, us("u1")), dl(EventDeauth, 5, us("u1"))}, StatusRevoked, false, nil, ""},
		{"revoked wins a tie reversed", []Delivery{dl(EventDeauth, 5, us("u1")), dl(EventAccessRevoked, 5, us("u1"))}, StatusRevoked, false, nil, ""},
		{"permission on unknown", []Delivery{{DedupeKey: "p", SignedAt: sec(3), Event: Event{Kind: EventPermissionChange, User: us("u1"), ScopesAdded: []string{" b ", "c"}, ScopesRemoved: []string{"c"}}}}, StatusConnected, true, []string{"b"}, ""},
		{"reauth tombstone", []Delivery{{DedupeKey: "r", SignedAt: sec(3), Event: Event{Kind: EventReauth, User: us("u2"), OldUser: us("u1")}}}, StatusDisconnected, false, nil, "u2"},
		{"replaced stays", []Delivery{{DedupeKey: "r", SignedAt: sec(3), Event: Event{Kind: EventReauth, User: us("u2"), OldUser: us("u1")}}, revoked}, StatusDisconnected, false, nil, "u2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := run(t, tc.ds...)["u1"]
			if u.Status != tc.status || u.Active != tc.active || !slices.Equal(u.Scopes, tc.scopes) || u.ReplacedBy != tc.replacedBy {
				t.Errorf("got %s active %v scopes %q replaced by %q; want %s %v %q %q",
					u.Status, u.Active, u.Scopes, u.ReplacedBy, tc.status, tc.active, tc.scopes, tc.replacedBy)
			}
		})
	}
}

// TestApplyOrderIndependent applies every ordering of a plausible history of one user (auth
// first in signed time, final events last) and expects the same row each time, apart from
// the bookkeeping times updated_at and state_at.
func TestApplyOrderIndependent(t *testing.T) {
	created := sec(-60)
	auth := dl(EventAuthSuccess, 1, us("u1", "a"))
	auth.Event.User.CreatedAt = &created
	history := []Delivery{
		auth,
		dl(EventPermissionChange, 2, us("u1", "a", "b")),
		dl(EventConnectionError, 3, us("u1")),
		dl(EventPermissionChange, 4, us("u1", "b")),
		dl(EventDeauth, 5, us("u1")),
		dl(EventAccessRevoked, 6, us("u1")),
	}
	var want TerraUser
	n := 0
	for perm := range permutations(len(history)) {
		ds := make([]Delivery, len(perm))
		for i, p := range perm {
			ds[i] = history[p]
		}
		got := run(t, ds...)["u1"]
		got.UpdatedAt, got.StateAt = time.Time{}, time.Time{}
		if n == 0 {
			want = got
		} else if !sameUser(got, want) {
			t.Fatalf("order %v gives %+v; want %+v", perm, got, want)
		}
		n++
	}
	if want.Status != StatusRevoked || !slices.Equal(want.Scopes, []string{"b"}) || !want.ConnectedAt.Equal(created) ||
		!want.LastWebhookUpdate.Equal(sec(6)) {
		t.Errorf("final row %+v", want)
	}
	if n != 720 {
		t.Errorf("ran %d orderings", n)
	}
}

// permutations yields every ordering of 0..n-1.
func permutations(n int) func(func([]int) bool) {
	return func(yield func([]int) bool) {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		var gen func(k int) bool
		gen = func(k int) bool {
			if k == n {
				return yield(slices.Clone(p))
			}
			for i := k; i < n; i++ {
				p[k], p[i] = p[i], p[k]
				if !gen(k + 1) {
					return false
				}
				p[k], p[i] = p[i], p[k]
			}
			return true
		}
		gen(0)
	}
}

func TestApplyUnchanged(t *testing.T) {
	rows := run(t, dl(EventAuthSuccess, 5, us("u1", "a")))
	// The same news again (another delivery of the same event) changes nothing.
	ch, err := Apply(dl(EventAuthSuccess, 5, us("u1", "x")), Current{Users: rows}, sec(2000))
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Empty() || OutcomeOf(EventAuthSuccess, ch) != InboxUnchanged {
		t.Errorf("repeated auth changed %+v", ch)
	}
	// An older one only moves the connection time back.
	ch, err = Apply(dl(EventAuthSuccess, 4, us("u1", "x")), Current{Users: rows}, sec(2000))
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Users) != 1 || !ch.Users[0].ConnectedAt.Equal(sec(4)) || !slices.Equal(ch.Users[0].Scopes, []string{"a"}) ||
		!ch.Users[0].StateAt.Equal(sec(5)) || !ch.Users[0].UpdatedAt.Equal(sec(2000)) {
		t.Errorf("older auth: %+v", ch)
	}
	if OutcomeOf(EventIgnored, Changes{}) != InboxIgnored {
		t.Error("ignored outcome")
	}
}

func TestApplySession(t *testing.T) {
	base := WidgetSession{ID: "ws", Status: SessionCreated}
	success := Event{Kind: EventAuthSuccess, User: us("u1")}
	failure := Event{Kind: EventAuthFailure, Provider: "GARMIN"}
	for _, tc := range []struct {
		name    string
		from    SessionStatus
		ev      Event
		want    SessionStatus
		changed bool
	}{
		{"created success", SessionCreated, success, SessionCompleted, true},
		{"failed success", SessionFailed, success, SessionCompleted, true},
		{"completed success", SessionCompleted, success, SessionCompleted, false},
		{"expired success", SessionExpired, success, SessionCompleted, true},
		{"expired failure", SessionExpired, failure, SessionExpired, false},
		{"created failure", SessionCreated, failure, SessionFailed, true},
		{"failed failure", SessionFailed, failure, SessionFailed, false},
		{"completed failure", SessionCompleted, failure, SessionCompleted, false},
	} {
		s := base
		s.Status = tc.from
		got, changed := applySession(tc.ev, s, sec(9))
		if got.Status != tc.want || changed != tc.changed {
			t.Errorf("%s: %s, changed %v; want %s, %v", tc.name, got.Status, changed, tc.want, tc.changed)
		}
		if tc.name == "created failure" && (got.FailureReason != "cancelled" || got.Provider != "GARMIN") {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
}

func TestMatchSession(t *testing.T) {
	d := Delivery{SignedAt: sec(10), Event: Event{Kind: EventAuthSuccess, WidgetSessionID: "w", FlowID: "w", User: us("u1")}}
	m, ok := MatchSession(d)
	if !ok || !slices.Equal(m.IDs, []string{"w"}) || m.ReferenceID != "alice" || !m.CreatedBy.Equal(sec(11)) || !m.AliveAt.Equal(sec(10)) {
		t.Errorf("MatchSession = %+v, %v", m, ok)
	}
	if _, ok := MatchSession(Delivery{Event: Event{Kind: EventDeauth, ReferenceID: "alice"}}); ok {
		t.Error("deauth matched a session")
	}
	if _, ok := MatchSession(Delivery{Event: Event{Kind: EventAuthFailure}}); ok {
		t.Error("failure with nothing to match by matched")
	}
}

func TestApplyInvalid(t *testing.T) {
	for name, d := range map[string]Delivery{
		"no key":       {SignedAt: sec(1), Event: Event{Kind: EventIgnored}},
		"no time":      {DedupeKey: "k", Event: Event{Kind: EventIgnored}},
		"bad kind":     {DedupeKey: "k", SignedAt: sec(1), Event: Event{Kind: "x"}},
		"no user":      {DedupeKey: "k", SignedAt: sec(1), Event: Event{Kind: EventConnectionError}},
		"reauth loops": {DedupeKey: "k", SignedAt: sec(1), Event: Event{Kind: EventReauth, User: us("u"), OldUser: us("u")}},
		"bad source":   {DedupeKey: "k", SignedAt: sec(1), Source: "mail", Event: Event{Kind: EventIgnored}},
	} {
		if _, err := Apply(d, Current{}, sec(2)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v; want ErrInvalid", name, err)
		}
	}
}

func TestLists(t *testing.T) {
	if got := ParseList(" a, b,,a ,c "); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("ParseList = %q", got)
	}
	if got := ParseList(""); got != nil {
		t.Errorf("ParseList(\"\") = %q; want nil", got)
	}
	if got := JoinList([]string{"a,b", " c", "a"}); got != "a,b,c" {
		t.Errorf("JoinList = %q", got)
	}
}

func TestStoredTime(t *testing.T) {
	in := time.Date(2026, 7, 1, 14, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	got := StoredTime(in)
	if got.Location() != time.UTC || got.Nanosecond() != 123456000 || !got.Equal(in.Truncate(time.Microsecond)) {
		t.Errorf("StoredTime = %v", got)
	}
}

func TestCheckWidgetSession(t *testing.T) {
	s, err := CheckWidgetSession(WidgetSession{ID: "w", ExpiresAt: sec(900), Providers: []string{"OURA, GARMIN"}}, sec(1))
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != SessionCreated || !s.CreatedAt.Equal(sec(1)) || !s.UpdatedAt.Equal(sec(1)) || !slices.Equal(s.Providers, []string{"OURA", "GARMIN"}) {
		t.Errorf("defaults: %+v", s)
	}
}

func TestDeliverySource(t *testing.T) {
	for _, src := range []DeliverySource{"", SourceWebhook, SourceRedirect, SourceAPI, SourceSync} {
		if !src.Valid() {
			t.Errorf("%q not valid", src)
		}
	}
	if DeliverySource("Webhook").Valid() {
		t.Error("sources are case-sensitive, as the database's check is")
	}
	if got := SourceOf(Delivery{}); got != SourceWebhook {
		t.Errorf("SourceOf(unset) = %q; want webhook", got)
	}
	if got := SourceOf(Delivery{Source: SourceSync}); got != SourceSync {
		t.Errorf("SourceOf(sync) = %q", got)
	}
}

// TestSyntheticSameRules checks that what terragate learns itself goes through the rules
// unchanged: the source never decides a row.
func TestSyntheticSameRules(t *testing.T) {
	for _, src := range []DeliverySource{SourceRedirect, SourceAPI, SourceSync} {
		with := func(d Delivery) Delivery { d.Source = src; return d }
		for _, tc := range []struct {
			name   string
			ds     []Delivery
			status ConnectionStatus
			active bool
		}{
			{"deauth connected", []Delivery{dl(EventAuthSuccess, 1, us("u1")), with(dl(EventDeauth, 5, us("u1")))}, StatusDisconnected, false},
			{"deauth error", []Delivery{dl(EventAuthSuccess, 1, us("u1")), dl(EventConnectionError, 3, us("u1")), with(dl(EventDeauth, 5, us("u1")))}, StatusDisconnected, false},
			{"success after final", []Delivery{dl(EventDeauth, 5, us("u1")), with(dl(EventAuthSuccess, 9, us("u1")))}, StatusDisconnected, false},
			{"success after revoked", []Delivery{dl(EventAccessRevoked, 5, us("u1")), with(dl(EventAuthSuccess, 9, us("u1")))}, StatusRevoked, false},
			{"success unknown", []Delivery{with(dl(EventAuthSuccess, 9, us("u1")))}, StatusConnected, true},
		} {
			u := run(t, tc.ds...)["u1"]
			if u.Status != tc.status || u.Active != tc.active {
				t.Errorf("%s %s: %s active %v; want %s %v", src, tc.name, u.Status, u.Active, tc.status, tc.active)
			}
		}
	}
}

// Only Terra's webhooks move last_webhook_update; what terragate learns itself carries over
// what Terra reported and nothing more.
func TestLastWebhookUpdateComesFromTerraOnly(t *testing.T) {
	redirect := dl(EventAuthSuccess, 1, us("u1"))
	redirect.Source = SourceRedirect
	if u := run(t, redirect)["u1"]; u.LastWebhookUpdate != nil {
		t.Errorf("a confirmed redirect set last_webhook_update to %v", u.LastWebhookUpdate)
	}
	u := run(t, redirect, dl(EventPermissionChange, 4, us("u1", "a")))["u1"]
	if u.LastWebhookUpdate == nil || !u.LastWebhookUpdate.Equal(sec(4)) {
		t.Errorf("after a webhook: %v, want %v", u.LastWebhookUpdate, sec(4))
	}
	sync := dl(EventDeauth, 9, us("u1"))
	sync.Source = SourceSync
	if u := run(t, redirect, dl(EventPermissionChange, 4, us("u1", "a")), sync)["u1"]; !u.LastWebhookUpdate.Equal(sec(4)) {
		t.Errorf("a sync moved last_webhook_update to %v", u.LastWebhookUpdate)
	}
}
