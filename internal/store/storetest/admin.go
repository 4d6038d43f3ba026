package storetest

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// This file tests the audit log and the admin listings: filters against an oracle computed
// in Go, keyset paging (no duplicates or gaps, stable while rows are added), and what each
// listing refuses.

// listing is one page of any admin listing, as walk sees it.
type listing[T any] struct {
	items []T
	end   string
	more  bool
}

// walk pages through a listing with page size first until it says there is no next page,
// and returns the items in order and the size of each page. It fails the test on a
// duplicate key, on an empty end cursor for a non-empty page, and on a page over first.
func walk[T any](t *testing.T, first int, list func(store.Page) (listing[T], error), key func(T) string) (items []T, sizes []int) {
	t.Helper()
	seen := map[string]bool{}
	p := store.Page{First: first}
	for range 1000 {
		page, err := list(p)
		if err != nil {
			t.Fatalf("page %d (after %q): %v", len(sizes)+1, p.After, err)
		}
		if len(page.items) > first {
			t.Fatalf("page %d has %d items; first %d", len(sizes)+1, len(page.items), first)
		}
		if len(page.items) > 0 && page.end == "" {
			t.Fatalf("page %d has items but no end cursor", len(sizes)+1)
		}
		for _, it := range page.items {
			k := key(it)
			if seen[k] {
				t.Fatalf("page %d repeats %q", len(sizes)+1, k)
			}
			seen[k] = true
		}
		items = append(items, page.items...)
		sizes = append(sizes, len(page.items))
		if !page.more {
			return items, sizes
		}
		if len(page.items) == 0 {
			t.Fatalf("page %d is empty but says more follow", len(sizes))
		}
		p.After = page.end
	}
	t.Fatal("listing never ends")
	return nil, nil
}

func (s *suite) auditPages(f store.AuditFilter) func(store.Page) (listing[store.AuditEntry], error) {
	return func(p store.Page) (listing[store.AuditEntry], error) {
		page, err := s.s.ListAudit(s.ctx, f, p)
		return listing[store.AuditEntry]{page.Entries, page.EndCursor, page.HasNextPage}, err
	}
}

func auditKey(e store.AuditEntry) string { return e.Subject }

func subjects(entries []store.AuditEntry) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Subject)
	}
	return out
}

func (s *suite) appendAudit(e store.AuditEntry) {
	s.t.Helper()
	if err := s.s.AppendAudit(s.ctx, e); err != nil {
		s.t.Fatalf("AppendAudit(%+v): %v", e, err)
	}
}

func wantSizes(t *testing.T, got []int, want ...int) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("page sizes %v; want %v", got, want)
	}
}

