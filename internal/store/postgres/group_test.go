package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/core"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
)

// dataEvent is a data event with a body for the relay to dests.
func dataEvent(key string, dests ...string) store.Delivery {
	at := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	return store.Delivery{
		DedupeKey: key, TraceID: "trace-" + key, SignedAt: at, ReceivedAt: at.Add(time.Second),
		Event: store.Event{Kind: store.EventIgnored, Type: "activity"},
		Relay: &store.RelayEvent{Type: "activity", TraceID: "trace-" + key, Reference: "ref", OrderingTimestamp: "ts",
			Body: []byte(`{"key":"` + key + `"}`), Destinations: dests},
	}
}

func TestIsData(t *testing.T) {
	d := open(t)
	named := func(store.Outcome) []store.AuditEntry {
		return []store.AuditEntry{{Action: store.ActionConnectionAdded}}
	}
	none := func(store.Outcome) []store.AuditEntry { return nil }
	auth := dataEvent("k")
	auth.Event.Kind = store.EventAuthSuccess
	for name, c := range map[string]struct {
		change func(*store.Delivery)
		want   bool
	}{
		"data event":                     {func(*store.Delivery) {}, true},
		"no destination":                 {func(dl *store.Delivery) { dl.Relay = nil }, true},
		"an audit naming nothing":        {func(dl *store.Delivery) { dl.Audit = none }, true},
		"an audit naming an entry":       {func(dl *store.Delivery) { dl.Audit = named }, false},
		"a connection event":             {func(dl *store.Delivery) { *dl = auth }, false},
		"a large body kept in pieces":    {func(dl *store.Delivery) { dl.Relay.Pieces = pieces{} }, false},
		"a backfill (only auth has one)": {func(dl *store.Delivery) { dl.Backfill = &store.BackfillPlan{} }, false},
	} {
		dl := dataEvent("k", "a")
		c.change(&dl)
		if got := d.isData(dl); got != c.want {
			t.Errorf("%s: isData = %v, want %v", name, got, c.want)
		}
	}
}

type pieces struct{}

func (pieces) Count() int                    { return 1 }
func (pieces) Each(func([]byte) error) error { return nil }

