package sqlite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/storetest"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/webhook"
)

// These tests hold the batcher inside a first delivery (its Audit func waits) while they
// queue others, so that what forms a batch is known, not left to timing.

// connect is a delivery connecting user uid under dedupe key key.
func connect(key, uid string) store.Delivery {
	return store.Delivery{
		DedupeKey: key,
		SignedAt:  storetest.T0,
		Body:      []byte("{}"),
		Event: store.Event{
			Kind: store.EventAuthSuccess,
			User: &store.UserSnapshot{UserID: uid, ReferenceID: "alice", Provider: "OURA"},
		},
	}
}

// applied is what one ApplyWebhook call returned, or the value it panicked with.
type applied struct {
	out      store.Outcome
	err      error
	panicked any
}

// goApply calls ApplyWebhook in a goroutine of its own, as a webhook handler would.
func goApply(d *DB, ctx context.Context, dl store.Delivery) <-chan applied {
	c := make(chan applied, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				c <- applied{panicked: p}
			}
		}()
		out, err := d.ApplyWebhook(ctx, dl)
		c <- applied{out: out, err: err}
	}()
	return c
}

// batches records how many deliveries each commit of the batcher applied.
type batches struct {
	mu    sync.Mutex
	sizes []int
}

func countBatches(d *DB) *batches {
	b := &batches{}
	d.afterCommit = func(n int) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.sizes = append(b.sizes, n)
	}
	return b
}

// get is safe once every call of the batches has returned: the batcher runs afterCommit
// before it answers them.
func (b *batches) get() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sizes)
}

// hold applies a delivery that keeps the batcher busy until release is called, and returns
// once the batcher is holding.
func hold(t *testing.T, d *DB) (release func() applied) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	dl := connect("hold", "u-hold")
	dl.Audit = func(store.Outcome) []store.AuditEntry {
		close(entered)
		<-gate
		return nil
	}
	res := goApply(d, t.Context(), dl)
	<-entered
	var once sync.Once
	release = func() applied {
		once.Do(func() { close(gate) })
		return <-res
	}
	t.Cleanup(func() { once.Do(func() { close(gate) }) })
	return release
}

// queue calls ApplyWebhook for each delivery in turn, each once the one before is queued,
// so that they queue in this order.
func queue(t *testing.T, d *DB, ctx context.Context, dls ...store.Delivery) []<-chan applied {
	t.Helper()
	var res []<-chan applied
	for _, dl := range dls {
		n := d.queued()
		res = append(res, goApply(d, ctx, dl))
		waitQueued(t, d, n+1)
	}
	return res
}

// waitQueued waits until n deliveries are queued for the batcher.
func waitQueued(t *testing.T, d *DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); d.queued() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries queued; want %d", d.queued(), n)
		}
	}
}

