// Package pgtest gives tests a PostgreSQL schema of their own on the test server, for the
// store's tests and for any suite (the gateway's end-to-end tests) that runs on PostgreSQL.
//
// The server is TEST_DATABASE_URL, else DefaultURL. When it does not answer, tests skip with
// a message saying how to run them, except in CI (CI=true), where every database test must
// run and they fail instead.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the test server when TEST_DATABASE_URL is unset: a local PostgreSQL with
// trust authentication and a database named test.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// reachable remembers, per URL, whether the server answered, so that a missing server costs
// one connection timeout per test binary, not one per test.
var reachable sync.Map // URL -> func() error

// URL returns the test server's URL once it answers, or ends the test: skipped locally,
// failed in CI.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		u = DefaultURL
	}
	check, _ := reachable.LoadOrStore(u, sync.OnceValue(func() error { return ping(u) }))
	if err := check.(func() error)(); err != nil {
		msg := fmt.Sprintf("no PostgreSQL for tests at TEST_DATABASE_URL (default %s): %v", DefaultURL, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI must run the PostgreSQL tests")
		}
		t.Skip(msg + "; start one (or set TEST_DATABASE_URL) to run these tests")
	}
	return u
}

func ping(u string) error { return Ping(context.Background(), u) }

// Ping reports whether the server at u answers within five seconds.
func Ping(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// NewSchema creates an empty schema with a random name on the test server, drops it (and
// everything in it) when the test ends, and returns a URL whose connections use it: the
// schema is set as search_path through the URL's options parameter, so any code that opens
// the URL lands in it.
func NewSchema(t testing.TB) string {
	t.Helper()
	u, drop, err := CreateSchema(URL(t), "test_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return u
}

// WithSearchPath returns databaseURL with schema as its search_path, keeping any other
// options. The URL must be in postgres:// form.
func WithSearchPath(databaseURL, schema string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("pgtest: the test database URL must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("options", strings.TrimSpace(q.Get("options")+" -c search_path="+schema))
	// pgx reads "+" in a query as itself, not as a space.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String(), nil
}

// CreateSchema creates an empty schema named prefix plus random hex on the server at base
// and returns a URL whose connections use it, and the function that drops it with all it
// holds. It serves tests (through NewSchema) and the benchmarks, which have no testing.T.
func CreateSchema(base, prefix string) (url string, drop func() error, err error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	schema := prefix + hex.EncodeToString(b[:])
	if err := exec(base, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, err
	}
	drop = func() error { return exec(base, "DROP SCHEMA "+schema+" CASCADE") }
	u, err := WithSearchPath(base, schema)
	if err != nil {
		return "", nil, errors.Join(err, drop())
	}
	return u, drop, nil
}

// exec runs one statement on its own connection, on a context of its own: a test's has
// ended by the time cleanups run.
func exec(databaseURL, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
