package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/storetest"
)

// TestUpgradeFromVersion4 fills a database at version 4, the schema before dead letters, and
// opens it with this build: migration 5 rebuilds the inbox table, which must keep every row,
// the ids and their sequence, and the indexes.
func TestUpgradeFromVersion4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	ctx := t.Context()
	gooseAt(t, path, 4)
	conn, err := sql.Open("sqlite", DSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	t0 := storetest.T0
	for i, stmt := range []string{
		`INSERT INTO webhook_events (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body, applied_at, outcome)
			VALUES ('k1', 'webhook', 'trace-1', 'auth', 'auth_success', ?1, ?1, x'7b7d', ?1, 'applied')`,
		`INSERT INTO webhook_events (dedupe_key, source, type, kind, signed_at, received_at, body, applied_at, outcome)
			VALUES ('k2', 'sync', 'activity', 'ignored', ?1, ?1, x'', ?1, 'ignored')`,
		`INSERT INTO webhook_events (dedupe_key, kind, signed_at, received_at, body)
			VALUES ('k3', 'deauth', ?1, ?1, x'')`,
		// A row removed by hand: its id must not come back.
		`DELETE FROM webhook_events WHERE dedupe_key = 'k3'`,
	} {
		if _, err = conn.ExecContext(ctx, stmt, t0); err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}

	d := open(t, path)
	events, err := storetest.Inbox(ctx, d)
	if err != nil || len(events) != 2 {
		t.Fatalf("inbox = %+v, %v; want k1 and k2", events, err)
	}
	k1, k2 := events[0], events[1]
	if k1.ID != 1 || k1.DedupeKey != "k1" || k1.TraceID != "trace-1" || k1.Type != "auth" || k1.Kind != store.EventAuthSuccess ||
		k1.Outcome != store.InboxApplied || k1.AppliedAt == nil || !k1.AppliedAt.Equal(t0) || string(k1.Body) != "{}" ||
		k1.Source != store.SourceWebhook || k1.Error != "" || k1.ReplayedAt != nil || k1.Replays != 0 {
		t.Errorf("k1 after the upgrade = %+v", k1)
	}
	if k2.ID != 2 || k2.Source != store.SourceSync || k2.Outcome != store.InboxIgnored || len(k2.Body) != 0 {
		t.Errorf("k2 after the upgrade = %+v", k2)
	}
	e, err := d.RecordDeadLetter(ctx, store.Delivery{
		DedupeKey: "k4", SignedAt: t0, Event: store.Event{Kind: store.EventDeauth, Type: "deauth"},
	}, "no user")
	if err != nil || e.ID != 4 {
		t.Errorf("RecordDeadLetter = %+v, %v; want id 4, after the removed row's", e, err)
	}
	// The unique key and the indexes are back.
	if _, err := d.write.ExecContext(ctx, `INSERT INTO webhook_events (dedupe_key, kind, signed_at, received_at, body)
		VALUES ('k1', 'ignored', ?1, ?1, x'')`, t0); !errors.Is(wrap(ctx, "insert", err), store.ErrConflict) {
		t.Errorf("second k1: %v; want a unique violation", err)
	}
	var indexes []string
	rows, err := d.read.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'webhook_events' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, name)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(indexes, " "), "sqlite_autoindex_webhook_events_1 webhook_events_failed webhook_events_type"; got != want {
		t.Errorf("indexes = %s; want %s", got, want)
	}
}