func inboxKeys(t *testing.T, d *DB) []string {
	t.Helper()
	events, err := storetest.Inbox(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range events {
		keys = append(keys, e.DedupeKey)
	}
	return keys
}

func wantBatches(t *testing.T, b *batches, want ...int) {
	t.Helper()
	if got := b.get(); !slices.Equal(got, want) {
		t.Errorf("deliveries applied per commit = %v; want %v", got, want)
	}
}

// TestGroupCommit: deliveries that wait while the writer is busy share commits, at most
// maxBatch a commit, and each is applied once.
func TestGroupCommit(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	b := countBatches(d)
	release := hold(t, d)
	const n = 2*maxBatch + 22
	var res []<-chan applied
	for i := range n {
		res = append(res, goApply(d, t.Context(), connect(fmt.Sprint("k", i), fmt.Sprint("u", i))))
	}
	waitQueued(t, d, n)
	if r := release(); r.err != nil || r.out.Duplicate {
		t.Fatalf("held delivery: %+v", r)
	}
	for i, c := range res {
		if r := <-c; r.err != nil || r.out.Duplicate || len(r.out.Users) != 1 || r.out.Users[0].UserID != fmt.Sprint("u", i) {
			t.Errorf("delivery %d: %+v; want u%d applied", i, r, i)
		}
	}
	wantBatches(t, b, 1, maxBatch, maxBatch, 22)
	keys := inboxKeys(t, d)
	slices.Sort(keys)
	if len(keys) != n+1 || len(slices.Compact(keys)) != n+1 {
		t.Errorf("inbox has %d rows (%d keys); want %d, each once", len(keys), len(slices.Compact(keys)), n+1)
	}
	users, err := d.ListTerraUsers(t.Context(), "alice", false)
	if err != nil || len(users) != n+1 {
		t.Errorf("alice has %d users, %v; want %d", len(users), err, n+1)
	}
}

// TestBatchInvalidDeliveryFailsAlone: a delivery refused halfway (its inbox row already
// written) is undone alone and gets ErrInvalid; the deliveries around it commit.
func TestBatchInvalidDeliveryFailsAlone(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	b := countBatches(d)
	release := hold(t, d)
	bad := store.Delivery{DedupeKey: "bad", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventDeauth}}
	res := queue(t, d, t.Context(), connect("ok1", "u1"), bad, connect("ok2", "u2"))
	release()
	if r := <-res[0]; r.err != nil {
		t.Errorf("ok1: %v", r.err)
	}
	if r := <-res[1]; !errors.Is(r.err, store.ErrInvalid) {
		t.Errorf("bad: %+v; want ErrInvalid", r)
	}
	if r := <-res[2]; r.err != nil {
		t.Errorf("ok2: %v", r.err)
	}
	wantBatches(t, b, 1, 2)
	if got := inboxKeys(t, d); !slices.Equal(got, []string{"hold", "ok1", "ok2"}) {
		t.Errorf("inbox = %q; want hold ok1 ok2", got)
	}
	// Its inbox row was undone: it can become a dead letter.
	if e, err := d.RecordDeadLetter(t.Context(), bad, "no user"); err != nil || e.Outcome != store.InboxFailed {
		t.Errorf("RecordDeadLetter = %+v, %v; want a new dead letter", e, err)
	}
}

// audited is connect with an audit entry naming the delivery's key as its subject.
func audited(key, uid string) store.Delivery {
	dl := connect(key, uid)
	dl.Audit = func(store.Outcome) []store.AuditEntry {
		return []store.AuditEntry{{At: storetest.T0, Actor: "terra", ActorKind: store.ActorTerra, Action: store.ActionConnectionAdded, Subject: key}}
	}
	return dl
}

