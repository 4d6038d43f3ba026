package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/terragate/terragate/db"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/storetest"
)

func open(t *testing.T, path string) *DB {
	t.Helper()
	d, err := Open(t.Context(), path, nil)
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
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "terragate.db"))
	})
}

func TestReopenKeepsDataAndMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	ctx := t.Context()
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = d.CreateWidgetSession(ctx, store.WidgetSession{ID: "ws-1", ReferenceID: "alice", ExpiresAt: storetest.T0})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		d := open(t, path)
		if _, err := d.WidgetSession(ctx, "ws-1"); err != nil {
			t.Fatalf("after reopen: %v", err)
		}
		var n int
		if err := d.read.QueryRowContext(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := migrationCount(t); n != want {
			t.Errorf("goose recorded %d migrations; want %d", n, want)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWAL(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	var mode string
	if err := d.read.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q; want wal", mode)
	}
	var busy, fk, temp int
	if err := d.write.QueryRowContext(t.Context(), "PRAGMA busy_timeout").Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if err := d.write.QueryRowContext(t.Context(), "PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if err := d.write.QueryRowContext(t.Context(), "PRAGMA temp_store").Scan(&temp); err != nil {
		t.Fatal(err)
	}
	if busy != 5000 || fk != 1 || temp != 2 {
		t.Errorf("busy_timeout %d, foreign_keys %d, temp_store %d; want 5000, 1, 2 (memory)", busy, fk, temp)
	}
	// The read pool must not write.
	if _, err := d.read.ExecContext(t.Context(), "DELETE FROM webhook_events"); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestConcurrentWriters(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	ctx := t.Context()
	const workers, each = 20, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				uid := fmt.Sprintf("u%d-%d", w, i)
				dl := store.Delivery{
					DedupeKey: fmt.Sprintf("k%d-%d", w, i),
					SignedAt:  storetest.T0.Add(time.Duration(i) * time.Second),
					Body:      []byte("{}"),
					Event: store.Event{
						Kind: store.EventAuthSuccess,
						User: &store.UserSnapshot{UserID: uid, ReferenceID: fmt.Sprint("ref", w%3), Provider: "OURA"},
					},
				}
				if _, err := d.ApplyWebhook(ctx, dl); err != nil {
					errs <- err
				}
				// Readers run beside the writer.
				if _, err := d.ListTerraUsers(ctx, fmt.Sprint("ref", w%3), false); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
		if strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "locked") {
			t.Fatal("a writer met SQLITE_BUSY")
		}
	}
	events, err := storetest.Inbox(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != workers*each {
		t.Errorf("inbox has %d rows; want %d", len(events), workers*each)
	}
}

func TestTimesStoredAsUTCText(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	ctx := t.Context()
	created := time.Date(2026, 7, 1, 14, 30, 0, 123456789, time.FixedZone("CEST", 2*3600))
	err := d.CreateWidgetSession(ctx, store.WidgetSession{ID: "ws-1", ReferenceID: "alice", CreatedAt: created, ExpiresAt: created.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	if err := d.read.QueryRowContext(ctx, "SELECT CAST(created_at AS TEXT) FROM widget_sessions").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if want := "2026-07-01 12:30:00.123456+00:00"; raw != want {
		t.Errorf("stored created_at = %q; want %q", raw, want)
	}
	ws, err := d.WidgetSession(ctx, "ws-1")
	if err != nil {
		t.Fatal(err)
	}
	if ws.CreatedAt.Location() != time.UTC || !ws.CreatedAt.Equal(created.Truncate(time.Microsecond)) {
		t.Errorf("CreatedAt = %v; want %v in UTC", ws.CreatedAt, created)
	}
}

func TestFailureMidTransactionRollsBack(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
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
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
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
	if events, _ := storetest.Inbox(t.Context(), d); len(events) != 0 {
		t.Errorf("inbox has %d rows after a canceled transaction", len(events))
	}
}

func TestOpenRefusesMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file::memory:?cache=shared"} {
		if _, err := Open(t.Context(), path, nil); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Open(%q): %v; want ErrInvalid", path, err)
		}
	}
}

func TestDSN(t *testing.T) {
	got := DSN("data/terra?gate#1%.db", false)
	want := "file:data/terra%3fgate%231%25.db?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate&_pragma=wal_autocheckpoint(40000)&_pragma=temp_store(memory)&_time_format=sqlite"
	if got != want {
		t.Errorf("dsn =\n%s\nwant\n%s", got, want)
	}
}

func TestOddFileName(t *testing.T) {
	dir := t.TempDir()
	d := open(t, filepath.Join(dir, "a?b#c%d.db"))
	if err := d.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The name reached SQLite whole, not cut at '?' or '#'.
	if _, err := os.Stat(filepath.Join(dir, "a?b#c%d.db")); err != nil {
		t.Fatal(err)
	}
}

func migrationCount(t *testing.T) int {
	t.Helper()
	files, err := fs.Glob(db.SQLiteMigrations, db.SQLiteMigrationsDir+"/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %q, %v", files, err)
	}
	return len(files)
}

