package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/terragate/terragate/internal/store"
)

// SQLSTATE codes the engine tells apart.
const (
	uniqueViolation      = "23505"
	checkViolation       = "23514"
	notNullViolation     = "23502"
	serializationFailure = "40001"
	deadlockDetected     = "40P01"
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
		return fmt.Errorf("postgres: %s: %w", op, ctx.Err())
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, store.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == uniqueViolation:
			return fmt.Errorf("postgres: %s: %w", op, store.ErrConflict)
		case pe.Code == checkViolation, pe.Code == notNullViolation,
			// Class 22, data exceptions: text PostgreSQL cannot hold (a NUL byte, invalid
			// UTF-8), a value out of range.
			strings.HasPrefix(pe.Code, "22"):
			return fmt.Errorf("postgres: %s: %w", op, store.ErrInvalid)
		}
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// retryable reports errors after which the whole transaction may simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == serializationFailure || pe.Code == deadlockDetected)
}

// refusal is err, a failure to apply an event that retrying will not fix, as a dead letter
// records it and its caller sees it: the store's own error as it is; a refusal by the
// database with the driver's text (which names tables and columns) replaced by its kind,
// store.ErrInvalid.
func refusal(err error) error {
	var pe *pgconn.PgError
	if errors.Is(err, store.ErrInvalid) || !errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%s%w", strings.TrimSuffix(err.Error(), pe.Error()), store.ErrInvalid)
}
