package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
)

func testRelay(t *testing.T, open func(t *testing.T) store.Store) {
	h := func(fn func(t *testing.T, s *suite)) func(t *testing.T) {
		return func(t *testing.T) {
			t.Parallel()
			fn(t, newSuite(t, open(t)))
		}
	}
	t.Run("Enqueue", h(testRelayEnqueue))
	t.Run("Duplicates", h(testRelayDuplicates))
	t.Run("ConcurrentDataEvents", h(testRelayConcurrentDataEvents))
	t.Run("DeadLetterRelayed", h(testRelayOfDeadLetter))
	t.Run("NoDestination", h(testRelayNoDestination))
	t.Run("RolledBack", h(testRelayRolledBack))
	t.Run("ClaimLeaseFinish", h(testRelayClaimLeaseFinish))
	t.Run("Retry", h(testRelayRetry))
	t.Run("Resume", h(testRelayResume))
	t.Run("DeadLetterReplay", h(testRelayDeadLetterReplay))
	t.Run("Retention", h(testRelayRetention))
	t.Run("List", h(testRelayList))
	t.Run("ClaimConcurrent", h(testRelayClaimConcurrent))
	t.Run("Backlog", h(testRelayBacklog))
	t.Run("Pieces", h(testRelayPieces))
}

// relayDelivery is a data event with its body for the relay only, as the webhook handler
// hands it over: the inbox row keeps nothing of it.
func relayDelivery(key string, signed time.Time, typ string, body []byte, dests ...string) store.Delivery {
	d := delivery(key, signed, store.Event{Kind: store.EventIgnored, Type: typ})
	d.Body = nil
	d.Relay = &store.RelayEvent{Type: typ, TraceID: d.TraceID, Reference: "ref-" + key, OrderingTimestamp: "2026-07-01T12:00:00Z",
		Body: body, Destinations: dests}
	return d
}

func (s *suite) relayLog(f store.RelayFilter) []store.RelayDelivery {
	s.t.Helper()
	var out []store.RelayDelivery
	p := store.Page{First: store.MaxPageSize}
	for {
		page, err := s.s.ListRelayDeliveries(s.ctx, f, p)
		if err != nil {
			s.t.Fatalf("ListRelayDeliveries: %v", err)
		}
		out = append(out, page.Deliveries...)
		if !page.HasNextPage {
			return out
		}
		p.After = page.EndCursor
	}
}

func (s *suite) claim(dest string, now time.Time, max int) []store.RelayDelivery {
	s.t.Helper()
	got, err := s.s.ClaimRelayDeliveries(s.ctx, dest, now, now.Add(time.Minute), max)
	if err != nil {
		s.t.Fatalf("ClaimRelayDeliveries(%s): %v", dest, err)
	}
	return got
}

func (s *suite) finish(d store.RelayDelivery, r store.RelayResult) bool {
	s.t.Helper()
	ok, err := s.s.FinishRelayDelivery(s.ctx, d, r)
	if err != nil {
		s.t.Fatalf("FinishRelayDelivery(%d): %v", d.ID, err)
	}
	return ok
}

// odd is a body no JSON round trip would keep as it is.
var odd = []byte("{\"type\":\"activity\",  \"data\":[{\"v\":1.50,\"s\":\"\\u00e9\xc3\xa9\"}]}\n\x00")

