package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
	"github.com/terragate/terragate/internal/store/storetest"
)

// gooseAt moves the schema behind url to version (up or down) without the store, so tests
// can hold data written by an older schema.
func gooseAt(t *testing.T, url string, version int64) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	err = withProvider(t.Context(), cfg.ConnConfig, func(p *goose.Provider) error {
		current, err := p.GetDBVersion(t.Context())
		if err != nil {
			return err
		}
		if version >= current {
			_, err = p.UpTo(t.Context(), version)
		} else {
			_, err = p.DownTo(t.Context(), version)
		}
		return err
	})
	if err != nil {
		t.Fatalf("goose to version %d: %v", version, err)
	}
}

// execURL runs statements on url outside the store.
func execURL(t *testing.T, url string, stmts ...string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	for i, stmt := range stmts {
		if _, err := conn.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
	}
}

// TestUpgradeFromVersion4 fills a schema at version 4, before dead letters, and opens it with
// this build: every row stays as it was, and the new checks accept it.
func TestUpgradeFromVersion4(t *testing.T) {
	url := pgtest.NewSchema(t)
	gooseAt(t, url, 4)
	execURL(t, url,
		`INSERT INTO webhook_events (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body, applied_at, outcome)
			VALUES ('k1', 'webhook', 'trace-1', 'auth', 'auth_success', '2026-07-01 12:00:00Z', '2026-07-01 12:00:00Z', '{}', '2026-07-01 12:00:00Z', 'applied'),
			       ('k2', 'sync', '', 'activity', 'ignored', '2026-07-01 12:00:00Z', '2026-07-01 12:00:00Z', '', '2026-07-01 12:00:00Z', 'ignored')`,
		`INSERT INTO webhook_events (dedupe_key, kind, signed_at, received_at, body)
			VALUES ('k3', 'deauth', '2026-07-01 12:00:00Z', '2026-07-01 12:00:00Z', '')`,
	)
	d := openURL(t, url)
	ctx := t.Context()
	events, err := storetest.Inbox(ctx, d)
	if err != nil || len(events) != 3 {
		t.Fatalf("inbox = %+v, %v; want 3 rows", events, err)
	}
	k1 := events[0]
	if k1.ID != 1 || k1.DedupeKey != "k1" || k1.TraceID != "trace-1" || k1.Outcome != store.InboxApplied || k1.AppliedAt == nil ||
		!k1.AppliedAt.Equal(storetest.T0) || string(k1.Body) != "{}" || k1.Error != "" || k1.ReplayedAt != nil || k1.Replays != 0 {
		t.Errorf("k1 after the upgrade = %+v", k1)
	}
	if events[1].Source != store.SourceSync || events[1].Outcome != store.InboxIgnored || events[2].Outcome != "" {
		t.Errorf("k2, k3 after the upgrade = %+v, %+v", events[1], events[2])
	}
	e, err := d.RecordDeadLetter(ctx, store.Delivery{DedupeKey: "k4", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventDeauth}}, "no user")
	if err != nil || e.ID != 4 || e.Outcome != store.InboxFailed {
		t.Errorf("RecordDeadLetter = %+v, %v; want id 4, failed", e, err)
	}
}

// TestDeadLettersDownAndUp takes a schema with dead letters back to version 4, where they
// become rows never applied, and up again.
func TestDeadLettersDownAndUp(t *testing.T) {
	url := pgtest.NewSchema(t)
	d := openURL(t, url)
	ctx := t.Context()
	_, err := d.ApplyWebhook(ctx, store.Delivery{DedupeKey: "k1", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventIgnored}})
	if err == nil {
		_, err = d.RecordDeadLetter(ctx, store.Delivery{DedupeKey: "k2", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventIgnored}}, "bad")
	}
	if err != nil {
		t.Fatal(err)
	}
	gooseAt(t, url, 4)
	var outcomes string
	err = d.pool.QueryRow(ctx, `SELECT string_agg(coalesce(outcome, 'NULL'), ' ' ORDER BY id) FROM webhook_events`).Scan(&outcomes)
	if err != nil || outcomes != "ignored NULL" {
		t.Errorf("outcomes at version 4 = %q, %v; want the dead letter with none", outcomes, err)
	}
	gooseAt(t, url, 5)
	d = openURL(t, url) // a fresh pool: the old one's prepared statements name the old columns
	events, err := storetest.Inbox(ctx, d)
	if err != nil || len(events) != 2 || events[1].Outcome != "" || events[1].Error != "" {
		t.Errorf("inbox after down and up = %+v, %v", events, err)
	}
}

// TestReplayFailureMidTransaction fails a replay after it has saved the event's rows: a
// failure that retrying will not fix (ErrInvalid) undoes the rows and records the failure on
// the dead letter; any other failure undoes the whole replay.
func TestReplayFailureMidTransaction(t *testing.T) {
	d := open(t)
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

// TestReplayRefusedByDatabase replays a delivery whose user id PostgreSQL refuses (a NUL
// byte). A refused statement aborts a PostgreSQL transaction: only the savepoint lets the
// replay record the failure, and the reason carries the kind, not the driver's text.
func TestReplayRefusedByDatabase(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	dl := store.Delivery{DedupeKey: "k1", SignedAt: storetest.T0, Event: store.Event{Kind: store.EventDeauth}}
	dead, err := d.RecordDeadLetter(ctx, dl, "no user")
	if err != nil {
		t.Fatal(err)
	}
	dl.Event.User = &store.UserSnapshot{UserID: "u\x00"}
	if _, err := d.ReplayDeadLetter(ctx, dead.ID, dl); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ReplayDeadLetter: %v; want ErrInvalid", err)
	}
	e, err := d.WebhookEvent(ctx, dead.ID)
	if err != nil || e.Outcome != store.InboxFailed || e.Replays != 1 || !strings.HasSuffix(e.Error, ": invalid") ||
		strings.Contains(e.Error, "SQLSTATE") {
		t.Errorf("dead letter = %+v, %v; want failed again with the kind as the reason", e, err)
	}
}

// TestInboxOutcomeChecked runs, on the raw database, rows the store never writes: the
// schema's checks tie outcome, applied_at and error together.
func TestInboxOutcomeChecked(t *testing.T) {
	d := open(t)
	for _, values := range []string{
		`NULL, 'failed', ''`,      // a dead letter without a reason
		`now(), 'failed', 'bad'`,  // a dead letter applied
		`now(), 'applied', 'bad'`, // an applied row with an error
		`NULL, 'applied', ''`,     // applied without a time
		`now(), NULL, ''`,         // a time without an outcome
		`NULL, 'exploded', 'bad'`, // no such outcome
	} {
		_, err := d.pool.Exec(t.Context(), `INSERT INTO webhook_events (dedupe_key, kind, signed_at, received_at, body, applied_at, outcome, error)
			VALUES ('k', 'ignored', now(), now(), '', `+values+`)`)
		if !errors.Is(wrap(t.Context(), "insert", err), store.ErrInvalid) {
			t.Errorf("insert (%s): %v; want a CHECK failure", values, err)
		}
	}
}
