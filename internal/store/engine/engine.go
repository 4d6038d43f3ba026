// Package engine opens the store engine a database URL names, and runs the CLI's migration
// commands on it. It sits apart from package store because engines import store.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/migration"
	"github.com/terragate/terragate/internal/store/postgres"
	"github.com/terragate/terragate/internal/store/sqlite"
)

// Forms is the list of accepted database URL forms, for messages and help text.
const Forms = "postgres://..., postgresql://..., sqlite:PATH, sqlite://PATH, file:PATH or a bare file path"

// Engine names.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Options tunes Open.
type Options struct {
	// MaxConns caps the database connections: PostgreSQL's pool, SQLite's readers (SQLite
	// always has one writer). Zero or less picks a default from the number of CPUs.
	MaxConns int
	// Migrate applies pending migrations at start (under a lock, on PostgreSQL, so that
	// several instances starting together migrate once). Without it, Open refuses a database
	// whose schema is older than this build.
	Migrate bool
}

// Open opens the store named by databaseURL (see Parse). Errors never repeat the URL, which
// may hold a password.
func Open(ctx context.Context, databaseURL string, opts Options, log *slog.Logger) (store.Store, error) {
	kind, target, err := Parse(databaseURL)
	if err != nil {
		return nil, err
	}
	var s store.Store
	switch kind {
	case SQLite:
		var d *sqlite.DB
		d, err = sqlite.OpenWith(ctx, target, sqlite.Options{MaxConns: opts.MaxConns, Migrate: opts.Migrate}, log)
		if err == nil {
			s = d
		}
	case Postgres:
		var d *postgres.DB
		d, err = postgres.Open(ctx, target, postgres.Options{MaxConns: int32(min(opts.MaxConns, math.MaxInt32)), Migrate: opts.Migrate}, log)
		if err == nil {
			s = d
		}
	}
	if errors.Is(err, store.ErrSchemaOutdated) {
		return nil, fmt.Errorf("%w; run `terragate migrate up` to migrate it, then start again", err)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Migrate runs one migration command on the database named by databaseURL and writes what it
// did to out: "up" applies every pending migration, "down" rolls back the latest one,
// "status" lists every migration and whether it is applied. PostgreSQL takes the same lock
// as Open, so it is safe beside starting instances. log may be nil.
func Migrate(ctx context.Context, databaseURL, command string, out io.Writer, log *slog.Logger) error {
	switch command {
	case "up", "down", "status":
	default:
		return fmt.Errorf("migrate: unknown command %q; want one of %s: %w", command, migration.Commands, store.ErrInvalid)
	}
	kind, target, err := Parse(databaseURL)
	if err != nil {
		return err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.InfoContext(ctx, "migrate", "engine", kind, "command", command)
	if kind == Postgres {
		return postgres.Migrate(ctx, target, command, out)
	}
	return sqlite.Migrate(ctx, target, command, out)
}

// Parse splits a database URL into the engine's name (SQLite or Postgres) and what that
// engine opens: for PostgreSQL the URL itself, for SQLite a file path. "sqlite:PATH",
// "sqlite://PATH" (so "sqlite:///abs/x.db" is an absolute path), "file:PATH" and a bare path
// (no scheme: "terragate.db", "./data/x.db", "/var/lib/terragate/x.db") name SQLite files.
// It returns store.ErrInvalid for a URL it does not accept; messages never repeat the URL.
func Parse(databaseURL string) (engine, target string, err error) {
	scheme, rest, ok := strings.Cut(databaseURL, ":")
	if databaseURL == "" {
		return "", "", fmt.Errorf("database URL: empty; want %s: %w", Forms, store.ErrInvalid)
	}
	if !ok || !isScheme(scheme) {
		return sqlitePath(databaseURL, "")
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "file":
		return sqlitePath(strings.TrimPrefix(rest, "//"), scheme+":")
	case "postgres", "postgresql":
		return Postgres, databaseURL, nil
	}
	return "", "", fmt.Errorf("database URL: unsupported scheme; want %s: %w", Forms, store.ErrInvalid)
}

func sqlitePath(path, prefix string) (engine, target string, err error) {
	if path == "" {
		return "", "", fmt.Errorf("database URL: no file path after %q; want %s: %w", prefix, Forms, store.ErrInvalid)
	}
	if strings.ContainsAny(path, "?#") {
		return "", "", fmt.Errorf("database URL: SQLite options are fixed by terragate; give a plain file path (%s): %w", Forms, store.ErrInvalid)
	}
	return SQLite, path, nil
}

// isScheme reports whether s is a URL scheme (RFC 3986: a letter, then letters, digits, "+",
// "-" or "."). One letter is not taken as one, so that a Windows path ("C:\x.db") is a path.
func isScheme(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}
