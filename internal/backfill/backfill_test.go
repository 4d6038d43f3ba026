package backfill_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/backfill"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

const (
	devID  = "dev-backfill"
	apiKey = "key-backfill-0123456789"
)

type env struct {
	emu   *terrasim.Emulator
	store store.Store
	w     *backfill.Worker
}

func newEnv(t *testing.T) *env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "terragate.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	emu := terrasim.New(terrasim.Config{DevID: devID, APIKey: apiKey})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	t.Cleanup(emu.Close)
	tc := terra.New(terra.Config{BaseURL: srv.URL + "/v2", DevID: devID, APIKey: apiKey, Timeout: 2 * time.Second}, nil, log)
	return &env{emu: emu, store: st, w: backfill.New(tc, st, log, backfill.Options{})}
}

// connect plays a new connection's first auth webhook, recorded with plan as the connection
// service records it.
func (e *env) connect(t *testing.T, days int, types ...string) terra.User {
	t.Helper()
	u, err := e.emu.Connect("OURA", "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_, err = e.store.ApplyWebhook(context.Background(), store.Delivery{
		DedupeKey: "auth-" + u.UserID, SignedAt: now, ReceivedAt: now,
		Event: store.Event{Kind: store.EventAuthSuccess, Type: "auth", ReferenceID: "alice",
			User: &store.UserSnapshot{UserID: u.UserID, ReferenceID: "alice", Provider: "OURA"}},
		Backfill: &store.BackfillPlan{Types: types, Since: now.AddDate(0, 0, -days), Until: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (e *env) history() []terrasim.Request {
	var out []terrasim.Request
	for _, r := range e.emu.Requests() {
		if r.Query.Get("to_webhook") == "true" {
			out = append(out, r)
		}
	}
	return out
}

// A backfill longer than Terra's 1,825 days goes in several requests per type, each within
// the limit, covering the range; then it is done and never worked again.
func TestWorkerSplitsAndFinishes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.connect(t, 2000, "activity", "sleep")
	if worked, err := e.w.RunOnce(ctx); !worked || err != nil {
		t.Fatalf("RunOnce = %v, %v", worked, err)
	}
	reqs := e.history()
	if len(reqs) != 4 {
		t.Fatalf("%d history requests, want 2 types x 2 windows: %v", len(reqs), reqs)
	}
	days := map[string]int{}
	for _, r := range reqs {
		start, _ := strconv.ParseInt(r.Query.Get("start_date"), 10, 64)
		end, _ := strconv.ParseInt(r.Query.Get("end_date"), 10, 64)
		d := int((end - start + 86399) / 86400)
		if d > terra.MaxHistoryDays || r.Query.Get("user_id") != u.UserID {
			t.Errorf("request %v spans %d days", r.Query, d)
		}
		days[r.Path] += d
	}
	if days["/v2/activity"] < 2000 || days["/v2/sleep"] < 2000 {
		t.Errorf("days asked per type: %v", days)
	}
	b, err := e.store.GetBackfill(ctx, u.UserID)
	if err != nil || b.DoneAt == nil || b.Step != 4 {
		t.Errorf("backfill %+v, %v", b, err)
	}
	if worked, _ := e.w.RunOnce(ctx); worked {
		t.Error("a done backfill was worked again")
	}
	page, err := e.store.ListAudit(ctx, store.AuditFilter{Action: store.ActionBackfillRequested}, store.Page{First: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].ActorKind != store.ActorSystem || page.Entries[0].Subject != u.UserID {
		t.Errorf("audit %+v, %v", page.Entries, err)
	}
}

// A 429 stops the backfill where it got to, due again when Terra's Retry-After says.
func TestWorkerHonours429(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.connect(t, 30, "activity", "sleep")
	e.emu.Fail("/v2/sleep", terrasim.Fault{Status: http.StatusTooManyRequests, Body: `{"detail":"rate limit exceeded"}`,
		ContentType: "application/json", Header: http.Header{"Retry-After": {"600"}}})
	before := time.Now()
	if worked, err := e.w.RunOnce(ctx); !worked || err != nil {
		t.Fatalf("RunOnce = %v, %v", worked, err)
	}
	b, err := e.store.GetBackfill(ctx, u.UserID)
	if err != nil || b.DoneAt != nil || b.Step != 1 || b.NextAttemptAt.Before(before.Add(599*time.Second)) || b.LastError == "" {
		t.Fatalf("after a 429: %+v, %v", b, err)
	}
	if worked, _ := e.w.RunOnce(ctx); worked {
		t.Error("worked again before Retry-After")
	}
}

// A connection Terra no longer knows ends its backfill.
func TestWorkerUnknownUserEnds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.connect(t, 30, "daily")
	if err := e.emu.Deauth(u.UserID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := e.store.GetBackfill(ctx, u.UserID); b.DoneAt == nil || b.LastError == "" {
		t.Errorf("backfill %+v", b)
	}
}