func testRelayEnqueue(t *testing.T, s *suite) {
	before := time.Now()
	s.apply(relayDelivery("k1", at(1), "activity", odd, "a", "b"))
	log := s.relayLog(store.RelayFilter{})
	if len(log) != 2 {
		t.Fatalf("relay log = %+v; want two deliveries", log)
	}
	if log[0].WebhookID == "" || log[0].WebhookID == log[1].WebhookID || log[0].EventID != log[1].EventID {
		t.Errorf("webhook ids %q, %q of events %d, %d; want distinct ids of one event", log[0].WebhookID, log[1].WebhookID, log[0].EventID, log[1].EventID)
	}
	for _, d := range log {
		if d.Status != store.RelayPending || d.Attempts != 0 || d.EventType != "activity" || d.TraceID != "trace-k1" ||
			d.Reference != "ref-k1" || d.OrderingTimestamp != "2026-07-01T12:00:00Z" || d.NextAttemptAt == nil ||
			d.NextAttemptAt.After(time.Now()) || d.CreatedAt.Before(before.Add(-time.Second)) || d.LastStatusCode != nil || d.DeliveredAt != nil {
			t.Errorf("delivery = %+v", d)
		}
	}
	body, err := s.s.RelayBody(s.ctx, log[0].EventID)
	if err != nil || !bytes.Equal(body, odd) {
		t.Errorf("RelayBody = %q, %v; want the body byte for byte", body, err)
	}
	// The inbox records the data event, but nothing of its body.
	if inbox := s.inbox(); len(inbox) != 1 || len(inbox[0].Body) != 0 || inbox[0].Type != "activity" {
		t.Errorf("inbox = %+v; want one row without body", inbox)
	}
}

func testRelayDuplicates(t *testing.T, s *suite) {
	s.apply(relayDelivery("k1", at(1), "sleep", []byte(`{"type":"sleep"}`), "a"))
	if out := s.apply(relayDelivery("k1", at(1), "sleep", []byte(`{"type":"sleep"}`), "a")); !out.Duplicate {
		t.Errorf("second delivery: %+v; want a duplicate", out)
	}
	if log := s.relayLog(store.RelayFilter{}); len(log) != 1 {
		t.Errorf("relay log = %+v; want one delivery", log)
	}
}

// Data events arriving together, each sent twice at once and one the store refuses among
// them, as an engine that commits concurrent writes together sees them: each event is
// recorded and enqueued once, its twin is a duplicate, and the refused one changes nothing
// of the others.
func testRelayConcurrentDataEvents(t *testing.T, s *suite) {
	const events = 64
	type result struct {
		out store.Outcome
		err error
	}
	results := make([][2]result, events)
	refused := make(chan error, 1)
	var wg sync.WaitGroup
	for i := range events {
		for twin := range 2 {
			wg.Go(func() {
				d := relayDelivery(fmt.Sprintf("data:%d", i), at(i), "activity", fmt.Appendf(nil, `{"n":%d}`, i), "a", "b")
				out, err := s.s.ApplyWebhook(s.ctx, d)
				results[i][twin] = result{out, err}
			})
		}
	}
	wg.Go(func() {
		// Text PostgreSQL cannot hold; SQLite keeps it, which is no failure either.
		d := relayDelivery("data:bad", at(1), "activity\x00", []byte(`{}`), "a")
		_, err := s.s.ApplyWebhook(s.ctx, d)
		refused <- err
	})
	wg.Wait()
	if err := <-refused; err != nil && !errors.Is(err, store.ErrInvalid) {
		t.Errorf("refused event: %v; want nil or ErrInvalid", err)
	}
	for i, r := range results {
		if r[0].err != nil || r[1].err != nil {
			t.Fatalf("event %d: %v, %v", i, r[0].err, r[1].err)
		}
		if r[0].out.Duplicate == r[1].out.Duplicate {
			t.Errorf("event %d: duplicate %v and %v; want exactly one of the twins a duplicate", i, r[0].out.Duplicate, r[1].out.Duplicate)
		}
	}
	log := s.relayLog(store.RelayFilter{})
	seen := map[string]int{}
	for _, d := range log {
		if d.TraceID != "trace-data:bad" {
			seen[d.TraceID+" "+d.Destination]++
		}
	}
	for i := range events {
		for _, dest := range []string{"a", "b"} {
			if n := seen[fmt.Sprintf("trace-data:%d %s", i, dest)]; n != 1 {
				t.Errorf("event %d to %s: %d deliveries; want 1", i, dest, n)
			}
		}
	}
	for _, d := range log {
		body, err := s.s.RelayBody(s.ctx, d.EventID)
		want := ""
		if n, ok := strings.CutPrefix(d.TraceID, "trace-data:"); ok && n != "bad" {
			want = fmt.Sprintf(`{"n":%s}`, n)
		}
		if want != "" && (err != nil || string(body) != want) {
			t.Errorf("delivery %s: body %q, %v; want %s", d.TraceID, body, err, want)
		}
	}
}