func testAuditRoundTrip(t *testing.T, s *suite) {
	loc := time.FixedZone("CEST", 2*3600)
	e := store.AuditEntry{
		ID:          99, // the store assigns ids
		At:          at(5).In(loc).Add(123456789 * time.Nanosecond),
		Actor:       "svc:admin-console",
		ActorKind:   store.ActorService,
		Action:      store.ActionAdminRead,
		Subject:     "terraUsers",
		ReferenceID: "alice",
		ClientIP:    "::ffff:192.0.2.7",
		Detail:      map[string]string{"query": "terraUsers", "first": "100", "note": "é ✓"},
	}
	s.appendAudit(e)
	s.appendAudit(store.AuditEntry{Actor: "alice", ActorKind: store.ActorUser, Action: store.ActionSessionCreated,
		Subject: "ws-1", ReferenceID: "alice", Detail: map[string]string{}})
	before := time.Now()
	s.appendAudit(store.AuditEntry{Actor: "terra", ActorKind: store.ActorTerra, Action: store.ActionConnectionAdded, Subject: "u1"})
	after := time.Now()

	page, err := s.s.ListAudit(s.ctx, store.AuditFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 3 || page.HasNextPage {
		t.Fatalf("ListAudit = %d entries, more %v; want 3, false", len(page.Entries), page.HasNextPage)
	}
	// Zero At became the store's now, later than at(5): newest first.
	wantIDs(t, "subjects", subjects(page.Entries), "u1", "ws-1", "terraUsers")
	got := page.Entries[2]
	if got.ID <= 0 || got.ID == 99 {
		t.Errorf("ID = %d; want one the store assigned", got.ID)
	}
	wantTime(t, "At", got.At, store.StoredTime(e.At))
	if got.At.Location() != time.UTC {
		t.Errorf("At in %v; want UTC", got.At.Location())
	}
	if got.Actor != e.Actor || got.ActorKind != e.ActorKind || got.Action != e.Action ||
		got.Subject != e.Subject || got.ReferenceID != e.ReferenceID {
		t.Errorf("entry = %+v; want the fields of %+v", got, e)
	}
	if got.ClientIP != "192.0.2.7" {
		t.Errorf("ClientIP = %q; want the address unmapped, 192.0.2.7", got.ClientIP)
	}
	if !maps.Equal(got.Detail, e.Detail) {
		t.Errorf("Detail = %v; want %v", got.Detail, e.Detail)
	}
	if d := page.Entries[1].Detail; d != nil {
		t.Errorf("empty Detail read back as %#v; want nil", d)
	}
	if now := page.Entries[0].At; now.Before(store.StoredTime(before)) || now.After(after) {
		t.Errorf("defaulted At = %v; want between %v and %v", now, before, after)
	}
	if ids := []int64{page.Entries[2].ID, page.Entries[1].ID, page.Entries[0].ID}; !slices.IsSorted(ids) {
		t.Errorf("ids %v do not increase in append order", ids)
	}
}

// auditFixture appends 40 entries over 20 instants (two per instant, so ties on At are
// broken by id) with actors, end users and actions in different cycles, and returns them
// in append order.
func (s *suite) auditFixture() []store.AuditEntry {
	s.t.Helper()
	actors := []struct{ name, kind string }{
		{"alice", store.ActorUser}, {"bob", store.ActorUser}, {"svc:admin", store.ActorService},
		{"system", store.ActorSystem}, {"terra", store.ActorTerra},
	}
	actions := []string{store.ActionSessionCreated, store.ActionConnectionAdded, store.ActionConnectionRemoved,
		store.ActionConnectionDisconnected, store.ActionAdminRead}
	refs := []string{"alice", "bob", ""}
	var all []store.AuditEntry
	for i := range 40 {
		a := actors[i%len(actors)]
		e := store.AuditEntry{
			At:          at(i / 2),
			Actor:       a.name,
			ActorKind:   a.kind,
			Action:      actions[i%len(actions)*3%len(actions)],
			Subject:     fmt.Sprintf("e%02d", i),
			ReferenceID: refs[i%len(refs)],
			Detail:      map[string]string{"i": fmt.Sprint(i)},
		}
		s.appendAudit(e)
		e.At = store.StoredTime(e.At)
		all = append(all, e)
	}
	return all
}

// wantAudit is the oracle: the subjects of the entries matching f, newest first. The
// fixture appends in time order, so that is the reverse of append order, ties included.
func wantAudit(all []store.AuditEntry, f store.AuditFilter) []string {
	var out []string
	for _, e := range slices.Backward(all) {
		if (f.Actor == "" || e.Actor == f.Actor) && (f.ReferenceID == "" || e.ReferenceID == f.ReferenceID) &&
			(f.Action == "" || e.Action == f.Action) && (f.Since.IsZero() || !e.At.Before(f.Since)) &&
			(f.Until.IsZero() || e.At.Before(f.Until)) {
			out = append(out, e.Subject)
		}
	}
	return out
}

func testAuditFilters(t *testing.T, s *suite) {
	all := s.auditFixture()
	for _, tc := range []struct {
		name string
		f    store.AuditFilter
	}{
		{"none", store.AuditFilter{}},
		{"actor", store.AuditFilter{Actor: "svc:admin"}},
		{"reference", store.AuditFilter{ReferenceID: "alice"}},
		{"reference empty", store.AuditFilter{ReferenceID: ""}},
		{"action", store.AuditFilter{Action: store.ActionAdminRead}},
		{"since", store.AuditFilter{Since: at(15)}},
		{"until", store.AuditFilter{Until: at(3)}},
		{"since until", store.AuditFilter{Since: at(4), Until: at(9)}},
		{"actor action", store.AuditFilter{Actor: "alice", Action: store.ActionSessionCreated}},
		{"reference actor", store.AuditFilter{ReferenceID: "bob", Actor: "terra"}},
		{"reference action", store.AuditFilter{ReferenceID: "alice", Action: store.ActionConnectionRemoved}},
		{"actor since", store.AuditFilter{Actor: "bob", Since: at(10)}},
		{"action until", store.AuditFilter{Action: store.ActionConnectionAdded, Until: at(12)}},
		{"all", store.AuditFilter{ReferenceID: "alice", Actor: "alice", Action: store.ActionSessionCreated, Since: at(1), Until: at(19)}},
		{"nothing", store.AuditFilter{Actor: "nobody"}},
		{"empty range", store.AuditFilter{Since: at(100), Until: at(200)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := wantAudit(all, tc.f)
			if tc.name != "nothing" && tc.name != "empty range" && len(want) == 0 {
				t.Fatal("the fixture gives this filter nothing to match")
			}
			for _, first := range []int{100, 3} {
				got, _ := walk(t, first, s.auditPages(tc.f), auditKey)
				wantIDs(t, fmt.Sprintf("first %d", first), subjects(got), want...)
			}
		})
	}
}

func testAuditPaging(t *testing.T, s *suite) {
	const n = 250
	var want []string
	for i := range n {
		subject := fmt.Sprintf("e%03d", i)
		s.appendAudit(store.AuditEntry{At: at(i / 3), Actor: "system", ActorKind: store.ActorSystem,
			Action: store.ActionConnectionDisconnected, Subject: subject})
		want = append(want, subject)
	}
	slices.Reverse(want)

	next := s.auditPages(store.AuditFilter{})
	var got []string
	p := store.Page{First: 100}
	for i, size := range []int{100, 100, 50} {
		page, err := next(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.items) != size || page.more != (i < 2) {
			t.Fatalf("page %d: %d entries, more %v; want %d, %v", i+1, len(page.items), page.more, size, i < 2)
		}
		got = append(got, subjects(page.items)...)
		p.After = page.end
		if i == 0 {
			// Newer entries appended between pages land before the first page: the pages
			// that follow neither repeat nor skip any.
			for j := range 5 {
				s.appendAudit(store.AuditEntry{At: at(1000 + j), Actor: "system", ActorKind: store.ActorSystem,
					Action: store.ActionConnectionDisconnected, Subject: fmt.Sprint("late", j)})
			}
		}
	}
	wantIDs(t, "paged subjects", got, want...)

	// The last page's cursor resumes to an empty, final page.
	page, err := s.s.ListAudit(s.ctx, store.AuditFilter{}, p)
	if err != nil || len(page.Entries) != 0 || page.HasNextPage || page.EndCursor != "" {
		t.Errorf("page after the last = %d entries, more %v, cursor %q, %v; want an empty final page",
			len(page.Entries), page.HasNextPage, page.EndCursor, err)
	}
	// Exactly one page's worth: no next page.
	page, err = s.s.ListAudit(s.ctx, store.AuditFilter{Since: at(1000)}, store.Page{First: 5})
	if err != nil || len(page.Entries) != 5 || page.HasNextPage {
		t.Errorf("5 entries in pages of 5 = %d entries, more %v, %v; want 5, false", len(page.Entries), page.HasNextPage, err)
	}
}

func testAuditInvalid(t *testing.T, s *suite) {
	ok := store.AuditEntry{Actor: "alice", ActorKind: store.ActorUser, Action: store.ActionSessionCreated, Subject: "ws-1"}
	tooMany := map[string]string{}
	for i := range store.MaxAuditDetailKeys + 1 {
		tooMany[fmt.Sprint("k", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		edit func(e *store.AuditEntry)
	}{
		{"no action", func(e *store.AuditEntry) { e.Action = "" }},
		{"unknown action", func(e *store.AuditEntry) { e.Action = "session.deleted" }},
		{"no actor kind", func(e *store.AuditEntry) { e.ActorKind = "" }},
		{"unknown actor kind", func(e *store.AuditEntry) { e.ActorKind = "admin" }},
		{"no actor", func(e *store.AuditEntry) { e.Actor = "" }},
		{"user posing as a service", func(e *store.AuditEntry) { e.Actor = "svc:billing" }},
		{"service without prefix", func(e *store.AuditEntry) { e.ActorKind = store.ActorService }},
		{"long subject", func(e *store.AuditEntry) { e.Subject = strings.Repeat("x", store.MaxAuditField+1) }},
		{"NUL in reference", func(e *store.AuditEntry) { e.ReferenceID = "al\x00ice" }},
		{"invalid UTF-8 actor", func(e *store.AuditEntry) { e.Actor = "al\xffice" }},
		{"bad client ip", func(e *store.AuditEntry) { e.ClientIP = "192.0.2.7:443" }},
		{"too many detail keys", func(e *store.AuditEntry) { e.Detail = tooMany }},
		{"empty detail key", func(e *store.AuditEntry) { e.Detail = map[string]string{"": "v"} }},
		{"long detail key", func(e *store.AuditEntry) {
			e.Detail = map[string]string{strings.Repeat("k", store.MaxAuditDetailKey+1): "v"}
		}},
		{"long detail value", func(e *store.AuditEntry) {
			e.Detail = map[string]string{"k": strings.Repeat("v", store.MaxAuditDetailValue+1)}
		}},
		{"detail names a token", func(e *store.AuditEntry) { e.Detail = map[string]string{"access_Token": "x"} }},
		{"detail names a secret", func(e *store.AuditEntry) { e.Detail = map[string]string{"webhookSecret": "x"} }},
		{"time out of range", func(e *store.AuditEntry) { e.At = time.Date(9999, 6, 1, 0, 0, 0, 0, time.UTC) }},
	} {
		e := ok
		tc.edit(&e)
		if err := s.s.AppendAudit(s.ctx, e); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: AppendAudit = %v; want ErrInvalid", tc.name, err)
		}
	}
	ok.Detail = tooMany
	delete(ok.Detail, "k0")
	s.appendAudit(ok) // MaxAuditDetailKeys keys are fine
	page, err := s.s.ListAudit(s.ctx, store.AuditFilter{}, store.Page{First: 100})
	if err != nil || len(page.Entries) != 1 {
		t.Fatalf("ListAudit = %d entries, %v; want only the valid one", len(page.Entries), err)
	}

	for _, tc := range []struct {
		name string
		f    store.AuditFilter
		p    store.Page
	}{
		{"first 0", store.AuditFilter{}, store.Page{}},
		{"first -1", store.AuditFilter{}, store.Page{First: -1}},
		{"first 101", store.AuditFilter{}, store.Page{First: store.MaxPageSize + 1}},
		{"unknown action", store.AuditFilter{Action: "nope"}, store.Page{First: 10}},
		{"until before since", store.AuditFilter{Since: at(5), Until: at(4)}, store.Page{First: 10}},
		{"until at since", store.AuditFilter{Since: at(5), Until: at(5)}, store.Page{First: 10}},
	} {
		if _, err := s.s.ListAudit(s.ctx, tc.f, tc.p); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListAudit(%s) = %v; want ErrInvalid", tc.name, err)
		}
	}
	for _, c := range malformedCursors(kindAudit) {
		if _, err := s.s.ListAudit(s.ctx, store.AuditFilter{}, store.Page{First: 10, After: c}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListAudit(after %q) = %v; want ErrInvalid", c, err)
		}
	}
}

// testAuditConcurrent appends from 20 goroutines at once: every entry lands once, with an
// id of its own.
func testAuditConcurrent(t *testing.T, s *suite) {
	const workers, each = 20, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				err := s.s.AppendAudit(s.ctx, store.AuditEntry{
					At: at(i), Actor: fmt.Sprint("user-", w), ActorKind: store.ActorUser,
					Action: store.ActionConnectionRemoved, Subject: fmt.Sprintf("w%02d-%02d", w, i),
					ReferenceID: fmt.Sprint("user-", w),
				})
				if err != nil {
					errs <- err
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
	got, sizes := walk(t, 100, s.auditPages(store.AuditFilter{}), auditKey)
	wantSizes(t, sizes, 100, 100)
	ids := map[int64]bool{}
	for _, e := range got {
		ids[e.ID] = true
	}
	if len(got) != workers*each || len(ids) != workers*each {
		t.Errorf("%d entries with %d distinct ids; want %d of each", len(got), len(ids), workers*each)
	}
	mine, _ := walk(t, 3, s.auditPages(store.AuditFilter{Actor: "user-7"}), auditKey)
	want := make([]string, 0, each)
	for i := each - 1; i >= 0; i-- {
		want = append(want, fmt.Sprintf("w07-%02d", i))
	}
	wantIDs(t, "user-7's entries", subjects(mine), want...)
}

// cursor kinds for malformedCursors.
const (
	kindAudit = iota
	kindUsers
	kindInbox
)

// malformedCursors lists cursors the listing of kind must refuse: garbage, cursors of the
// other listings, and well-formed text that is not a cursor.
func malformedCursors(kind int) []string {
	b64 := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	out := []string{
		"x", "!!!!", "bm90IGpzb24", b64("null"), b64("{}"), b64(`{"k":"audit"}`), b64(`{"k":"users"}`),
		b64(`{"k":"inbox"}`), b64(`{"k":"inbox","i":-1}`), b64(`{"k":"audit","t":"2026-07-01T12:00:00Z","i":1,"x":1}`),
		b64(`{"k":"users","t":"99999-01-01T00:00:00Z","s":"u"}`), b64(`{"k":"audit","t":"2026-07-01T12:00:00Z","i":1}{}`),
		strings.Repeat("A", 4096),
	}
	// Real cursors of the other listings.
	if kind != kindAudit {
		out = append(out, store.AuditCursor(store.AuditEntry{ID: 1, At: T0}))
	}
	if kind != kindUsers {
		out = append(out, store.UserCursor(store.TerraUser{UserID: "u1", ConnectedAt: T0}))
	}
	if kind != kindInbox {
		out = append(out, store.InboxCursor(store.InboxEvent{ID: 1}))
	}
	return out
}

func (s *suite) userPages(f store.UserFilter) func(store.Page) (listing[store.TerraUser], error) {
	return func(p store.Page) (listing[store.TerraUser], error) {
		page, err := s.s.ListTerraUsersPage(s.ctx, f, p)
		return listing[store.TerraUser]{page.Users, page.EndCursor, page.HasNextPage}, err
	}
}

func userIDs(users []store.TerraUser) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		out = append(out, u.UserID)
	}
	return out
}