// auditSubjects lists the subjects of the audit log, oldest first.
func auditSubjects(t *testing.T, d *DB) []string {
	t.Helper()
	page, err := d.ListAudit(t.Context(), store.AuditFilter{}, store.Page{First: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, e := range slices.Backward(page.Entries) {
		subjects = append(subjects, e.Subject)
	}
	return subjects
}

// TestBatchFailureAfterItsInboxRow: a delivery that fails after writing its inbox row, its
// user and its audit entry is undone alone, and the deliveries before and after it in the
// batch are kept once each (the batch is applied again without it), audit entries included.
func TestBatchFailureAfterItsInboxRow(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	b := countBatches(d)
	release := hold(t, d)
	var calls atomic.Int64
	d.afterApply = func() error {
		if calls.Add(1) == 3 { // hold, ok1, then mid: the first time only
			return fmt.Errorf("mid refused by the database: %w", store.ErrInvalid)
		}
		return nil
	}
	res := queue(t, d, t.Context(), audited("ok1", "u1"), audited("mid", "u-mid"), audited("ok2", "u2"), connect("ok1", "u1-again"))
	release()
	for i, want := range []string{"applied", "invalid", "applied", "duplicate"} {
		r := <-res[i]
		got := "applied"
		switch {
		case errors.Is(r.err, store.ErrInvalid):
			got = "invalid"
		case r.err != nil:
			got = r.err.Error()
		case r.out.Duplicate:
			got = "duplicate"
		case len(r.out.Users) != 1:
			got = fmt.Sprintf("%d users changed", len(r.out.Users))
		}
		if got != want {
			t.Errorf("delivery %d: %s; want %s", i, got, want)
		}
	}
	wantBatches(t, b, 1, 2)
	if got := inboxKeys(t, d); !slices.Equal(got, []string{"hold", "ok1", "ok2"}) {
		t.Errorf("inbox = %q; want hold ok1 ok2", got)
	}
	if got := auditSubjects(t, d); !slices.Equal(got, []string{"ok1", "ok2"}) {
		t.Errorf("audit subjects = %q; want ok1 ok2, once each", got)
	}
	for uid, want := range map[string]error{"u1": nil, "u2": nil, "u-mid": store.ErrNotFound, "u1-again": store.ErrNotFound} {
		if _, err := d.TerraUser(t.Context(), uid); !errors.Is(err, want) {
			t.Errorf("%s: %v; want %v", uid, err, want)
		}
	}
	events, err := storetest.Inbox(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Outcome != store.InboxApplied || e.AppliedAt == nil || !e.AppliedAt.Equal(store.StoredTime(*e.AppliedAt)) {
			t.Errorf("inbox row %s: outcome %q, applied at %v; want applied, with its time", e.DedupeKey, e.Outcome, e.AppliedAt)
		}
	}
}

// TestAppliedUsersAreAsStored: the users ApplyWebhook returns are the rows a read gives
// afterwards, to the value: it no longer reads them back as it saves them.
func TestAppliedUsersAreAsStored(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	created := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	seen := created.Add(time.Hour)
	signed := storetest.T0.Add(1500 * time.Nanosecond)
	auth := connect("auth", "u-old")
	auth.SignedAt = signed
	auth.Event.User.Scopes = []string{"sleep", " activity", "sleep", ""}
	auth.Event.User.CreatedAt = &created
	auth.Event.User.LastWebhookUpdate = &seen
	reauth := store.Delivery{
		DedupeKey: "reauth",
		SignedAt:  signed.Add(time.Minute),
		Event: store.Event{
			Kind:    store.EventReauth,
			User:    &store.UserSnapshot{UserID: "u-new", Provider: "OURA"},
			OldUser: &store.UserSnapshot{UserID: "u-old"},
		},
	}
	for _, dl := range []store.Delivery{auth, reauth} {
		out, err := d.ApplyWebhook(t.Context(), dl)
		if err != nil {
			t.Fatalf("%s: %v", dl.DedupeKey, err)
		}
		if len(out.Users) == 0 {
			t.Fatalf("%s changed no user", dl.DedupeKey)
		}
		for _, got := range out.Users {
			stored, err := d.TerraUser(t.Context(), got.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, stored) {
				t.Errorf("%s: ApplyWebhook returned\n%+v\nand a read gives\n%+v", dl.DedupeKey, got, stored)
			}
		}
	}
}

// TestBatchDuplicateKeys: deliveries of one dedupe key in one batch apply once, the first;
// one refused leaves its key to the next, as one by one.
func TestBatchDuplicateKeys(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	b := countBatches(d)
	release := hold(t, d)
	refused := store.Delivery{DedupeKey: "k2", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventDeauth}}
	res := queue(t, d, t.Context(),
		connect("k1", "u1"),
		connect("k1", "u1-again"),
		connect("hold", "u-hold-again"), // committed by the batch before
		refused,
		connect("k2", "u2"),
	)
	release()
	want := []string{"applied", "duplicate", "duplicate", "invalid", "applied"}
	for i, c := range res {
		r := <-c
		got := "applied"
		switch {
		case errors.Is(r.err, store.ErrInvalid):
			got = "invalid"
		case r.err != nil:
			got = r.err.Error()
		case r.out.Duplicate:
			got = "duplicate"
		}
		if got != want[i] {
			t.Errorf("delivery %d: %s; want %s", i, got, want[i])
		}
	}
	wantBatches(t, b, 1, 2)
	for _, uid := range []string{"u1-again", "u-hold-again"} {
		if _, err := d.TerraUser(t.Context(), uid); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v; want a duplicate to apply nothing", uid, err)
		}
	}
	if got := inboxKeys(t, d); !slices.Equal(got, []string{"hold", "k1", "k2"}) {
		t.Errorf("inbox = %q; want hold k1 k2", got)
	}
}