// An inbox dead letter is relayed all the same, once: the delivery terragate could not
// apply is still Terra's event for the app.
func testRelayOfDeadLetter(t *testing.T, s *suite) {
	d := selfReauth("k1", at(1), "u1")
	d.Relay = &store.RelayEvent{Type: d.Event.Type, TraceID: d.TraceID, Body: d.Body, Destinations: []string{"a"}}
	for range 2 {
		if _, err := s.s.RecordDeadLetter(s.ctx, d, "bad data"); err != nil {
			t.Fatalf("RecordDeadLetter: %v", err)
		}
	}
	log := s.relayLog(store.RelayFilter{})
	if len(log) != 1 || log[0].Destination != "a" || log[0].TraceID != d.TraceID {
		t.Fatalf("relay log = %+v; want the dead letter once", log)
	}
	if body, err := s.s.RelayBody(s.ctx, log[0].EventID); err != nil || !bytes.Equal(body, d.Body) {
		t.Errorf("RelayBody = %q, %v; want the dead letter's body", body, err)
	}
}

func testRelayNoDestination(t *testing.T, s *suite) {
	s.apply(relayDelivery("k1", at(1), "sleep", []byte(`{"type":"sleep"}`)))
	d := delivery("k2", at(2), store.Event{Kind: store.EventIgnored, Type: "daily"})
	d.Body = nil
	s.apply(d)
	if log := s.relayLog(store.RelayFilter{}); len(log) != 0 {
		t.Errorf("relay log = %+v; want none", log)
	}
	if _, err := s.s.RelayBody(s.ctx, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RelayBody(1) = %v; want ErrNotFound: nothing kept", err)
	}
	bad := relayDelivery("k3", at(3), "sleep", []byte(`{}`), "a", "a")
	if _, err := s.s.ApplyWebhook(s.ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("repeated destination: %v; want ErrInvalid", err)
	}
}

func testRelayRolledBack(t *testing.T, s *suite) {
	// A connection event refused once its rows are loaded: neither it nor its relay stays.
	s.apply(authSuccess("k1", at(1), snap("u1", "alice", "OURA")))
	bad := delivery("k2", at(5), store.Event{Kind: store.EventReauth, Type: "user_reauth", User: snap("u1", "", ""), OldUser: snap("u1", "", "")})
	bad.Relay = &store.RelayEvent{Type: "user_reauth", Body: bad.Body, Destinations: []string{"a"}}
	if _, err := s.s.ApplyWebhook(s.ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ApplyWebhook: %v; want ErrInvalid", err)
	}
	if log := s.relayLog(store.RelayFilter{}); len(log) != 0 {
		t.Errorf("relay log = %+v; want none", log)
	}
	// A connection event keeps its body in the inbox and is relayed too.
	ok := authSuccess("k3", at(6), snap("u2", "bob", "OURA"))
	ok.Relay = &store.RelayEvent{Type: "auth", Body: ok.Body, Destinations: []string{"a"}}
	s.apply(ok)
	if log := s.relayLog(store.RelayFilter{}); len(log) != 1 || log[0].EventType != "auth" {
		t.Errorf("relay log = %+v; want the auth event", log)
	}
	s.wantState("u2", store.StatusConnected, true)
}