// userFixture connects 250 Terra users, four at each instant and with user ids that sort
// against the order they were added, then disconnects, errors and replaces some. It returns
// every user_id it made, tombstones included.
func (s *suite) userFixture() []string {
	s.t.Helper()
	var ids []string
	providers := []string{"OURA", "GARMIN", "WITHINGS"}
	for i := range 250 {
		id := fmt.Sprintf("u-%03d-%c", i/4, 'z'-i%4)
		s.apply(authSuccess("c-"+id, at(i/4), snap(id, fmt.Sprint("ref-", i%5), providers[i%3])))
		ids = append(ids, id)
	}
	for i, id := range ids {
		switch {
		case i%10 == 3:
			s.apply(userEvent(store.EventDeauth, "d-"+id, at(500), id))
		case i%10 == 4:
			s.apply(userEvent(store.EventConnectionError, "e-"+id, at(500), id))
		case i%25 == 7:
			// A reauth replaces the user: the tombstone leaves the listing, the new user
			// joins it.
			old := s.user(id)
			next := "n-" + id
			s.apply(delivery("r-"+id, at(600), store.Event{
				Kind:        store.EventReauth,
				User:        snap(next, old.ReferenceID, old.Provider),
				OldUser:     &store.UserSnapshot{UserID: id},
				ReferenceID: old.ReferenceID,
			}))
			ids = append(ids, next)
		}
	}
	return ids
}

