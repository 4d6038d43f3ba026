package core

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/terragate/terragate/internal/store"
)

// wrap gives a driver error its store kind and context. Kinds replace the driver's text,
// which names tables and columns; other errors keep it for the logs, and callers show them
// as internal. When ctx has ended, that is the error: drivers report an interrupted
// statement in their own terms.
func (c *Store[U, S, E, A, L, D, R]) wrap(ctx context.Context, op string, err error) error {
	return Wrap(ctx, c.name, c.e.Classify, op, err)
}

// Wrap is wrap for an engine's errors outside the core (opening, Ready, Ping): engine names
// the engine, and classify is its Engine.Classify.
func Wrap(ctx context.Context, engine string, classify func(error) (Kind, error), op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %s: %w", engine, op, ctx.Err())
	}
	kind, _ := classify(err)
	switch kind {
	case NoRows:
		err = store.ErrNotFound
	case Unique:
		err = store.ErrConflict
	case Refused:
		err = store.ErrInvalid
	}
	return fmt.Errorf("%s: %s: %w", engine, op, err)
}

// noRows reports whether err says a statement found no row.
func (c *Store[U, S, E, A, L, D, R]) noRows(err error) bool {
	kind, _ := c.e.Classify(err)
	return kind == NoRows
}

// refusal is err, a failure to apply an event that retrying will not fix, as a dead letter
// records it and its caller sees it: the store's own error as it is; a refusal by the
// database with the driver's text (which names tables and columns) replaced by its kind,
// store.ErrInvalid.
func (c *Store[U, S, E, A, L, D, R]) refusal(err error) error {
	_, driverErr := c.e.Classify(err)
	if errors.Is(err, store.ErrInvalid) || driverErr == nil {
		return err
	}
	return fmt.Errorf("%s%w", strings.TrimSuffix(err.Error(), driverErr.Error()), store.ErrInvalid)
}