func testRelayClaimLeaseFinish(t *testing.T, s *suite) {
	s.apply(relayDelivery("k1", at(1), "activity", odd, "a", "b"))
	now := time.Now()
	got := s.claim("a", now, 10)
	if len(got) != 1 || got[0].Destination != "a" || got[0].Attempts != 1 {
		t.Fatalf("claim = %+v; want a's delivery, first attempt", got)
	}
	if again := s.claim("a", now, 10); len(again) != 0 {
		t.Errorf("claimed again while leased: %+v", again)
	}
	// The lease ran out (its worker died): due again, as a second attempt.
	later := s.claim("a", now.Add(2*time.Minute), 10)
	if len(later) != 1 || later[0].Attempts != 2 || later[0].WebhookID != got[0].WebhookID {
		t.Fatalf("claim after the lease = %+v; want the same delivery, second attempt", later)
	}
	if s.finish(got[0], store.RelayResult{Status: store.RelayDelivered, StatusCode: 200, At: now}) {
		t.Error("the first attempt finished a delivery claimed again since")
	}
	if !s.finish(later[0], store.RelayResult{Status: store.RelayDelivered, StatusCode: 204, At: now}) {
		t.Fatal("the current attempt could not finish")
	}
	// b has not got it yet: the body stays.
	if _, err := s.s.RelayBody(s.ctx, got[0].EventID); err != nil {
		t.Errorf("RelayBody while b waits: %v", err)
	}
	b := s.claim("b", now, 10)
	if len(b) != 1 || !s.finish(b[0], store.RelayResult{Status: store.RelayDelivered, StatusCode: 200, At: now}) {
		t.Fatalf("b: %+v", b)
	}
	if _, err := s.s.RelayBody(s.ctx, got[0].EventID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RelayBody once every destination has it: %v; want ErrNotFound", err)
	}
	for _, d := range s.relayLog(store.RelayFilter{}) {
		if d.Status != store.RelayDelivered || d.DeliveredAt == nil || d.NextAttemptAt != nil || d.LastStatusCode == nil {
			t.Errorf("delivered = %+v", d)
		}
	}
	if s.finish(b[0], store.RelayResult{Status: store.RelayFailed, At: now}) {
		t.Error("a delivered delivery finished again")
	}
}

func testRelayRetry(t *testing.T, s *suite) {
	s.apply(relayDelivery("k1", at(1), "activity", odd, "a"))
	now := time.Now()
	got := s.claim("a", now, 1)
	next := now.Add(5 * time.Second)
	if !s.finish(got[0], store.RelayResult{Status: store.RelayPending, StatusCode: 503, Error: "503 Service Unavailable", NextAttempt: next, At: now}) {
		t.Fatal("finish")
	}
	if early := s.claim("a", next.Add(-time.Millisecond), 1); len(early) != 0 {
		t.Errorf("claimed before it was due: %+v", early)
	}
	retry := s.claim("a", next, 1)
	if len(retry) != 1 || retry[0].Attempts != 2 || retry[0].LastStatusCode == nil || *retry[0].LastStatusCode != 503 ||
		retry[0].LastError != "503 Service Unavailable" || retry[0].WebhookID != got[0].WebhookID {
		t.Errorf("retry = %+v", retry)
	}
}