// TestBatchDuplicateRefused: a retried delivery that would now be refused (here: its user
// went missing) is a duplicate all the same, of a delivery committed before or of one earlier
// in its batch, alone in its batch or not, as when the inbox was looked at first.
func TestBatchDuplicateRefused(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	refused := func(key string) store.Delivery {
		return store.Delivery{DedupeKey: key, SignedAt: storetest.T0, Event: store.Event{Kind: store.EventDeauth}}
	}
	if _, err := d.ApplyWebhook(t.Context(), connect("k1", "u1")); err != nil {
		t.Fatal(err)
	}
	if out, err := d.ApplyWebhook(t.Context(), refused("k1")); err != nil || !out.Duplicate {
		t.Errorf("alone: %+v, %v; want a duplicate", out, err)
	}
	release := hold(t, d)
	res := queue(t, d, t.Context(), connect("k2", "u2"), refused("k1"), refused("k2"), refused("k3"))
	release()
	for i, want := range []string{"applied", "duplicate", "duplicate", "invalid"} {
		r := <-res[i]
		got := "applied"
		switch {
		case errors.Is(r.err, store.ErrInvalid):
			got = "invalid"
		case r.err != nil:
			got = r.err.Error()
		case r.out.Duplicate:
			got = "duplicate"
		}
		if got != want {
			t.Errorf("delivery %d: %s; want %s", i, got, want)
		}
	}
	if got := inboxKeys(t, d); !slices.Equal(got, []string{"k1", "hold", "k2"}) {
		t.Errorf("inbox = %q; want k1 hold k2", got)
	}
}

// TestBatchPanicInAudit: a panic while applying one delivery is raised again in its caller,
// with the same value, and undoes that delivery only; the batcher goes on.
func TestBatchPanicInAudit(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	b := countBatches(d)
	release := hold(t, d)
	bug := errors.New("index out of range")
	buggy := connect("buggy", "u-buggy")
	buggy.Audit = func(store.Outcome) []store.AuditEntry { panic(bug) }
	res := queue(t, d, t.Context(), connect("ok1", "u1"), buggy, connect("ok2", "u2"))
	release()
	if r := <-res[0]; r.err != nil || r.panicked != nil {
		t.Errorf("ok1: %+v", r)
	}
	if r := <-res[1]; r.panicked != bug {
		t.Errorf("buggy: %+v; want its panic raised again", r)
	}
	if r := <-res[2]; r.err != nil || r.panicked != nil {
		t.Errorf("ok2: %+v", r)
	}
	wantBatches(t, b, 1, 2)
	if _, err := d.TerraUser(t.Context(), "u-buggy"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("u-buggy: %v; want nothing of the panicking delivery applied", err)
	}
	if got := inboxKeys(t, d); !slices.Equal(got, []string{"hold", "ok1", "ok2"}) {
		t.Errorf("inbox = %q; want hold ok1 ok2", got)
	}
	// The batcher lives, and left no transaction open for the other writes.
	if err := d.AppendAudit(t.Context(), store.AuditEntry{At: storetest.T0, Actor: "a", ActorKind: store.ActorUser, Action: store.ActionConnectionRemoved}); err != nil {
		t.Errorf("AppendAudit after the panic: %v", err)
	}
	if r := <-goApply(d, t.Context(), connect("after", "u3")); r.err != nil || r.panicked != nil {
		t.Errorf("a delivery after the panic: %+v", r)
	}
}

// TestBatchCallerGivesUp: a caller whose context ends while it is queued returns at once,
// and its delivery is skipped, whether the batcher has taken it yet or not.
func TestBatchCallerGivesUp(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	b := countBatches(d)
	release := hold(t, d)

	early, cancelEarly := context.WithCancel(t.Context())
	late, cancelLate := context.WithCancel(t.Context())
	first := connect("first", "u-first")
	first.Audit = func(store.Outcome) []store.AuditEntry { cancelLate(); return nil } // in its batch
	res := queue(t, d, t.Context(), first)
	res = append(res, queue(t, d, early, connect("early", "u-early"))...)
	res = append(res, queue(t, d, late, connect("late", "u-late"))...)
	res = append(res, queue(t, d, t.Context(), connect("after", "u-after"))...)
	cancelEarly()
	if r := <-res[1]; !errors.Is(r.err, context.Canceled) {
		t.Errorf("early: %+v; want context.Canceled while the batcher is busy", r)
	}
	release()
	if r := <-res[0]; r.err != nil {
		t.Errorf("first: %v", r.err)
	}
	if r := <-res[2]; !errors.Is(r.err, context.Canceled) {
		t.Errorf("late: %+v; want context.Canceled", r)
	}
	if r := <-res[3]; r.err != nil {
		t.Errorf("after: %v", r.err)
	}
	wantBatches(t, b, 1, 2)
	if got := inboxKeys(t, d); !slices.Equal(got, []string{"hold", "first", "after"}) {
		t.Errorf("inbox = %q; want hold first after", got)
	}
}