// wantUsers is the oracle: each user as TerraUser reads it, filtered and sorted in Go.
func (s *suite) wantUsers(ids []string, f store.UserFilter) []string {
	s.t.Helper()
	var users []store.TerraUser
	for _, id := range ids {
		u := s.user(id)
		if u.ReplacedBy == "" && (f.ReferenceID == "" || u.ReferenceID == f.ReferenceID) &&
			(f.Provider == "" || u.Provider == f.Provider) && (f.Status == "" || u.Status == f.Status) {
			users = append(users, u)
		}
	}
	slices.SortFunc(users, func(a, b store.TerraUser) int {
		return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), strings.Compare(a.UserID, b.UserID))
	})
	return userIDs(users)
}

func testUsersPage(t *testing.T, s *suite) {
	ids := s.userFixture()
	want := s.wantUsers(ids, store.UserFilter{})
	if len(want) != 250 {
		t.Fatalf("fixture lists %d users; want 250", len(want))
	}
	got, sizes := walk(t, 100, s.userPages(store.UserFilter{}), func(u store.TerraUser) string { return u.UserID })
	wantSizes(t, sizes, 100, 100, 50)
	wantIDs(t, "all users", userIDs(got), want...)
	for _, u := range got {
		if !u.ConnectedAt.Equal(s.user(u.UserID).ConnectedAt) {
			t.Fatalf("user %s differs from TerraUser", u.UserID)
		}
	}

	for _, tc := range []struct {
		name string
		f    store.UserFilter
	}{
		{"reference", store.UserFilter{ReferenceID: "ref-2"}},
		{"provider", store.UserFilter{Provider: "GARMIN"}},
		{"connected", store.UserFilter{Status: store.StatusConnected}},
		{"error", store.UserFilter{Status: store.StatusError}},
		{"disconnected", store.UserFilter{Status: store.StatusDisconnected}},
		{"reference provider", store.UserFilter{ReferenceID: "ref-1", Provider: "OURA"}},
		{"reference status", store.UserFilter{ReferenceID: "ref-3", Status: store.StatusDisconnected}},
		{"provider status", store.UserFilter{Provider: "WITHINGS", Status: store.StatusDisconnected}},
		{"all", store.UserFilter{ReferenceID: "ref-4", Provider: "GARMIN", Status: store.StatusConnected}},
		{"nothing", store.UserFilter{Provider: "FITBIT"}},
		{"revoked", store.UserFilter{Status: store.StatusRevoked}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := s.wantUsers(ids, tc.f)
			if len(want) == 0 && tc.name != "nothing" && tc.name != "revoked" {
				t.Fatal("the fixture gives this filter nothing to match")
			}
			for _, first := range []int{100, 7} {
				p := store.Page{First: first}
				var got []string
				for {
					page, err := s.s.ListTerraUsersPage(s.ctx, tc.f, p)
					if err != nil {
						t.Fatal(err)
					}
					if page.TotalCount != len(want) {
						t.Fatalf("first %d: TotalCount %d; want %d", first, page.TotalCount, len(want))
					}
					got = append(got, userIDs(page.Users)...)
					if !page.HasNextPage {
						break
					}
					p.After = page.EndCursor
				}
				wantIDs(t, fmt.Sprintf("first %d", first), got, want...)
			}
		})
	}

	// A cursor keeps its place when users connect meanwhile: a new user sorted before it is
	// not seen, one sorted after it is.
	first, err := s.s.ListTerraUsersPage(s.ctx, store.UserFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	s.apply(authSuccess("c-early", at(-1), snap("a-early", "ref-0", "OURA")))
	s.apply(authSuccess("c-late", at(9999), snap("z-late", "ref-0", "OURA")))
	rest, _ := walk(t, 100, func(p store.Page) (listing[store.TerraUser], error) {
		if p.After == "" {
			p.After = first.EndCursor
		}
		return s.userPages(store.UserFilter{})(p)
	}, func(u store.TerraUser) string { return u.UserID })
	wantIDs(t, "after the first page", userIDs(rest), append(slices.Clone(want[10:]), "z-late")...)
}