// Resuming a destination makes its waiting retries due now; an attempt in flight keeps its
// lease, and other destinations are left alone.
func testRelayResume(t *testing.T, s *suite) {
	for i := range 3 {
		s.apply(relayDelivery(fmt.Sprint("k", i), at(i), "activity", odd, "a", "b"))
	}
	now := time.Now()
	later := now.Add(time.Hour)
	retry := store.RelayResult{Status: store.RelayPending, StatusCode: 503, Error: "503 Service Unavailable", NextAttempt: later, At: now}
	claimed := s.claim("a", now, 2) // k0 waits for its retry, k1 is in flight
	if len(claimed) != 2 || !s.finish(claimed[0], retry) {
		t.Fatalf("claimed %+v", claimed)
	}
	for _, d := range s.claim("b", now, 3) {
		s.finish(d, retry)
	}
	resumeAt := now.Add(time.Second)
	if n, err := s.s.ResumeRelayDeliveries(s.ctx, "a", resumeAt); err != nil || n != 1 {
		t.Fatalf("ResumeRelayDeliveries = %d, %v; want the one waiting retry", n, err)
	}
	due := s.claim("a", resumeAt, 10)
	ids := []int64{}
	for _, d := range due {
		ids = append(ids, d.ID)
	}
	if len(due) != 2 || !slices.Contains(ids, claimed[0].ID) || slices.Contains(ids, claimed[1].ID) {
		t.Errorf("due after resuming = %+v; want the resumed retry and the one never tried, not the one in flight", due)
	}
	if got := s.claim("b", resumeAt, 10); len(got) != 0 {
		t.Errorf("b's retries were resumed too: %+v", got)
	}
	// The in-flight attempt finishes as a retry; resuming then makes it due as well.
	if !s.finish(claimed[1], retry) {
		t.Fatal("finish the attempt in flight")
	}
	if n, err := s.s.ResumeRelayDeliveries(s.ctx, "a", resumeAt); err != nil || n != 1 {
		t.Errorf("second ResumeRelayDeliveries = %d, %v; want 1", n, err)
	}
}

func testRelayDeadLetterReplay(t *testing.T, s *suite) {
	s.apply(relayDelivery("k1", at(1), "activity", odd, "a"))
	now := time.Now()
	got := s.claim("a", now, 1)
	if !s.finish(got[0], store.RelayResult{Status: store.RelayFailed, StatusCode: 410, Error: "410 Gone", At: now}) {
		t.Fatal("finish")
	}
	if again := s.claim("a", now.Add(time.Hour), 1); len(again) != 0 {
		t.Errorf("a dead letter was claimed: %+v", again)
	}
	if dead := s.relayLog(store.RelayFilter{Status: store.RelayFailed}); len(dead) != 1 || dead[0].NextAttemptAt != nil {
		t.Errorf("dead letters = %+v", dead)
	}
	entry := store.AuditEntry{At: now, Actor: "svc:ops", ActorKind: store.ActorService, Action: store.ActionRelayReplay,
		Subject: fmt.Sprint(got[0].ID), Detail: map[string]string{"destination": "a"}}
	d, err := s.s.ReplayRelayDelivery(s.ctx, got[0].ID, now, entry)
	if err != nil || d.Status != store.RelayPending || d.Attempts != 0 || d.WebhookID != got[0].WebhookID {
		t.Fatalf("ReplayRelayDelivery = %+v, %v", d, err)
	}
	if c := s.claim("a", now, 1); len(c) != 1 || c[0].Attempts != 1 {
		t.Errorf("claim after replay = %+v", c)
	}
	if _, err := s.s.ReplayRelayDelivery(s.ctx, got[0].ID, now); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replaying a pending delivery: %v; want ErrConflict", err)
	}
	if _, err := s.s.ReplayRelayDelivery(s.ctx, 999, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replaying an unknown delivery: %v; want ErrNotFound", err)
	}
	audit, err := s.s.ListAudit(s.ctx, store.AuditFilter{Action: store.ActionRelayReplay}, store.Page{First: 10})
	if err != nil || len(audit.Entries) != 1 {
		t.Errorf("audit = %+v, %v; want the one replay", audit.Entries, err)
	}
}