// TestCloseAppliesQueued: Close waits for the deliveries already queued; later ones fail.
func TestCloseAppliesQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	d, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	release := hold(t, d)
	res := queue(t, d, t.Context(), connect("queued", "u1"))
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		d.mu.Lock()
		c := d.closed
		d.mu.Unlock()
		if c {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not begin")
		}
	}
	if _, err := d.ApplyWebhook(t.Context(), connect("refused", "u2")); !errors.Is(err, errClosed) {
		t.Errorf("ApplyWebhook while closing: %v; want errClosed", err)
	}
	release()
	if r := <-res[0]; r.err != nil {
		t.Errorf("queued before Close: %v", r.err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := d.ApplyWebhook(t.Context(), connect("late", "u3")); !errors.Is(err, errClosed) {
		t.Errorf("ApplyWebhook after Close: %v; want errClosed", err)
	}
	if got := inboxKeys(t, open(t, path)); !slices.Equal(got, []string{"hold", "queued"}) {
		t.Errorf("inbox after reopening = %q; want hold queued", got)
	}
}

// panicky is the store with a bug planted in one delivery's Audit func, which the store
// calls on its batcher's goroutine.
type panicky struct {
	*DB
	marker string
}

func (p panicky) ApplyWebhook(ctx context.Context, dl store.Delivery) (store.Outcome, error) {
	if bytes.Contains(dl.Body, []byte(p.marker)) {
		dl.Audit = func(store.Outcome) []store.AuditEntry { panic("audit bug") }
	}
	return p.DB.ApplyWebhook(ctx, dl)
}

// TestPanicInBatchBecomesADeadLetter runs the webhook handler on the store: a panic in the
// batcher reaches the handler's goroutine, which keeps the delivery as a dead letter.
func TestPanicInBatchBecomesADeadLetter(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	const secret = "test-secret"
	h, err := webhook.New([]string{secret}, connection.NewMapping(nil, nil).DecodeEvent, panicky{DB: d, marker: "u-bug"}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	post := func(userID string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"type": "auth", "status": "success", "reference_id": "alice",
			"user": map[string]any{"user_id": userID, "provider": "OURA", "reference_id": "alice", "active": true}})
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
		req.Header.Set("X-Terra-Trace-Id", "trace-"+userID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", userID, err)
		}
		defer resp.Body.Close()
		var got struct{ Status string }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d, %v", userID, resp.StatusCode, err)
		}
		return got.Status
	}
	if got := post("u-bug"); got != "dead_letter" {
		t.Errorf("the panicking delivery: %q; want dead_letter", got)
	}
	if got := post("u-ok"); got != "ok" {
		t.Errorf("the delivery after it: %q; want ok", got)
	}
	if _, err := d.TerraUser(t.Context(), "u-bug"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("u-bug: %v; want nothing applied", err)
	}
	events, err := storetest.Inbox(t.Context(), d)
	if err != nil || len(events) != 2 || events[0].Outcome != store.InboxFailed || !strings.Contains(events[0].Error, "internal error") ||
		events[1].Outcome != store.InboxApplied {
		t.Errorf("inbox = %+v, %v; want the dead letter, then u-ok applied", events, err)
	}
}