func testUsersPageInvalid(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	for _, tc := range []struct {
		name string
		f    store.UserFilter
		p    store.Page
	}{
		{"first 0", store.UserFilter{}, store.Page{}},
		{"first 101", store.UserFilter{}, store.Page{First: store.MaxPageSize + 1}},
		{"first -5", store.UserFilter{}, store.Page{First: -5}},
		{"unknown status", store.UserFilter{Status: "GONE"}, store.Page{First: 10}},
		{"lowercase status", store.UserFilter{Status: "connected"}, store.Page{First: 10}},
	} {
		if _, err := s.s.ListTerraUsersPage(s.ctx, tc.f, tc.p); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListTerraUsersPage(%s) = %v; want ErrInvalid", tc.name, err)
		}
	}
	for _, c := range malformedCursors(kindUsers) {
		if _, err := s.s.ListTerraUsersPage(s.ctx, store.UserFilter{}, store.Page{First: 10, After: c}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListTerraUsersPage(after %q) = %v; want ErrInvalid", c, err)
		}
	}
	page, err := s.s.ListTerraUsersPage(s.ctx, store.UserFilter{}, store.Page{First: store.MaxPageSize})
	if err != nil || len(page.Users) != 1 || page.TotalCount != 1 || page.HasNextPage {
		t.Errorf("ListTerraUsersPage = %+v, %v; want u1 alone", page, err)
	}
}