func testRelayRetention(t *testing.T, s *suite) {
	s.apply(relayDelivery("k1", at(1), "activity", odd, "a"))
	s.apply(relayDelivery("k2", at(2), "sleep", odd, "a"))
	now := time.Now()
	got := s.claim("a", now, 1)
	s.finish(got[0], store.RelayResult{Status: store.RelayFailed, StatusCode: 500, Error: "500", At: now})
	// Only the dead letter's body goes: k2 still waits for its delivery.
	n, err := s.s.DropExpiredRelayBodies(s.ctx, now.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DropExpiredRelayBodies = %d, %v; want 1", n, err)
	}
	if _, err := s.s.RelayBody(s.ctx, got[0].EventID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("dead letter's body: %v; want ErrNotFound", err)
	}
	pending := s.relayLog(store.RelayFilter{Status: store.RelayPending})
	if len(pending) != 1 {
		t.Fatalf("pending = %+v", pending)
	}
	if _, err := s.s.RelayBody(s.ctx, pending[0].EventID); err != nil {
		t.Errorf("pending delivery's body: %v", err)
	}
	if _, err := s.s.ReplayRelayDelivery(s.ctx, got[0].ID, now); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replay without a body: %v; want ErrConflict", err)
	}
	// The delivery record stays.
	if log := s.relayLog(store.RelayFilter{}); len(log) != 2 {
		t.Errorf("relay log = %+v", log)
	}
}

func testRelayList(t *testing.T, s *suite) {
	for i := range 5 {
		typ := []string{"activity", "sleep"}[i%2]
		s.apply(relayDelivery(fmt.Sprint("k", i), at(i), typ, odd, "a", "b"))
	}
	all := s.relayLog(store.RelayFilter{})
	if len(all) != 10 || !slices.IsSortedFunc(all, func(x, y store.RelayDelivery) int { return int(y.ID - x.ID) }) {
		t.Errorf("log = %d deliveries, newest first? %+v", len(all), all)
	}
	if got := s.relayLog(store.RelayFilter{Destination: "b", EventType: "sleep"}); len(got) != 2 {
		t.Errorf("b's sleep = %+v", got)
	}
	page, err := s.s.ListRelayDeliveries(s.ctx, store.RelayFilter{}, store.Page{First: 3})
	if err != nil || len(page.Deliveries) != 3 || !page.HasNextPage {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	next, err := s.s.ListRelayDeliveries(s.ctx, store.RelayFilter{}, store.Page{First: 3, After: page.EndCursor})
	if err != nil || len(next.Deliveries) != 3 || next.Deliveries[0].ID >= page.Deliveries[2].ID {
		t.Errorf("second page = %+v, %v", next, err)
	}
	for name, tc := range map[string]struct {
		f store.RelayFilter
		p store.Page
	}{
		"status": {store.RelayFilter{Status: "LOST"}, store.Page{First: 1}},
		"first":  {store.RelayFilter{}, store.Page{First: 0}},
		"cursor": {store.RelayFilter{}, store.Page{First: 1, After: "nope"}},
	} {
		if _, err := s.s.ListRelayDeliveries(s.ctx, tc.f, tc.p); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v; want ErrInvalid", name, err)
		}
	}
}

// Workers claiming side by side never get one delivery twice.
func testRelayClaimConcurrent(t *testing.T, s *suite) {
	const n = 40
	for i := range n {
		s.apply(relayDelivery(fmt.Sprint("k", i), at(i), "activity", odd, "a"))
	}
	now := time.Now()
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				got, err := s.s.ClaimRelayDeliveries(s.ctx, "a", now, now.Add(time.Minute), 3)
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("claimed %d deliveries; want %d", len(seen), n)
	}
	for id, times := range seen {
		if times != 1 {
			t.Errorf("delivery %d claimed %d times", id, times)
		}
	}
}

func testRelayBacklog(t *testing.T, s *suite) {
	n, oldest, err := s.s.PendingRelayDeliveries(s.ctx, "a")
	if err != nil || n != 0 || !oldest.IsZero() {
		t.Errorf("empty backlog = %d, %v, %v", n, oldest, err)
	}
	before := time.Now().Add(-time.Second)
	s.apply(relayDelivery("k1", at(1), "activity", odd, "a", "b"))
	s.apply(relayDelivery("k2", at(2), "activity", odd, "a"))
	got := s.claim("b", time.Now(), 1)
	s.finish(got[0], store.RelayResult{Status: store.RelayDelivered, At: time.Now()})
	n, oldest, err = s.s.PendingRelayDeliveries(s.ctx, "a")
	if err != nil || n != 2 || oldest.Before(before) || oldest.After(time.Now()) {
		t.Errorf("a's backlog = %d, %v, %v; want 2", n, oldest, err)
	}
	if n, _, err := s.s.PendingRelayDeliveries(s.ctx, "b"); err != nil || n != 0 {
		t.Errorf("b's backlog = %d, %v; want 0", n, err)
	}
}