// gooseAt opens path without the store and moves its schema to version (up or down), so
// tests can hold data written by an older schema.
func gooseAt(t *testing.T, path string, version int64) {
	t.Helper()
	conn, err := sql.Open("sqlite", DSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	fsys, err := fs.Sub(db.SQLiteMigrations, db.SQLiteMigrationsDir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, conn, fsys)
	if err != nil {
		t.Fatal(err)
	}
	current, err := p.GetDBVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if version >= current {
		_, err = p.UpTo(t.Context(), version)
	} else {
		_, err = p.DownTo(t.Context(), version)
	}
	if err != nil {
		t.Fatalf("goose to version %d: %v", version, err)
	}
}

func TestUpgradeKeepsVersion1Data(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	gooseAt(t, path, 1)
	conn, err := sql.Open("sqlite", DSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	t0 := storetest.T0
	_, err = conn.ExecContext(t.Context(), `INSERT INTO widget_sessions (id, reference_id, expires_at, created_at, updated_at)
		VALUES ('terra-legacy', 'alice', ?, ?, ?)`, t0.Add(time.Hour), t0, t0)
	if err == nil {
		_, err = conn.ExecContext(t.Context(), `INSERT INTO webhook_events (dedupe_key, kind, signed_at, received_at, body)
			VALUES ('old', 'ignored', ?, ?, x'7b7d')`, t0, t0)
	}
	if err := errors.Join(err, conn.Close()); err != nil {
		t.Fatal(err)
	}

	d := open(t, path)
	ctx := t.Context()
	ws, err := d.WidgetSession(ctx, "terra-legacy")
	if err != nil {
		t.Fatal(err)
	}
	if ws.TerraSessionID != "" || ws.InputKey != "" || ws.ReturnUsedAt != nil || ws.Status != store.SessionCreated {
		t.Errorf("legacy session = %+v", ws)
	}
	events, err := storetest.Inbox(ctx, d)
	if err != nil || len(events) != 1 || events[0].Source != store.SourceWebhook {
		t.Fatalf("inbox = %+v, %v; want the old row as a webhook", events, err)
	}
	// Terra's webhook names the old session by the id it was stored under.
	out, err := d.ApplyWebhook(ctx, store.Delivery{
		DedupeKey: "k1",
		SignedAt:  t0.Add(time.Minute),
		Event: store.Event{
			Kind:            store.EventAuthSuccess,
			WidgetSessionID: "terra-legacy",
			User:            &store.UserSnapshot{UserID: "u1", ReferenceID: "alice", Provider: "OURA"},
		},
	})
	if err != nil || out.Session == nil || out.Session.Status != store.SessionCompleted {
		t.Errorf("ApplyWebhook = %+v, %v; want terra-legacy COMPLETED", out, err)
	}
}

func TestMigrationsDownAndUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	ctx := t.Context()
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = d.CreateWidgetSession(ctx, store.WidgetSession{
		ID: "ws-1", TerraSessionID: "terra-1", ReferenceID: "alice", InputKey: "k", ExpiresAt: storetest.T0,
	})
	if err == nil {
		_, err = d.ApplyWebhook(ctx, store.Delivery{
			DedupeKey: "sync:1", Source: store.SourceSync, SignedAt: storetest.T0, Event: store.Event{Kind: store.EventIgnored},
		})
	}
	if err := errors.Join(err, d.Close()); err != nil {
		t.Fatal(err)
	}

	gooseAt(t, path, 1)
	d = open(t, path)
	ws, err := d.WidgetSession(ctx, "ws-1")
	if err != nil {
		t.Fatal(err)
	}
	if ws.TerraSessionID != "" || ws.InputKey != "" {
		t.Errorf("after down and up: %+v; want the dropped columns back at their defaults", ws)
	}
	// The indexes came back too: a second session with one Terra id is refused.
	for _, id := range []string{"ws-2", "ws-3"} {
		err = d.CreateWidgetSession(ctx, store.WidgetSession{ID: id, TerraSessionID: "terra-2", ExpiresAt: storetest.T0})
	}
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("second session with one Terra id: %v; want ErrConflict", err)
	}
}

func TestInboxSourceChecked(t *testing.T) {
	// The engine checks sources first; the column's CHECK is the last line.
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	_, err := d.write.ExecContext(t.Context(), `INSERT INTO webhook_events (dedupe_key, source, kind, signed_at, received_at, body)
		VALUES ('k', 'mail', 'ignored', '2026-07-01 12:00:00+00:00', '2026-07-01 12:00:00+00:00', x'')`)
	if err == nil || !errors.Is(wrap(t.Context(), "insert", err), store.ErrInvalid) {
		t.Errorf("insert with source mail: %v; want a CHECK failure", err)
	}
}