func (s *suite) inboxPages(f store.InboxFilter) func(store.Page) (listing[store.InboxEvent], error) {
	return func(p store.Page) (listing[store.InboxEvent], error) {
		page, err := s.s.ListWebhookEvents(s.ctx, f, p)
		return listing[store.InboxEvent]{page.Events, page.EndCursor, page.HasNextPage}, err
	}
}

func dedupeKeys(events []store.InboxEvent) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		out = append(out, e.DedupeKey)
	}
	return out
}

func testInboxList(t *testing.T, s *suite) {
	sources := []store.DeliverySource{store.SourceWebhook, store.SourceRedirect, store.SourceAPI, store.SourceSync}
	var made []store.Delivery // in the order stored, oldest first
	dead := map[string]bool{}
	for i := range 250 {
		key := fmt.Sprintf("d%03d", i)
		var d store.Delivery
		switch i % 3 {
		case 0:
			d = delivery(key, at(i), store.Event{Kind: store.EventIgnored, Type: "activity"})
		case 1:
			// Repeated news about seven users: the first applies, later ones may not change.
			d = authSuccess(key, at(i/20), snap(fmt.Sprint("u", i%7), "alice", "OURA"))
		case 2:
			d = userEvent(store.EventPermissionChange, key, at(i), fmt.Sprint("u", i%7))
			d.Event.Type = "permission_change"
			d.Event.ScopesAdded = []string{fmt.Sprint("s", i%2)}
		}
		d.Source = sources[i%len(sources)]
		made = append(made, d)
		if i%25 == 24 {
			// Every kind of delivery may end up a dead letter.
			if _, err := s.s.RecordDeadLetter(s.ctx, d, "bad data"); err != nil {
				t.Fatal(err)
			}
			dead[key] = true
			continue
		}
		s.apply(d)
	}
	slices.Reverse(made)

	got, sizes := walk(t, 100, s.inboxPages(store.InboxFilter{}), func(e store.InboxEvent) string { return e.DedupeKey })
	wantSizes(t, sizes, 100, 100, 50)
	wantKeys := make([]string, 0, len(made))
	for _, d := range made {
		wantKeys = append(wantKeys, d.DedupeKey)
	}
	wantIDs(t, "all events", dedupeKeys(got), wantKeys...)
	if len(got) != len(made) {
		t.FailNow()
	}
	// The oracle is each row read alone, by its id: the filters below are checked against
	// what it holds, and every row listed must read the same as it does.
	oracle := make([]store.InboxEvent, 0, len(got))
	for i, e := range got {
		o := s.event(e.ID)
		wantSameEvent(t, fmt.Sprintf("event %d as listed", i), e, o)
		d := made[i]
		if o.DedupeKey != d.DedupeKey || string(o.Body) != string(d.Body) || o.Type != d.Event.Type ||
			o.Source != d.Source || o.Kind != d.Event.Kind || !o.SignedAt.Equal(d.SignedAt) ||
			(o.Outcome == store.InboxFailed) != dead[d.DedupeKey] || (o.AppliedAt == nil) != dead[d.DedupeKey] {
			t.Fatalf("event %d = %+v; want delivery %s as stored (dead letter: %v)", i, o, d.DedupeKey, dead[d.DedupeKey])
		}
		oracle = append(oracle, o)
	}
	outcomes := map[store.InboxOutcome]int{}
	for _, e := range oracle {
		outcomes[e.Outcome]++
	}
	for _, o := range []store.InboxOutcome{store.InboxApplied, store.InboxUnchanged, store.InboxIgnored, store.InboxFailed} {
		if outcomes[o] == 0 {
			t.Fatalf("the fixture has no %s event", o)
		}
	}
	for _, f := range []store.InboxFilter{
		{Type: "activity"},
		{Type: "auth"},
		{Source: store.SourceRedirect},
		{Source: store.SourceWebhook},
		{Outcome: string(store.InboxApplied)},
		{Outcome: string(store.InboxUnchanged)},
		{Outcome: string(store.InboxIgnored)},
		{Type: "permission_change", Source: store.SourceSync},
		{Type: "auth", Outcome: string(store.InboxUnchanged)},
		{Source: store.SourceAPI, Outcome: string(store.InboxApplied)},
		{Type: "permission_change", Source: store.SourceWebhook, Outcome: string(store.InboxApplied)},
		{Type: "sleep"},
		{Outcome: string(store.InboxFailed)},
		{Type: "auth", Outcome: string(store.InboxFailed)},
		{Source: store.SourceSync, Outcome: string(store.InboxFailed)},
		{Type: "activity", Source: store.SourceWebhook, Outcome: string(store.InboxFailed)},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", f.Type, f.Source, f.Outcome), func(t *testing.T) {
			var want []string
			for _, e := range oracle {
				if (f.Type == "" || e.Type == f.Type) && (f.Source == "" || e.Source == f.Source) &&
					(f.Outcome == "" || string(e.Outcome) == f.Outcome) {
					want = append(want, e.DedupeKey)
				}
			}
			if len(want) == 0 && f.Type != "sleep" {
				t.Fatal("the fixture gives this filter nothing to match")
			}
			for _, first := range []int{100, 9} {
				got, _ := walk(t, first, s.inboxPages(f), func(e store.InboxEvent) string { return e.DedupeKey })
				wantIDs(t, fmt.Sprintf("first %d", first), dedupeKeys(got), want...)
			}
		})
	}
}