// pieces is a large body already in pieces (store.Pieces), as the webhook handler stages it.
type pieces [][]byte

func (p pieces) Count() int { return len(p) }

func (p pieces) Each(fn func([]byte) error) error {
	for _, b := range p {
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

// A large body is kept in its pieces, read back one at a time, and dropped with them: once
// every destination has it, or after the retention for a dead letter.
func testRelayPieces(t *testing.T, s *suite) {
	body := pieces{[]byte("piece-0"), odd, []byte("piece-2")}
	for i, key := range []string{"k1", "k2"} {
		d := relayDelivery(key, at(i+1), "activity", nil, "a", "b")
		d.Relay.Pieces = body
		s.apply(d)
	}
	log := s.relayLog(store.RelayFilter{Destination: "a"})
	if len(log) != 2 {
		t.Fatalf("relay log = %+v", log)
	}
	for _, d := range log {
		n, err := s.s.RelayPieces(s.ctx, d.EventID)
		if err != nil || n != 3 {
			t.Fatalf("RelayPieces = %d, %v; want 3", n, err)
		}
		for i := range n {
			if got, err := s.s.RelayPiece(s.ctx, d.EventID, i); err != nil || !bytes.Equal(got, body[i]) {
				t.Errorf("RelayPiece(%d) = %q, %v", i, got, err)
			}
		}
		if _, err := s.s.RelayPiece(s.ctx, d.EventID, 3); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a piece past the last: %v; want ErrNotFound", err)
		}
	}
	// k1 reaches both destinations: its pieces go.
	now := time.Now()
	k1 := log[len(log)-1].EventID
	for _, dest := range []string{"a", "b"} {
		for _, d := range s.claim(dest, now, 2) {
			res := store.RelayResult{Status: store.RelayFailed, StatusCode: 410, Error: "410 Gone", At: now}
			if d.EventID == k1 {
				res = store.RelayResult{Status: store.RelayDelivered, StatusCode: 200, At: now}
			}
			s.finish(d, res)
		}
	}
	if n, err := s.s.RelayPieces(s.ctx, k1); err != nil || n != 0 {
		t.Errorf("RelayPieces after delivery = %d, %v; want 0", n, err)
	}
	if _, err := s.s.RelayPiece(s.ctx, k1, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a delivered body's piece: %v; want ErrNotFound", err)
	}
	// k2 is a dead letter twice over: replayable while its pieces are kept, not after.
	dead := s.relayLog(store.RelayFilter{Status: store.RelayFailed})
	if len(dead) != 2 {
		t.Fatalf("dead letters = %+v", dead)
	}
	if _, err := s.s.ReplayRelayDelivery(s.ctx, dead[0].ID, now); err != nil {
		t.Errorf("replay with pieces kept: %v", err)
	}
	s.finish(s.claim(dead[0].Destination, now, 1)[0], store.RelayResult{Status: store.RelayFailed, StatusCode: 410, Error: "410 Gone", At: now})
	if n, err := s.s.DropExpiredRelayBodies(s.ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("DropExpiredRelayBodies = %d, %v; want 1", n, err)
	}
	if _, err := s.s.RelayPiece(s.ctx, dead[0].EventID, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired body's piece: %v; want ErrNotFound", err)
	}
	if _, err := s.s.ReplayRelayDelivery(s.ctx, dead[1].ID, now); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replay without a body: %v; want ErrConflict", err)
	}
}