// TestAuditAppendOnly runs, on the raw database, what the store never does: every statement
// that would change or remove an audit entry fails, and the entry stays as written. SQLite's
// triggers are per row, so a statement that matches no row passes; it changes nothing.
func TestAuditAppendOnly(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	ctx := t.Context()
	e := store.AuditEntry{At: storetest.T0, Actor: "alice", ActorKind: store.ActorUser,
		Action: store.ActionConnectionRemoved, Subject: "u1", ReferenceID: "alice"}
	if err := d.AppendAudit(ctx, e); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE audit_log SET actor = 'mallory'`,
		`UPDATE audit_log SET detail = '{}' WHERE id = 1`,
		`DELETE FROM audit_log`,
		`DELETE FROM audit_log WHERE id = 1`,
		`INSERT OR REPLACE INTO audit_log (id, at, actor, actor_kind, action) VALUES (1, '2026-07-01 12:00:00+00:00', 'mallory', 'user', 'admin.read')`,
		`REPLACE INTO audit_log (id, at, actor, actor_kind, action) VALUES (1, '2026-07-01 12:00:00+00:00', 'mallory', 'user', 'admin.read')`,
		`INSERT INTO audit_log (id, at, actor, actor_kind, action) VALUES (1, '2026-07-01 12:00:00+00:00', 'mallory', 'user', 'admin.read')
			ON CONFLICT (id) DO UPDATE SET actor = excluded.actor`,
	} {
		if _, err := d.write.ExecContext(ctx, sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v; want the append-only trigger's error", sql, err)
		}
	}
	page, err := d.ListAudit(ctx, store.AuditFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].Actor != "alice" || page.Entries[0].Detail != nil {
		t.Errorf("audit log = %+v; want alice's entry unchanged", page.Entries)
	}
	// The log still takes new entries.
	if err := d.AppendAudit(ctx, e); err != nil {
		t.Errorf("append after refused changes: %v", err)
	}
}

// TestBackgroundCheckpoint: commits leave their pages in the WAL (no request pays for a
// checkpoint below writerCheckpointPages), and the checkpointer moves them into the
// database file on its own within a few intervals.
func TestBackgroundCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	d := open(t, path)
	var pages int
	if err := d.write.QueryRowContext(t.Context(), "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if pages != writerCheckpointPages {
		t.Errorf("wal_autocheckpoint = %d; want %d", pages, writerCheckpointPages)
	}
	size := func(name string) int64 {
		fi, err := os.Stat(name)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	// Let any checkpoint of the migrations finish first.
	time.Sleep(3 * checkpointEvery)
	before := size(path)
	for i := range 300 {
		if err := d.CreateWidgetSession(t.Context(), store.WidgetSession{
			ID: fmt.Sprintf("ws-%03d", i), ReferenceID: fmt.Sprintf("user-%d", i), ExpiresAt: time.Now().Add(time.Hour),
			URL: strings.Repeat("u", 500),
		}); err != nil {
			t.Fatal(err)
		}
	}
	if size(path+"-wal") == 0 {
		t.Fatal("no WAL after 300 commits")
	}
	deadline := time.Now().Add(20 * checkpointEvery)
	for size(path) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (WAL %d) after %v: nothing checkpointed it", size(path), size(path+"-wal"), 20*checkpointEvery)
		}
		time.Sleep(checkpointEvery / 5)
	}
}

// TestWALStartsOverUnderSteadyWrites: under writes that never pause, the checkpointer still
// gets the WAL to start over soon after it passes walRestartPages, instead of it growing
// until a committing writer checkpoints it at writerCheckpointPages (and everything queued
// behind that writer waits for the checkpoint's syncs).
func TestWALStartsOverUnderSteadyWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	d := open(t, path)
	var pageSize int64
	if err := d.write.QueryRowContext(t.Context(), "PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	// The WAL header's checkpoint sequence number (bytes 12-15) counts the times the WAL
	// started over; the file is reused from its start, never shrunk, so its size is the most
	// the WAL ever held.
	wal := func() (restarts uint32, pages int64) {
		b, err := os.ReadFile(path + "-wal")
		if err != nil || len(b) < 32 {
			return 0, 0
		}
		return binary.BigEndian.Uint32(b[12:16]), int64(len(b)) / pageSize
	}
	first, _ := wal()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := d.CreateWidgetSession(t.Context(), store.WidgetSession{
					ID: fmt.Sprintf("ws-%d-%06d", w, i), ReferenceID: fmt.Sprintf("user-%d-%d", w, i), ExpiresAt: time.Now().Add(time.Hour),
					URL: strings.Repeat("u", 500),
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := wal(); n-first >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	restarts, pages := wal()
	if restarts-first < 3 {
		t.Fatalf("the WAL started over %d times in 30 s of writes", restarts-first)
	}
	// Without the checkpointer's restart the WAL starts over only once a commit has taken it
	// past writerCheckpointPages.
	if pages >= writerCheckpointPages {
		t.Errorf("the WAL held %d pages before starting over (restart wanted from %d; the writer's own checkpoint is at %d)", pages, walRestartPages, writerCheckpointPages)
	}
}
