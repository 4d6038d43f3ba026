package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct{ url, engine, target string }{
		{"sqlite:terragate.db", SQLite, "terragate.db"},
		{"sqlite:/abs/path.db", SQLite, "/abs/path.db"},
		{"sqlite://terragate.db", SQLite, "terragate.db"},
		{"sqlite:///abs/path.db", SQLite, "/abs/path.db"},
		{"file:data/terragate.db", SQLite, "data/terragate.db"},
		{"file:///abs/path.db", SQLite, "/abs/path.db"},
		{"SQLite:x.db", SQLite, "x.db"},
		// Bare paths: no scheme.
		{"terragate.db", SQLite, "terragate.db"},
		{"./data/terragate.db", SQLite, "./data/terragate.db"},
		{"/var/lib/terragate/terragate.db", SQLite, "/var/lib/terragate/terragate.db"},
		{"data/a:b.db", SQLite, "data/a:b.db"},
		{`C:\terragate\x.db`, SQLite, `C:\terragate\x.db`},
		// PostgreSQL: the URL goes to the engine as it is.
		{"postgres://app:pw@db:5432/terragate", Postgres, "postgres://app:pw@db:5432/terragate"},
		{"postgresql://db/terragate?sslmode=require", Postgres, "postgresql://db/terragate?sslmode=require"},
		{"POSTGRES://db/x", Postgres, "POSTGRES://db/x"},
	} {
		engine, target, err := Parse(tc.url)
		if err != nil || engine != tc.engine || target != tc.target {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tc.url, engine, target, err, tc.engine, tc.target)
		}
	}
}

func TestParseRejects(t *testing.T) {
	const secret = "s3cret"
	for _, url := range []string{
		"mysql://app:" + secret + "@db/terragate",
		"app:" + secret + "@db/terragate",
		"",
		"sqlite:",
		"sqlite://",
		"sqlite:x.db?mode=memory&" + secret,
		"x.db?" + secret,
	} {
		_, _, err := Parse(url)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Parse(%q): %v; want ErrInvalid", url, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, secret) || !strings.Contains(msg, Forms) {
			t.Errorf("Parse(%q) message %q: must name the accepted forms and not the URL", url, msg)
		}
	}
}

// TestOpenNeverEchoesPassword opens PostgreSQL URLs that cannot work (nothing listens on
// port 1; malformed URLs) and checks neither the error nor the log repeats the password.
func TestOpenNeverEchoesPassword(t *testing.T) {
	const secret = "Pa55w0rdXyz"
	for _, url := range []string{
		"postgres://app:" + secret + "@127.0.0.1:1/terragate?connect_timeout=2",
		"postgresql://app:" + secret + "@127.0.0.1:1/terragate?sslmode=bogus",
		"postgres://app:" + secret + "@[::1/terragate",
		"postgres://app:" + secret + "@127.0.0.1:notaport/terragate",
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for _, migrate := range []bool{false, true} {
			s, err := Open(t.Context(), url, Options{Migrate: migrate}, log)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded on a dead address")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Open error repeats the password: %v", err)
			}
			err = Migrate(t.Context(), url, "status", &bytes.Buffer{}, log)
			if err == nil || strings.Contains(err.Error(), secret) {
				t.Errorf("Migrate error %v: want an error without the password", err)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log repeats the password: %s", logs.String())
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	for _, url := range []string{"sqlite:" + path, path} {
		s, err := Open(t.Context(), url, Options{Migrate: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ready(t.Context()); err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(t.Context(), "sqlite::memory:", Options{Migrate: true}, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Open(sqlite::memory:): %v; want ErrInvalid", err)
	}
}

// testMigrate runs the CLI's commands on a fresh database of either engine, and checks that
// Open refuses an old schema unless told to migrate.
func testMigrate(t *testing.T, url string) {
	ctx := t.Context()
	wantRefused := func() {
		t.Helper()
		s, err := Open(ctx, url, Options{}, nil)
		if err == nil {
			s.Close()
			t.Fatal("Open without Migrate accepted an old schema")
		}
		if !errors.Is(err, store.ErrSchemaOutdated) || !strings.Contains(err.Error(), "terragate migrate up") {
			t.Fatalf("Open without Migrate: %v; want ErrSchemaOutdated telling to run terragate migrate up", err)
		}
	}
	run := func(command string, want ...string) {
		t.Helper()
		var out bytes.Buffer
		if err := Migrate(ctx, url, command, &out, nil); err != nil {
			t.Fatalf("migrate %s: %v", command, err)
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("migrate %s printed %q; want it to contain %q", command, out.String(), w)
			}
		}
	}

	wantRefused()
	run("status", "pending", "00008_relay_pieces.sql", "00009_backfills.sql", "00010_relay_resume.sql")
	run("up", "applied 00001_init.sql", "applied 00003_leases.sql", "applied 00004_audit.sql", "applied 00005_dead_letters.sql",
		"applied 00006_terra_users_list_order.sql", "applied 00007_relay.sql", "applied 00008_relay_pieces.sql", "applied 00009_backfills.sql",
		"applied 00010_relay_resume.sql")
	run("up", "no pending migrations")
	s, err := Open(ctx, url, Options{}, nil)
	if err != nil {
		t.Fatalf("Open after migrate up: %v", err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
	run("down", "rolled back 00010_relay_resume.sql")
	if err := s.Ready(ctx); !errors.Is(err, store.ErrSchemaOutdated) {
		t.Errorf("Ready after migrate down: %v; want ErrSchemaOutdated", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantRefused()
	run("status", "applied", "pending")
	s, err = Open(ctx, url, Options{Migrate: true}, nil)
	if err != nil {
		t.Fatalf("Open with Migrate: %v", err)
	}
	if err := errors.Join(s.Ready(ctx), s.Close()); err != nil {
		t.Errorf("after Open with Migrate: %v", err)
	}
	if err := Migrate(ctx, url, "redo", &bytes.Buffer{}, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("migrate redo: %v; want ErrInvalid", err)
	}
}

func TestMigrateSQLite(t *testing.T) {
	testMigrate(t, filepath.Join(t.TempDir(), "t.db"))
}

func TestMigratePostgres(t *testing.T) {
	testMigrate(t, pgtest.NewSchema(t))
}

// TestOpenPostgresConcurrently starts several instances at once on an empty schema: all
// start, and the schema is migrated once.
func TestOpenPostgresConcurrently(t *testing.T) {
	url := pgtest.NewSchema(t)
	const instances = 4
	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i := range instances {
		wg.Go(func() {
			s, err := Open(context.WithoutCancel(t.Context()), url, Options{MaxConns: 2, Migrate: true}, nil)
			if err == nil {
				err = errors.Join(s.Ready(t.Context()), s.Close())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
}