// TestDeadLettersDownAndUp takes a database with dead letters back to version 4, where they
// become rows never applied, and up again.
func TestDeadLettersDownAndUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	ctx := t.Context()
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.ApplyWebhook(ctx, store.Delivery{DedupeKey: "k1", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventIgnored}})
	if err == nil {
		_, err = d.RecordDeadLetter(ctx, store.Delivery{DedupeKey: "k2", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventIgnored}}, "bad")
	}
	if err := errors.Join(err, d.Close()); err != nil {
		t.Fatal(err)
	}
	gooseAt(t, path, 4)
	conn, err := sql.Open("sqlite", DSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	var outcomes string
	err = conn.QueryRowContext(ctx, `SELECT group_concat(coalesce(outcome, 'NULL'), ' ') FROM webhook_events`).Scan(&outcomes)
	if err := errors.Join(err, conn.Close()); err != nil {
		t.Fatal(err)
	}
	if outcomes != "ignored NULL" {
		t.Errorf("outcomes at version 4 = %q; want the dead letter with none", outcomes)
	}
	d = open(t, path)
	events, err := storetest.Inbox(ctx, d)
	if err != nil || len(events) != 2 || events[1].Outcome != "" || events[1].Error != "" {
		t.Errorf("inbox after down and up = %+v, %v", events, err)
	}
	if e, err := d.RecordDeadLetter(ctx, store.Delivery{DedupeKey: "k3", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventIgnored}}, "bad"); err != nil || e.ID != 3 {
		t.Errorf("RecordDeadLetter = %+v, %v; want id 3", e, err)
	}
}

// TestReplayFailureMidTransaction fails a replay after it has saved the event's rows: a
// failure that retrying will not fix (ErrInvalid) undoes the rows and records the failure on
// the dead letter; any other failure undoes the whole replay.
func TestReplayFailureMidTransaction(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	ctx := t.Context()
	dl := store.Delivery{DedupeKey: "k1", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventDeauth, Type: "deauth"}}
	dead, err := d.RecordDeadLetter(ctx, dl, "no user")
	if err != nil {
		t.Fatal(err)
	}
	dl.Event.User = &store.UserSnapshot{UserID: "u1"}

	d.afterApply = func() error { return errors.New("disk on fire") }
	if _, err := d.ReplayDeadLetter(ctx, dead.ID, dl); err == nil || errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ReplayDeadLetter: %v; want the injected error", err)
	}
	if e, err := d.WebhookEvent(ctx, dead.ID); err != nil || e.Replays != 0 || e.ReplayedAt != nil || e.Error != "no user" {
		t.Errorf("dead letter after a failed replay = %+v, %v; want it untouched", e, err)
	}

	d.afterApply = func() error { return fmt.Errorf("bad row: %w", store.ErrInvalid) }
	if _, err := d.ReplayDeadLetter(ctx, dead.ID, dl); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ReplayDeadLetter: %v; want ErrInvalid", err)
	}
	if _, err := d.TerraUser(ctx, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user saved by a replay that failed: %v", err)
	}
	e, err := d.WebhookEvent(ctx, dead.ID)
	if err != nil || e.Outcome != store.InboxFailed || e.Replays != 1 || e.Error != "bad row: invalid" {
		t.Errorf("dead letter = %+v, %v; want failed again, once, with the new reason", e, err)
	}

	d.afterApply = nil
	if _, err := d.ReplayDeadLetter(ctx, dead.ID, dl); err != nil {
		t.Fatal(err)
	}
	if u, err := d.TerraUser(ctx, "u1"); err != nil || u.Status != store.StatusDisconnected {
		t.Errorf("u1 = %+v, %v; want DISCONNECTED", u, err)
	}
}

// TestInboxOutcomeChecked runs, on the raw database, rows the store never writes: the
// schema's checks tie outcome, applied_at and error together.
func TestInboxOutcomeChecked(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	now := store.StoredTime(time.Now())
	for _, tc := range []struct {
		applied *time.Time
		outcome any
		err     string
	}{
		{nil, "failed", ""},      // a dead letter without a reason
		{&now, "failed", "bad"},  // a dead letter applied
		{&now, "applied", "bad"}, // an applied row with an error
		{nil, "applied", ""},     // applied without a time
		{&now, nil, ""},          // a time without an outcome
		{nil, "exploded", "bad"}, // no such outcome
	} {
		_, err := d.write.ExecContext(t.Context(), `INSERT INTO webhook_events (dedupe_key, kind, signed_at, received_at, body, applied_at, outcome, error)
			VALUES ('k', 'ignored', ?1, ?1, x'', ?2, ?3, ?4)`, now, tc.applied, tc.outcome, tc.err)
		if !errors.Is(wrap(t.Context(), "insert", err), store.ErrInvalid) {
			t.Errorf("insert applied_at %v outcome %v error %q: %v; want a CHECK failure", tc.applied, tc.outcome, tc.err, err)
		}
	}
}
