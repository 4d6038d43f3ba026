package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/terragate/terragate/internal/store"
)

// wrap gives a driver error its store kind and context. Kinds replace the driver's text,
// which names tables and columns; other errors keep it for the logs, and callers show them
// as internal. When ctx has ended, that is the error: the driver reports an interrupted
// statement in its own terms.
func wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("sqlite: %s: %w", op, ctx.Err())
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, store.ErrNotFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("sqlite: %s: %w", op, store.ErrConflict)
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return fmt.Errorf("sqlite: %s: %w", op, store.ErrInvalid)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// refusal is err, a failure to apply an event that retrying will not fix, as a dead letter
// records it and its caller sees it: the store's own error as it is; a refusal by the
// database with the driver's text (which names tables and columns) replaced by its kind,
// store.ErrInvalid.
func refusal(err error) error {
	var se *sqlite.Error
	if errors.Is(err, store.ErrInvalid) || !errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("%s%w", strings.TrimSuffix(err.Error(), se.Error()), store.ErrInvalid)
}
