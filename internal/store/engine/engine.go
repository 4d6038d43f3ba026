// Package engine opens the store engine a database URL names. It sits apart from package
// store because engines import store.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
)

// Forms is the list of accepted database URL forms, for messages and help text.
const Forms = "sqlite:PATH, sqlite://PATH or file:PATH"

// ErrUnavailable reports an engine that this build does not include.
var ErrUnavailable = errors.New("engine not available in this build")

// Open opens the store named by databaseURL: "sqlite:PATH", "sqlite://PATH" (so
// "sqlite:///abs/x.db" is an absolute path) or "file:PATH" for SQLite. PostgreSQL URLs are
// recognised but not yet available. Errors never repeat the URL, which may hold a password.
func Open(ctx context.Context, databaseURL string, log *slog.Logger) (store.Store, error) {
	kind, path, err := Parse(databaseURL)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "sqlite":
		s, err := sqlite.Open(ctx, path, log)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("database URL: unknown engine %q: %w", kind, store.ErrInvalid)
}

// Parse splits a database URL into the engine's name and what that engine opens (for
// SQLite, a file path). It returns store.ErrInvalid for a URL it does not accept, and
// ErrUnavailable for PostgreSQL.
func Parse(databaseURL string) (engine, path string, err error) {
	scheme, rest, ok := strings.Cut(databaseURL, ":")
	if !ok || databaseURL == "" {
		return "", "", fmt.Errorf("database URL: want %s: %w", Forms, store.ErrInvalid)
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "file":
		path = strings.TrimPrefix(rest, "//")
		if path == "" {
			return "", "", fmt.Errorf("database URL: no file path after %q; want %s: %w", scheme+":", Forms, store.ErrInvalid)
		}
		if strings.ContainsAny(path, "?#") {
			return "", "", fmt.Errorf("database URL: SQLite options are fixed by terragate; give a plain file path (%s): %w", Forms, store.ErrInvalid)
		}
		return "sqlite", path, nil
	case "postgres", "postgresql":
		return "", "", fmt.Errorf("database URL: PostgreSQL is not available in this build yet; use %s: %w", Forms, ErrUnavailable)
	}
	return "", "", fmt.Errorf("database URL: unsupported scheme; want %s: %w", Forms, store.ErrInvalid)
}