// A batch holding a new event, one already stored, the same new event twice and one
// PostgreSQL refuses: the refusal fails the batch, each event is then applied alone, and each
// gets what it would have got alone.
func TestDataBatchFailsOver(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	if _, err := d.ApplyWebhook(ctx, dataEvent("stored", "a")); err != nil {
		t.Fatal(err)
	}
	bad := dataEvent("bad", "a")
	bad.TraceID = "nul\x00"
	batch := []*dataWrite{
		{ctx: ctx, dl: dataEvent("new", "a", "b")},
		{ctx: ctx, dl: dataEvent("stored", "a")},
		{ctx: ctx, dl: bad},
		{ctx: ctx, dl: dataEvent("new", "a", "b")},
	}
	d.applyData(ctx, batch)
	if w := batch[0]; w.err != nil || !reflect.DeepEqual(w.out, dataOutcome()) {
		t.Errorf("new: %+v, %v; want applied", w.out, w.err)
	}
	for _, i := range []int{1, 3} {
		if w := batch[i]; !errors.Is(w.err, core.ErrDuplicate) {
			t.Errorf("%s (#%d): %v; want ErrDuplicate", w.dl.DedupeKey, i, w.err)
		}
	}
	if w := batch[2]; !errors.Is(w.err, store.ErrInvalid) {
		t.Errorf("bad: %v; want ErrInvalid", w.err)
	}
	page, err := d.ListRelayDeliveries(ctx, store.RelayFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range page.Deliveries {
		got[r.TraceID+" "+r.Destination]++
	}
	want := map[string]int{"trace-stored a": 1, "trace-new a": 1, "trace-new b": 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("relay deliveries %v, want %v", got, want)
	}
}

// What the batch stores is what the core stores for the same event: the inbox row and the
// relay deliveries, but for ids and webhook ids.
func TestDataBatchStoresWhatTheCoreStores(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	viaCore, viaBatch := dataEvent("core", "a"), dataEvent("batch", "a")
	viaBatch.TraceID, viaBatch.Relay.TraceID = viaCore.TraceID, viaCore.TraceID
	viaBatch.Relay.Body = viaCore.Relay.Body
	outCore, err := d.coreStore.ApplyWebhook(ctx, viaCore)
	if err != nil {
		t.Fatal(err)
	}
	w := &dataWrite{ctx: ctx, dl: viaBatch}
	d.applyData(ctx, []*dataWrite{w})
	if w.err != nil || !reflect.DeepEqual(w.out, outCore) {
		t.Fatalf("batch: %+v, %v; core gave %+v", w.out, w.err, outCore)
	}
	page, err := d.ListWebhookEvents(ctx, store.InboxFilter{}, store.Page{First: 10})
	if err != nil || len(page.Events) != 2 {
		t.Fatalf("inbox: %+v, %v", page, err)
	}
	a, b := page.Events[0], page.Events[1]
	a.ID, b.ID, a.DedupeKey, b.DedupeKey, a.AppliedAt, b.AppliedAt = 0, 0, "", "", nil, nil
	if !reflect.DeepEqual(a, b) {
		t.Errorf("inbox rows differ:\n batch %+v\n core  %+v", a, b)
	}
	rs, err := d.ListRelayDeliveries(ctx, store.RelayFilter{}, store.Page{First: 10})
	if err != nil || len(rs.Deliveries) != 2 {
		t.Fatalf("relay: %+v, %v", rs, err)
	}
	x, y := rs.Deliveries[0], rs.Deliveries[1]
	for _, r := range []*store.RelayDelivery{&x, &y} {
		body, err := d.RelayBody(ctx, r.EventID)
		if err != nil || string(body) != string(viaCore.Relay.Body) {
			t.Errorf("delivery %d: body %q, %v", r.ID, body, err)
		}
		r.ID, r.EventID, r.WebhookID, r.CreatedAt, r.NextAttemptAt = 0, 0, "", time.Time{}, nil
	}
	if !reflect.DeepEqual(x, y) {
		t.Errorf("relay deliveries differ:\n %+v\n %+v", x, y)
	}
}

// Two instances on one database given the same events at once, in opposite orders: each
// event is recorded and enqueued once. Batches of both lock the same keys; sorting them (and
// applying a failed batch's events alone) keeps a deadlock from failing any.
func TestDataEventsFromTwoInstances(t *testing.T) {
	url := pgtest.NewSchema(t)
	a, b := openURL(t, url), openURL(t, url)
	const events = 300
	var recorded sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, 2*events)
	for i, inst := range []*DB{a, b} {
		for g := range 16 {
			wg.Go(func() {
				for n := g; n < events; n += 16 {
					k := n
					if i == 1 {
						k = events - 1 - n
					}
					out, err := inst.ApplyWebhook(context.Background(), dataEvent(fmt.Sprintf("k%03d", k), "a"))
					if err != nil {
						errs <- err
						return
					}
					if !out.Duplicate {
						if _, twice := recorded.LoadOrStore(k, i); twice {
							errs <- fmt.Errorf("event %d recorded twice", k)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n, _, err := a.PendingRelayDeliveries(t.Context(), "a")
	if err != nil || n != events {
		t.Errorf("pending deliveries %d, %v; want %d", n, err, events)
	}
}

// A batch of results: both deliveries of one event delivered (the second statement sees the
// first, so the body goes), a stale attempt (another claimed the delivery since), and one
// whose statement PostgreSQL refuses, which fails the batch: each result is then recorded
// alone, and each gets what it would have got alone.
func TestFinishBatch(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	for _, k := range []string{"two", "one", "stale"} {
		dests := []string{"a"}
		if k == "two" {
			dests = append(dests, "b")
		}
		if _, err := d.ApplyWebhook(ctx, dataEvent(k, dests...)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	claimed := map[string]store.RelayDelivery{}
	for _, dest := range []string{"a", "b"} {
		got, err := d.ClaimRelayDeliveries(ctx, dest, now, now.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			claimed[r.TraceID+" "+dest] = r
		}
	}
	stale := claimed["trace-stale a"]
	stale.Attempts-- // an earlier attempt, whose lease ran out
	delivered := store.RelayResult{Status: store.RelayDelivered, StatusCode: 204, At: now}
	write := func(r store.RelayDelivery) *finishWrite {
		f, err := d.FinishOf(r, delivered)
		if err != nil {
			t.Fatal(err)
		}
		return &finishWrite{ctx: ctx, d: r, r: delivered, f: f}
	}
	for _, refused := range []bool{false, true} {
		t.Run(fmt.Sprintf("refused=%v", refused), func(t *testing.T) {
			if refused {
				if _, err := d.pool.Exec(ctx, "UPDATE relay_deliveries SET status = 'PENDING', delivered_at = NULL, next_attempt_at = now(), leased_until = NULL"); err != nil {
					t.Fatal(err)
				}
				if _, err := d.pool.Exec(ctx, "UPDATE relay_events SET body = '{}'"); err != nil {
					t.Fatal(err)
				}
			}
			batch := []*finishWrite{write(claimed["trace-two a"]), write(claimed["trace-two b"]), write(stale)}
			if refused {
				bad := write(claimed["trace-one a"])
				bad.f.DeliveredAt = nil // DELIVERED without a time: the table's check refuses it
				batch = append(batch, bad)
			}
			d.finishBatch(ctx, batch)
			for i, want := range []bool{true, true, false, true} {
				if i >= len(batch) {
					break
				}
				if w := batch[i]; w.err != nil || w.ok != want {
					t.Errorf("result %d (%s): %v, %v; want %v", i, w.d.TraceID, w.ok, w.err, want)
				}
			}
			if _, err := d.RelayBody(ctx, claimed["trace-two a"].EventID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("body of the event both destinations have: %v; want dropped", err)
			}
			if _, err := d.RelayBody(ctx, stale.EventID); err != nil {
				t.Errorf("body of the stale attempt's event: %v; want kept", err)
			}
		})
	}
}