func testInboxListInvalid(t *testing.T, s *suite) {
	s.apply(delivery("k1", at(1), store.Event{Kind: store.EventIgnored, Type: "activity"}))
	for _, tc := range []struct {
		name string
		f    store.InboxFilter
		p    store.Page
	}{
		{"first 0", store.InboxFilter{}, store.Page{}},
		{"first 101", store.InboxFilter{}, store.Page{First: store.MaxPageSize + 1}},
		{"unknown source", store.InboxFilter{Source: "email"}, store.Page{First: 10}},
		{"unknown outcome", store.InboxFilter{Outcome: "exploded"}, store.Page{First: 10}},
	} {
		if _, err := s.s.ListWebhookEvents(s.ctx, tc.f, tc.p); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListWebhookEvents(%s) = %v; want ErrInvalid", tc.name, err)
		}
	}
	for _, c := range malformedCursors(kindInbox) {
		if _, err := s.s.ListWebhookEvents(s.ctx, store.InboxFilter{}, store.Page{First: 10, After: c}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListWebhookEvents(after %q) = %v; want ErrInvalid", c, err)
		}
	}
	page, err := s.s.ListWebhookEvents(s.ctx, store.InboxFilter{}, store.Page{First: 1})
	if err != nil || len(page.Events) != 1 || page.HasNextPage || string(page.Events[0].Body) == "" {
		t.Errorf("ListWebhookEvents = %+v, %v; want k1 alone, with its body", page, err)
	}
}

// testAuditWithSession: a session created with its audit entry stores both in one
// transaction; when the session is refused (a duplicate id) or the entry is (a key naming
// a secret), neither is stored.
func testAuditWithSession(t *testing.T, s *suite) {
	entry := func(subject string) store.AuditEntry {
		return store.AuditEntry{Actor: "alice", ActorKind: store.ActorUser, Action: store.ActionSessionCreated,
			Subject: subject, ReferenceID: "alice", ClientIP: "192.0.2.1", Detail: map[string]string{"providers": "OURA"}}
	}
	if err := s.s.CreateWidgetSession(s.ctx, store.WidgetSession{ID: "ws-a", ReferenceID: "alice", ExpiresAt: T0}, entry("ws-a")); err != nil {
		t.Fatal(err)
	}
	if got := s.session("ws-a"); got.ReferenceID != "alice" {
		t.Errorf("session = %+v", got)
	}
	err := s.s.CreateWidgetSession(s.ctx, store.WidgetSession{ID: "ws-a", ReferenceID: "bob", ExpiresAt: T0}, entry("ws-a-again"))
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate session: %v; want ErrConflict", err)
	}
	bad := entry("ws-b")
	bad.Detail = map[string]string{"token": "eyJ..."}
	if err := s.s.CreateWidgetSession(s.ctx, store.WidgetSession{ID: "ws-b", ReferenceID: "alice", ExpiresAt: T0}, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("entry naming a secret: %v; want ErrInvalid", err)
	}
	if _, err := s.s.WidgetSession(s.ctx, "ws-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("session of a refused entry: %v; want ErrNotFound", err)
	}
	page, err := s.s.ListAudit(s.ctx, store.AuditFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "subjects", subjects(page.Entries), "ws-a")
	if got := page.Entries[0]; got.ClientIP != "192.0.2.1" || got.Detail["providers"] != "OURA" || got.At.IsZero() {
		t.Errorf("entry = %+v", got)
	}
}

// testAuditWithDelivery: a delivery's audit entries are stored with what it applied, from
// the outcome the store reached; a duplicate stores none, and an entry the store refuses is
// left out without refusing the event.
func testAuditWithDelivery(t *testing.T, s *suite) {
	calls := 0
	auditUsers := func(extra ...store.AuditEntry) func(store.Outcome) []store.AuditEntry {
		return func(out store.Outcome) []store.AuditEntry {
			calls++
			var entries []store.AuditEntry
			for _, u := range out.Users {
				entries = append(entries, store.AuditEntry{Actor: "terra", ActorKind: store.ActorTerra,
					Action: store.ActionConnectionAdded, Subject: u.UserID, ReferenceID: u.ReferenceID,
					Detail: map[string]string{"status": string(u.Status)}})
			}
			return append(entries, extra...)
		}
	}
	d := authSuccess("k1", at(1), snap("u1", "alice", "OURA"))
	d.Audit = auditUsers()
	s.apply(d)
	if out := s.apply(d); !out.Duplicate {
		t.Fatalf("second delivery = %+v; want Duplicate", out)
	}
	if calls != 1 {
		t.Errorf("Audit called %d times; want once, for the delivery that applied", calls)
	}
	d2 := authSuccess("k2", at(2), snap("u2", "bob", "GARMIN"))
	d2.Audit = auditUsers(store.AuditEntry{Actor: "terra", ActorKind: store.ActorTerra, Action: store.ActionConnectionAdded,
		Subject: "leak", Detail: map[string]string{"token": "eyJ..."}})
	s.apply(d2)
	s.wantState("u2", store.StatusConnected, true)
	page, err := s.s.ListAudit(s.ctx, store.AuditFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "subjects", subjects(page.Entries), "u2", "u1")
	if got := page.Entries[1]; got.ReferenceID != "alice" || got.Detail["status"] != string(store.StatusConnected) {
		t.Errorf("entry of u1 = %+v", got)
	}
}

