package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/terragate/terragate/db"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
	"github.com/terragate/terragate/internal/store/storetest"
)

// open opens a migrated store in a schema of its own.
func open(t *testing.T) *DB {
	t.Helper()
	return openURL(t, pgtest.NewSchema(t))
}

func openURL(t testing.TB, url string) *DB {
	t.Helper()
	d, err := Open(t.Context(), url, Options{Migrate: true}, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func TestConformance(t *testing.T) {
	pgtest.URL(t) // skip (or fail in CI) once, not in every subtest
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func migrationCount(t *testing.T) int {
	t.Helper()
	files, err := fs.Glob(db.PostgresMigrations, db.PostgresMigrationsDir+"/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %q, %v", files, err)
	}
	return len(files)
}

// TestConcurrentMigrations starts four instances at once on an empty schema: all start, and
// each migration is applied (and recorded) once.
func TestConcurrentMigrations(t *testing.T) {
	url := pgtest.NewSchema(t)
	const instances = 4
	dbs := make([]*DB, instances)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() { dbs[i], errs[i] = Open(t.Context(), url, Options{MaxConns: 2, Migrate: true}, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
		if err := dbs[i].Ready(t.Context()); err != nil {
			t.Errorf("instance %d not ready: %v", i, err)
		}
	}
	rows, err := dbs[0].pool.Query(t.Context(), "SELECT version_id, count(*) FROM goose_db_version WHERE version_id > 0 GROUP BY version_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	versions := 0
	for rows.Next() {
		var version, n int64
		if err := rows.Scan(&version, &n); err != nil {
			t.Fatal(err)
		}
		versions++
		if n != 1 {
			t.Errorf("version %d recorded %d times; want once", version, n)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := migrationCount(t); versions != want {
		t.Errorf("%d versions recorded; want %d", versions, want)
	}
}

// TestTwoInstancesOneDelivery has two instances (two pools on one schema) receive the same
// deliveries at the same moment, many times over: each applies once.
func TestTwoInstancesOneDelivery(t *testing.T) {
	url := pgtest.NewSchema(t)
	a, b := openURL(t, url), openURL(t, url)
	ctx := t.Context()
	const rounds = 20
	var applied sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, 4*rounds)
	for i := range rounds {
		d := store.Delivery{
			DedupeKey: fmt.Sprint("trace-", i),
			SignedAt:  storetest.T0.Add(time.Duration(i) * time.Second),
			Body:      fmt.Appendf(nil, `{"type":"auth","n":%d}`, i),
			Event: store.Event{
				Kind: store.EventAuthSuccess,
				User: &store.UserSnapshot{UserID: fmt.Sprint("u", i%3), ReferenceID: "alice", Provider: "OURA"},
			},
		}
		for _, inst := range []*DB{a, b, a, b} {
			wg.Go(func() {
				out, err := inst.ApplyWebhook(ctx, d)
				if err != nil {
					errs <- err
					return
				}
				if !out.Duplicate {
					if _, dup := applied.LoadOrStore(d.DedupeKey, true); dup {
						errs <- fmt.Errorf("%s applied twice", d.DedupeKey)
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
	events, err := storetest.Inbox(ctx, a)
	if err != nil || len(events) != rounds {
		t.Errorf("inbox has %d rows, %v; want %d", len(events), err, rounds)
	}
}

func TestInboxBody(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	for key, body := range map[string]string{
		"ordered":   `{"z": 1, "a": {"y": 2, "b": [3]}, "z": 4}`, // jsonb would reorder and drop a key
		"nul":       `{"a": "\u0000"}`,                           // valid JSON that jsonb refuses
		"surrogate": `{"a": "\ud800"}`,                           // likewise
		"not json":  "type=auth&user=1",
		"empty":     "",
	} {
		_, err := d.ApplyWebhook(ctx, store.Delivery{
			DedupeKey: key, SignedAt: storetest.T0, Body: []byte(body), Event: store.Event{Kind: store.EventIgnored},
		})
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	events, err := storetest.Inbox(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		var asJSON *string
		if err := d.pool.QueryRow(ctx, "SELECT body_json::text FROM webhook_events WHERE id = $1", e.ID).Scan(&asJSON); err != nil {
			t.Fatal(err)
		}
		switch e.DedupeKey {
		case "ordered":
			if string(e.Body) != `{"z": 1, "a": {"y": 2, "b": [3]}, "z": 4}` {
				t.Errorf("body = %q; want the bytes as received", e.Body)
			}
			if asJSON == nil || *asJSON != `{"a": {"b": [3], "y": 2}, "z": 4}` {
				t.Errorf("body_json = %v; want the jsonb form", asJSON)
			}
		default:
			if asJSON != nil {
				t.Errorf("%s: body_json = %q; want NULL", e.DedupeKey, *asJSON)
			}
		}
	}
}

func TestTimesStoredAsTimestamptz(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	created := time.Date(2026, 7, 1, 14, 30, 0, 123456789, time.FixedZone("CEST", 2*3600))
	err := d.CreateWidgetSession(ctx, store.WidgetSession{ID: "ws-1", ReferenceID: "alice", CreatedAt: created, ExpiresAt: created.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	err = d.pool.QueryRow(ctx, "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM widget_sessions").Scan(&raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := "2026-07-01 12:30:00.123456"; raw != want {
		t.Errorf("stored created_at = %q; want %q", raw, want)
	}
}

func TestFailureMidTransactionRollsBack(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	err := d.CreateWidgetSession(ctx, store.WidgetSession{ID: "ws-1", ReferenceID: "alice", CreatedAt: storetest.T0, ExpiresAt: storetest.T0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	d.afterApply = func() error { return boom }
	dl := store.Delivery{
		DedupeKey: "k1",
		SignedAt:  storetest.T0.Add(time.Minute),
		Body:      []byte("{}"),
		Event: store.Event{
			Kind:            store.EventAuthSuccess,
			WidgetSessionID: "ws-1",
			User:            &store.UserSnapshot{UserID: "u1", ReferenceID: "alice", Provider: "OURA"},
		},
	}
	if _, err := d.ApplyWebhook(ctx, dl); !errors.Is(err, boom) {
		t.Fatalf("ApplyWebhook: %v; want the injected error", err)
	}
	if _, err := d.TerraUser(ctx, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user saved by a failed transaction: %v", err)
	}
	if ws, _ := d.WidgetSession(ctx, "ws-1"); ws.Status != store.SessionCreated {
		t.Errorf("session %s after a failed transaction; want CREATED", ws.Status)
	}
	if events, _ := storetest.Inbox(ctx, d); len(events) != 0 {
		t.Errorf("inbox has %d rows after a failed transaction", len(events))
	}
	d.afterApply = nil
	out, err := d.ApplyWebhook(ctx, dl)
	if err != nil || out.Duplicate || out.Session == nil || out.Session.Status != store.SessionCompleted {
		t.Fatalf("retry: %+v, %v; want applied", out, err)
	}
}

func TestCancelMidTransaction(t *testing.T) {
	d := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	d.afterApply = func() error { cancel(); return nil }
	dl := store.Delivery{
		DedupeKey: "k1",
		SignedAt:  storetest.T0,
		Event:     store.Event{Kind: store.EventDeauth, User: &store.UserSnapshot{UserID: "u1"}},
	}
	if _, err := d.ApplyWebhook(ctx, dl); !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyWebhook: %v; want context.Canceled", err)
	}
	if _, err := d.TerraUser(t.Context(), "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user saved by a canceled transaction: %v", err)
	}
}

func TestErrorKinds(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	// The engine checks first; the schema's constraints are the last line, and their
	// violations map to store kinds.
	for _, tc := range []struct {
		sql  string
		want error
	}{
		{`INSERT INTO webhook_events (dedupe_key, source, kind, signed_at, received_at, body)
			VALUES ('k', 'mail', 'ignored', now(), now(), '')`, store.ErrInvalid},
		{`INSERT INTO terra_users (user_id, active, status, connected_at, updated_at, state_at, replaced_by)
			VALUES ('u', true, 'CONNECTED', now(), now(), now(), 'u2')`, store.ErrInvalid},
		{`INSERT INTO terra_users (user_id, active, status, connected_at, updated_at, state_at)
			VALUES ('u', true, 'DISCONNECTED', now(), now(), now())`, store.ErrInvalid},
		{`INSERT INTO leases (name, holder) VALUES ('x', 'a')`, store.ErrInvalid},
		{`INSERT INTO leases (name, holder, expires_at) VALUES ('x', 'a', now()), ('x', 'b', now())`, store.ErrConflict},
		{`INSERT INTO webhook_events (dedupe_key, kind, signed_at, received_at, body, applied_at)
			VALUES ('k', 'ignored', now(), now(), '', now())`, store.ErrInvalid},
	} {
		_, err := d.pool.Exec(ctx, tc.sql)
		if err == nil || !errors.Is(wrap(ctx, "exec", err), tc.want) {
			t.Errorf("%s: %v; want %v", tc.sql, err, tc.want)
		}
	}
	// Text PostgreSQL cannot hold is invalid input, not an internal error.
	err := d.CreateWidgetSession(ctx, store.WidgetSession{ID: "ws\x00", ExpiresAt: storetest.T0})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("session id with a NUL byte: %v; want ErrInvalid", err)
	}
}

func TestOpenRefusesMissingSchema(t *testing.T) {
	url, err := pgtest.WithSearchPath(pgtest.URL(t), "no_such_schema_here")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), url, Options{Migrate: true}, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Open: %v; want ErrInvalid for a search_path without a schema", err)
	}
}

// TestAuditAppendOnly runs, on the raw database, what the store never does: every statement
// that would change or remove audit entries fails, even one that matches no row, and the
// entry stays as written.
func TestAuditAppendOnly(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	e := store.AuditEntry{At: storetest.T0, Actor: "alice", ActorKind: store.ActorUser,
		Action: store.ActionConnectionRemoved, Subject: "u1", ReferenceID: "alice"}
	if err := d.AppendAudit(ctx, e); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE audit_log SET actor = 'mallory'`,
		`UPDATE audit_log SET detail = '{}' WHERE id = 1`,
		`UPDATE audit_log SET actor = 'mallory' WHERE false`,
		`DELETE FROM audit_log`,
		`DELETE FROM audit_log WHERE id = 1`,
		`DELETE FROM audit_log WHERE false`,
		`TRUNCATE audit_log`,
		`INSERT INTO audit_log (id, at, actor, actor_kind, action) OVERRIDING SYSTEM VALUE
			VALUES (1, now(), 'mallory', 'user', 'admin.read')
			ON CONFLICT (id) DO UPDATE SET actor = excluded.actor`,
		`MERGE INTO audit_log a USING (SELECT 1 AS id) s ON a.id = s.id
			WHEN MATCHED THEN UPDATE SET actor = 'mallory'`,
		`MERGE INTO audit_log a USING (SELECT 1 AS id) s ON a.id = s.id WHEN MATCHED THEN DELETE`,
	} {
		_, err := d.pool.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "append-only") {
			t.Errorf("%s: %v; want the append-only trigger's error", sql, err)
		}
	}
	page, err := d.ListAudit(ctx, store.AuditFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].Actor != "alice" {
		t.Errorf("audit log = %+v; want alice's entry unchanged", page.Entries)
	}
	if err := d.AppendAudit(ctx, e); err != nil {
		t.Errorf("append after refused changes: %v", err)
	}
}