// BenchmarkApplyWebhook applies new connections from 16 goroutines per CPU at once (32 on
// two cores), as webhook handlers would: the store's share of webhook ingest.
func BenchmarkApplyWebhook(b *testing.B) {
	d, err := Open(b.Context(), filepath.Join(b.TempDir(), "terragate.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var commits, n atomic.Int64
	d.afterCommit = func(int) { commits.Add(1) }
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := d.ApplyWebhook(b.Context(), connect(fmt.Sprint("k", i), fmt.Sprint("u", i))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.N)/float64(max(1, commits.Load())), "deliveries/commit")
}

// BenchmarkApplyWebhookSerial applies new connections one at a time, each in a commit of
// its own: what a delivery costs the writer when deliveries arrive too far apart to share
// commits, as at moderate rates.
func BenchmarkApplyWebhookSerial(b *testing.B) {
	d, err := Open(b.Context(), filepath.Join(b.TempDir(), "terragate.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := d.ApplyWebhook(b.Context(), audited(fmt.Sprint("k", i), fmt.Sprint("u", i))); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBatchSessions: new widget sessions queued behind a busy writer share its next commit
// with a delivery; each is answered only once committed, with its audit entry in the same
// transaction, and one that conflicts is undone alone, audit entry included.
func TestBatchSessions(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	release := hold(t, d)
	exp := time.Now().UTC().Add(15 * time.Minute)
	session := func(id, terraID string) store.WidgetSession {
		return store.WidgetSession{ID: id, TerraSessionID: terraID, ReferenceID: "alice", InputKey: "k", URL: "https://w/" + id, ExpiresAt: exp}
	}
	created := make(map[string]chan error)
	for _, s := range []store.WidgetSession{session("s1", "t1"), session("s2", "t1"), session("s3", "t3")} {
		n := d.queued()
		c := make(chan error, 1)
		created[s.ID] = c
		go func() {
			c <- d.CreateWidgetSession(t.Context(), s, store.AuditEntry{Actor: "alice", ActorKind: store.ActorUser, Action: store.ActionSessionCreated, Subject: s.ID})
		}()
		waitQueued(t, d, n+1)
	}
	res := queue(t, d, t.Context(), connect("k1", "u1"))
	for id, c := range created {
		select {
		case err := <-c:
			t.Fatalf("session %s answered (%v) before its commit", id, err)
		default:
		}
	}
	if r := release(); r.err != nil {
		t.Fatal(r.err)
	}
	if r := <-res[0]; r.err != nil {
		t.Fatal(r.err)
	}
	for id, want := range map[string]error{"s1": nil, "s2": store.ErrConflict, "s3": nil} {
		if err := <-created[id]; !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("CreateWidgetSession(%s) = %v; want %v", id, err, want)
		}
		_, err := d.WidgetSession(t.Context(), id)
		if stored := err == nil; stored != (want == nil) {
			t.Errorf("session %s stored: %v (%v)", id, stored, err)
		}
	}
	page, err := d.ListAudit(t.Context(), store.AuditFilter{Action: store.ActionSessionCreated}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, e := range page.Entries {
		subjects = append(subjects, e.Subject)
	}
	slices.Sort(subjects)
	if !slices.Equal(subjects, []string{"s1", "s3"}) {
		t.Errorf("audit entries for %v; want s1 and s3", subjects)
	}
}

// benchSession is a new session as widget.Service writes it, with its audit entry.
func benchSession(i int) (store.WidgetSession, store.AuditEntry) {
	now := time.Now().UTC()
	id := fmt.Sprintf("s-%08d", i)
	return store.WidgetSession{
			ID: id, TerraSessionID: "t-" + id, ReferenceID: fmt.Sprint("user-", i), Providers: []string{"GARMIN", "OURA"},
			Language: "en", URL: "https://widget.tryterra.co/session/" + id, Status: store.SessionCreated,
			InputKey: "GARMIN,OURA|en||", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(15 * time.Minute),
		}, store.AuditEntry{
			At: now, Actor: fmt.Sprint("user-", i), ActorKind: store.ActorUser, Action: store.ActionSessionCreated,
			Subject: id, ReferenceID: fmt.Sprint("user-", i), ClientIP: "127.0.0.1", Detail: map[string]string{"providers": "GARMIN,OURA"},
		}
}

// BenchmarkCreateWidgetSession stores new sessions with their audit entries: one at a time
// (each its own commit, as at one request in flight) and from 16 goroutines per CPU (sharing
// commits, as at 32 in flight). The store's share of createWidgetSession.
func BenchmarkCreateWidgetSession(b *testing.B) {
	for _, par := range []int{0, 16} {
		b.Run(fmt.Sprint("parallel=", par), func(b *testing.B) {
			d, err := Open(b.Context(), filepath.Join(b.TempDir(), "terragate.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			var n atomic.Int64
			create := func() error {
				s, e := benchSession(int(n.Add(1)))
				return d.CreateWidgetSession(b.Context(), s, e)
			}
			b.ReportAllocs()
			if par == 0 {
				for b.Loop() {
					if err := create(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := create(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