// auditOf lists the entries of one action, newest first, as "subject outcome".
func (s *suite) auditOf(action string) []string {
	s.t.Helper()
	page, err := s.s.ListAudit(s.ctx, store.AuditFilter{Action: action}, store.Page{First: store.MaxPageSize})
	if err != nil {
		s.t.Fatalf("ListAudit(%s): %v", action, err)
	}
	var out []string
	for _, e := range page.Entries {
		out = append(out, strings.TrimSpace(e.Subject+" "+e.Detail[store.ReplayOutcomeKey]))
	}
	return out
}

// testAuditWithAPIDeauth: the audit entry of a disconnect through the API, given as the
// delivery's audit, commits with the change; when the transaction fails after the change
// (here the caller gives up inside it), neither the change nor the entry stays.
func testAuditWithAPIDeauth(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	entry := store.AuditEntry{Actor: "alice", ActorKind: store.ActorUser, Action: store.ActionConnectionDisconnected,
		Subject: "u1", ReferenceID: "alice", ClientIP: "192.0.2.9", Detail: map[string]string{"provider": "OURA"}}
	disconnect := func(key string) store.Delivery {
		d := userEvent(store.EventDeauth, key, at(10), "u1")
		d.Source = store.SourceAPI
		d.Audit = func(store.Outcome) []store.AuditEntry { return []store.AuditEntry{entry} }
		return d
	}

	ctx, cancel := context.WithCancel(s.ctx)
	undone := disconnect("api:disconnect:u1:1")
	undone.Audit = func(store.Outcome) []store.AuditEntry {
		cancel() // after the change is written, before the commit
		return []store.AuditEntry{entry}
	}
	if out, err := s.s.ApplyWebhook(ctx, undone); err == nil {
		t.Fatalf("ApplyWebhook with the caller gone = %+v; want an error", out)
	}
	s.wantState("u1", store.StatusConnected, true)
	wantIDs(t, "disconnect entries after a rollback", s.auditOf(store.ActionConnectionDisconnected))

	s.apply(disconnect("api:disconnect:u1:2"))
	s.wantState("u1", store.StatusDisconnected, false)
	wantIDs(t, "disconnect entries", s.auditOf(store.ActionConnectionDisconnected), "u1")
}

// testDeadLetterReplayAudited: a replay's audit entries are stored with its result and its
// outcome, failed or succeeded; a replay whose transaction is undone stores neither; an entry
// the store refuses replays nothing; a replay that cannot run (not a dead letter) stores none.
func testDeadLetterReplayAudited(t *testing.T, s *suite) {
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	dead := s.deadLetter(selfReauth("k2", at(5), "u1"))
	entry := store.AuditEntry{Actor: "svc:ops", ActorKind: store.ActorService, Action: store.ActionWebhookReplay,
		Subject: "k2", ClientIP: "192.0.2.7"}

	if _, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, selfReauth("k2", at(5), "u1"), entry); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("replaying bad data: %v; want ErrInvalid", err)
	}
	wantIDs(t, "replay entries after a failed replay", s.auditOf(store.ActionWebhookReplay), "k2 failed")
	before, user := s.event(dead.ID), s.user("u1")
	fixed := delivery("k2", at(5), store.Event{Kind: store.EventDeauth, User: snap("u1", "", "")})

	refused := entry
	refused.Detail = map[string]string{"token": "eyJ..."}
	if _, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed, refused); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("replay with a refused entry: %v; want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	undone := fixed
	undone.Audit = func(store.Outcome) []store.AuditEntry { cancel(); return nil } // mid-transaction
	if _, err := s.s.ReplayDeadLetter(ctx, dead.ID, undone, entry); err == nil {
		t.Errorf("replay with the caller gone inside it succeeded")
	}
	wantSameEvent(t, "row after refused and undone replays", s.event(dead.ID), before)
	if d := diffUser(user, s.user("u1")); len(d) > 0 {
		t.Errorf("refused and undone replays changed the user: %v", d)
	}
	wantIDs(t, "replay entries after refused and undone replays", s.auditOf(store.ActionWebhookReplay), "k2 failed")

	if _, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed, entry); err != nil {
		t.Fatalf("replaying the fix: %v", err)
	}
	s.wantState("u1", store.StatusDisconnected, false)
	if _, err := s.s.ReplayDeadLetter(s.ctx, dead.ID, fixed, entry); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replaying an applied row: %v; want ErrConflict", err)
	}
	wantIDs(t, "replay entries", s.auditOf(store.ActionWebhookReplay), "k2 succeeded", "k2 failed")
	page, err := s.s.ListAudit(s.ctx, store.AuditFilter{Action: store.ActionWebhookReplay}, store.Page{First: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := page.Entries[0]; got.Actor != "svc:ops" || got.ClientIP != "192.0.2.7" || len(got.Detail) != 1 {
		t.Errorf("replay entry = %+v", got)
	}
}
