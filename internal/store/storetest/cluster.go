package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// What several instances sharing one store rely on: leases, readiness, deliveries applied
// once and in some serial order however they race, and lists read page by page.

func testLeases(t *testing.T, s *suite) {
	acquire := func(name, holder string, now, until int) bool {
		t.Helper()
		ok, err := s.s.AcquireLease(s.ctx, name, holder, at(now), at(until))
		if err != nil {
			t.Fatalf("AcquireLease(%s, %s, %d, %d): %v", name, holder, now, until, err)
		}
		return ok
	}
	release := func(name, holder string) {
		t.Helper()
		if err := s.s.ReleaseLease(s.ctx, name, holder); err != nil {
			t.Fatalf("ReleaseLease(%s, %s): %v", name, holder, err)
		}
	}
	steps := []struct {
		what         string
		name, holder string
		now, until   int
		want         bool
	}{
		{"free lease", "sweep", "a", 0, 30, true},
		{"other holder before expiry", "sweep", "b", 10, 40, false},
		{"other holder just before expiry", "sweep", "b", 29, 40, false},
		{"renewal by the holder", "sweep", "a", 20, 60, true},
		{"other holder before the renewed expiry", "sweep", "b", 59, 90, false},
		{"other holder at expiry", "sweep", "b", 60, 90, true},
		{"former holder", "sweep", "a", 61, 100, false},
		{"another lease", "expiry", "a", 61, 100, true},
		// A renewal may also shorten the lease.
		{"renewal, shorter", "expiry", "a", 62, 70, true},
		{"other holder after the shorter expiry", "expiry", "b", 70, 80, true},
	}
	for _, st := range steps {
		if got := acquire(st.name, st.holder, st.now, st.until); got != st.want {
			t.Errorf("%s: AcquireLease(%s, %s, %d, %d) = %v; want %v", st.what, st.name, st.holder, st.now, st.until, got, st.want)
		}
	}
	// Releasing a lease one does not hold does nothing; the holder's release frees it.
	release("sweep", "a")
	release("unknown", "a")
	if acquire("sweep", "a", 62, 120) {
		t.Error("a non-holder's release freed the lease")
	}
	release("sweep", "b")
	if !acquire("sweep", "a", 62, 120) {
		t.Error("lease not free after its holder released it")
	}

	for name, args := range map[string]struct {
		name, holder string
		now, until   time.Time
	}{
		"no name":         {"", "a", at(0), at(1)},
		"no holder":       {"x", "", at(0), at(1)},
		"until not after": {"x", "a", at(1), at(1)},
		"no now":          {"x", "a", time.Time{}, at(1)},
	} {
		if _, err := s.s.AcquireLease(s.ctx, args.name, args.holder, args.now, args.until); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: AcquireLease: %v; want ErrInvalid", name, err)
		}
	}

	// Instances racing for a free lease, and then for the expired one: one wins each time.
	for round, now := range []int{1000, 2000} {
		const holders = 8
		var wg sync.WaitGroup
		won := make([]bool, holders)
		errs := make([]error, holders)
		for i := range holders {
			wg.Go(func() {
				won[i], errs[i] = s.s.AcquireLease(s.ctx, "race", fmt.Sprint("holder-", i), at(now), at(now+500))
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if n := len(slices.DeleteFunc(won, func(w bool) bool { return !w })); n != 1 {
			t.Errorf("round %d: %d holders got the lease; want 1", round, n)
		}
	}
}

func testReady(t *testing.T, s *suite) {
	if err := s.s.Ready(s.ctx); err != nil {
		t.Fatalf("Ready on a fresh store: %v", err)
	}
}

// sameEvents is a set of deliveries about eight end users whose result does not depend on
// the order they apply in (see store.Apply's rules): for each, an auth success naming its
// session and an auth_cancelled matched by end user only, then for half of them a
// permission change and a deauth, for the others a connection error. Sessions are created
// by createSameEventSessions first.
func sameEvents() []store.Delivery {
	var ds []store.Delivery
	for i := range 8 {
		user, ref := fmt.Sprintf("cu%d", i), fmt.Sprintf("cref%d", i)
		success := authSuccess(fmt.Sprintf("c%d-auth", i), at(10), snap(user, ref, "OURA", "activity"))
		success.Event.WidgetSessionID = terraID(fmt.Sprintf("cws%d", i))
		cancelled := delivery(fmt.Sprintf("c%d-cancel", i), at(5), store.Event{
			Kind: store.EventAuthFailure, Type: "auth_cancelled", ReferenceID: ref, Reason: "user_cancelled",
		})
		ds = append(ds, success, cancelled)
		if i%2 == 0 {
			ds = append(ds,
				delivery(fmt.Sprintf("c%d-scopes", i), at(20), store.Event{Kind: store.EventPermissionChange, User: snap(user, "", "", "activity", "sleep")}),
				userEvent(store.EventDeauth, fmt.Sprintf("c%d-deauth", i), at(30), user))
		} else {
			ds = append(ds, userEvent(store.EventConnectionError, fmt.Sprintf("c%d-error", i), at(15), user))
		}
	}
	return ds
}

func (s *suite) createSameEventSessions() {
	for i := range 8 {
		s.createSession(fmt.Sprintf("cws%d", i), fmt.Sprintf("cref%d", i), at(0))
	}
}

// sameEventsState is what the suite compares after applying sameEvents.
type sameEventsState struct {
	users    []store.TerraUser
	sessions []store.WidgetSession
	lists    [][]string
	refs     []string
	keys     []string
}

func (s *suite) sameEventsState() sameEventsState {
	s.t.Helper()
	var st sameEventsState
	for i := range 8 {
		st.users = append(st.users, s.user(fmt.Sprintf("cu%d", i)))
		st.sessions = append(st.sessions, s.session(fmt.Sprintf("cws%d", i)))
		st.lists = append(st.lists, s.list(fmt.Sprintf("cref%d", i), true))
	}
	refs, err := s.s.ReferenceIDs(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	st.refs = refs
	for _, e := range s.inbox() {
		if e.AppliedAt == nil {
			s.t.Errorf("inbox row %q not applied", e.DedupeKey)
		}
		st.keys = append(st.keys, e.DedupeKey)
	}
	slices.Sort(st.keys)
	return st
}

// wantSameState compares two results; updated_at is left out, as it is the time of applying.
func wantSameState(t *testing.T, what string, got, want sameEventsState) {
	t.Helper()
	for i := range want.users {
		if d := slices.DeleteFunc(diffUser(got.users[i], want.users[i]), func(f string) bool { return f == "UpdatedAt" }); len(d) > 0 {
			t.Errorf("%s: user %s differs in %v:\n got %+v\nwant %+v", what, want.users[i].UserID, d, got.users[i], want.users[i])
		}
		if d := slices.DeleteFunc(diffSession(got.sessions[i], want.sessions[i]), func(f string) bool { return f == "UpdatedAt" }); len(d) > 0 {
			t.Errorf("%s: session %s differs in %v:\n got %+v\nwant %+v", what, want.sessions[i].ID, d, got.sessions[i], want.sessions[i])
		}
		wantIDs(t, what+" list", got.lists[i], want.lists[i]...)
	}
	wantIDs(t, what+" ReferenceIDs", got.refs, want.refs...)
	wantIDs(t, what+" inbox keys", got.keys, want.keys...)
}

// testConcurrentSameEvents has 50 goroutines (as many webhook handlers, on one instance or
// several) apply the same deliveries at once, each in its own order: every delivery must
// apply exactly once, without error, and leave the state that applying them one by one does.
func testConcurrentSameEvents(t *testing.T, open func(t *testing.T) store.Store) {
	events := sameEvents()

	var serial []sameEventsState
	for _, order := range []string{"InOrder", "Reversed"} {
		s := newSuite(t, open(t))
		s.createSameEventSessions()
		ds := slices.Clone(events)
		if order == "Reversed" {
			slices.Reverse(ds)
		}
		for _, d := range ds {
			s.apply(d)
		}
		serial = append(serial, s.sameEventsState())
	}
	// Guards the test itself: the events must not depend on order.
	wantSameState(t, "serial, reversed against in order", serial[1], serial[0])

	s := newSuite(t, open(t))
	s.createSameEventSessions()
	const workers = 50
	var applied atomic.Int64
	errs := make(chan error, workers*len(events))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			ds := slices.Clone(events)
			rand.New(rand.NewPCG(1, uint64(w))).Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
			<-start
			for _, d := range ds {
				out, err := s.s.ApplyWebhook(s.ctx, d)
				switch {
				case err != nil:
					errs <- fmt.Errorf("worker %d: %s: %w", w, d.DedupeKey, err)
				case !out.Duplicate:
					applied.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := applied.Load(); n != int64(len(events)) {
		t.Errorf("%d deliveries applied; want each of the %d once", n, len(events))
	}
	wantSameState(t, "concurrent against serial", s.sameEventsState(), serial[0])
}

func testInboxPaging(t *testing.T, s *suite) {
	const n, page = 25, 7
	var want []string
	for i := range n {
		key := fmt.Sprintf("page-%02d", i)
		s.apply(delivery(key, at(i), store.Event{Kind: store.EventIgnored, Type: "activity"}))
		want = append(want, key)
	}
	var got []string
	last, pages := int64(0), 0
	p := store.Page{First: page}
	for {
		res, err := s.s.ListWebhookEvents(s.ctx, store.InboxFilter{}, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) > page || len(res.Events) == 0 {
			t.Fatalf("page of %d rows; want 1 to %d", len(res.Events), page)
		}
		pages++
		for _, e := range res.Events {
			if last != 0 && e.ID >= last {
				t.Fatalf("id %d after %d: not decreasing", e.ID, last)
			}
			last = e.ID
			got = append(got, e.DedupeKey)
		}
		if !res.HasNextPage {
			break
		}
		p.After = res.EndCursor
	}
	slices.Reverse(got)
	wantIDs(t, "paged keys", got, want...)
	if pages != (n+page-1)/page {
		t.Errorf("%d pages; want %d", pages, (n+page-1)/page)
	}
	for _, first := range []int{0, -1, store.MaxPageSize + 1, 1 << 40} {
		if _, err := s.s.ListWebhookEvents(s.ctx, store.InboxFilter{}, store.Page{First: first}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListWebhookEvents(first %d): %v; want ErrInvalid", first, err)
		}
	}
	if res, err := s.s.ListWebhookEvents(s.ctx, store.InboxFilter{}, store.Page{First: store.MaxPageSize}); err != nil || len(res.Events) != n || res.HasNextPage {
		t.Errorf("ListWebhookEvents(first %d) = %d rows, more %v, %v; want %d", store.MaxPageSize, len(res.Events), res.HasNextPage, err, n)
	}
}

// testListMany lists many connections of one end user, several connected at the same time:
// those come in byte order of user_id, as Go sorts strings, whatever the database's collation.
func testListMany(t *testing.T, s *suite) {
	ids := []string{"u-b", "u-B", "u-a", "u-A", "u-_", "u-1", "u-é", "u-z"}
	var want []string
	for i := range 20 {
		id := fmt.Sprintf("u-%02d", i)
		s.apply(authSuccess("k-"+id, at(100+i), snap(id, "alice", "OURA")))
		want = append(want, id)
	}
	for _, id := range ids {
		s.apply(authSuccess("k-"+id, at(50), snap(id, "alice", "OURA")))
	}
	tied := slices.Sorted(slices.Values(ids))
	want = append(tied, want...)
	wantIDs(t, "list", s.list("alice", false), want...)
	wantIDs(t, "list all", s.list("alice", true), want...)
}
