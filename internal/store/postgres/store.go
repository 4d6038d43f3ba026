package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/core"
	"github.com/terragate/terragate/internal/store/postgres/pgdb"
)

// The store's logic is core's, over the rows pgdb generates; PostgreSQL keeps a list as a
// text array and an audit entry's detail as jsonb.
type (
	coreStore   = core.Store[pgdb.TerraUser, pgdb.WidgetSession, pgdb.WebhookEvent, pgdb.AuditLog, []string, []byte, pgdb.RelayDelivery]
	coreTx      = core.Tx[pgdb.TerraUser, pgdb.WidgetSession, pgdb.WebhookEvent, pgdb.AuditLog, []string, []byte, pgdb.RelayDelivery]
	coreQueries = core.Queries[pgdb.TerraUser, pgdb.WidgetSession, pgdb.WebhookEvent, pgdb.AuditLog, []string, []byte, pgdb.RelayDelivery]
	coreRows    = core.Rows[pgdb.TerraUser, pgdb.WidgetSession, pgdb.WebhookEvent, pgdb.AuditLog, []string, []byte, pgdb.RelayDelivery]
)

var rows = coreRows{
	User:    func(r pgdb.TerraUser) core.UserRow[[]string] { return core.UserRow[[]string](r) },
	Session: func(r pgdb.WidgetSession) core.SessionRow[[]string] { return core.SessionRow[[]string](r) },
	Event:   eventRow,
	Audit:   func(r pgdb.AuditLog) core.AuditRow[[]byte] { return core.AuditRow[[]byte](r) },
	List:    listToRow,
	Items:   listFromRow,
	Detail:  func(b []byte) []byte { return b },
	Relay:   func(r pgdb.RelayDelivery) core.RelayRow { return core.RelayRow(r) },
	JSON:    func(b []byte) []byte { return b },
}

// eventRow copies an inbox row field by field: PostgreSQL's table orders its columns its own
// way and has body_json, which the store does not read.
func eventRow(r pgdb.WebhookEvent) core.InboxRow {
	return core.InboxRow{
		ID: r.ID, DedupeKey: r.DedupeKey, TraceID: r.TraceID, Type: r.Type, Kind: r.Kind,
		SignedAt: r.SignedAt, ReceivedAt: r.ReceivedAt, Body: r.Body, AppliedAt: r.AppliedAt,
		Outcome: r.Outcome, Source: r.Source, Error: r.Error, ReplayedAt: r.ReplayedAt, Replays: int64(r.Replays),
	}
}

// Lists are text arrays: written normalized (as SQLite's comma-separated form would read
// back) and never NULL, read back as nil when empty, as store.ParseList gives.

func listToRow(items []string) []string {
	if list := store.ParseList(store.JoinList(items)); list != nil {
		return list
	}
	return []string{}
}

func listFromRow(items []string) []string {
	if len(items) == 0 {
		return nil
	}
	return items
}

// writeTx is the queries of one transaction.
type writeTx struct {
	*pgdb.Queries
	tx pgx.Tx
}

// LockUsers takes the transaction's advisory lock of each Terra user, in ascending key order
// (no deadlock between two deliveries): FOR UPDATE cannot lock a row that does not exist yet,
// and two first events about one user must still apply one after the other. LockTerraUser
// then reads each row FOR UPDATE, as the session queries of ApplyWebhook do, which also holds
// off the other writers of sessions (the expiry sweep, returns).
func (t writeTx) LockUsers(ctx context.Context, userIDs []string) error {
	keys := make([]int64, 0, len(userIDs))
	for _, id := range userIDs {
		keys = append(keys, lockID("terra user "+id))
	}
	slices.Sort(keys)
	for _, key := range slices.Compact(keys) {
		if err := t.LockKey(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// Savepoint runs fn in a savepoint (pgx's nested transaction); a refused statement then no
// longer aborts the whole transaction.
func (t writeTx) Savepoint(ctx context.Context, fn func(coreTx) error) error {
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(writeTx{t.WithTx(sp), sp}); err != nil {
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return fmt.Errorf("%v; roll back to savepoint: %w", err, rbErr)
		}
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// txAttempts bounds how often a transaction runs again after a deadlock or serialization
// failure, which PostgreSQL resolves by aborting one of the transactions.
const txAttempts = 5

// engine is what the core asks of PostgreSQL.
type engine struct{ d *DB }

// InTx runs fn in a transaction, committing if it returns nil, and runs it again after a
// deadlock or serialization failure, up to txAttempts times.
func (e engine) InTx(ctx context.Context, fn func(coreTx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, e.d.pool, func(tx pgx.Tx) error { return fn(writeTx{e.d.q.WithTx(tx), tx}) })
		if !retryable(err) || attempt == txAttempts || ctx.Err() != nil {
			return err
		}
		e.d.log.DebugContext(ctx, "transaction retried", "attempt", attempt, "err", err)
	}
}

// InReadTx runs fn in a read-only REPEATABLE READ transaction: its reads see one snapshot.
func (e engine) InReadTx(ctx context.Context, fn func(coreQueries) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	return pgx.BeginTxFunc(ctx, e.d.pool, opts, func(tx pgx.Tx) error {
		return fn(e.d.q.WithTx(tx))
	})
}

// Classify tells what a pgx error means.
func (engine) Classify(err error) (core.Kind, error) { return classify(err) }

// SQLSTATE codes the engine tells apart.
const (
	uniqueViolation      = "23505"
	checkViolation       = "23514"
	notNullViolation     = "23502"
	serializationFailure = "40001"
	deadlockDetected     = "40P01"
)

func classify(err error) (core.Kind, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return core.NoRows, nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return core.Other, nil
	}
	switch {
	case pe.Code == uniqueViolation:
		return core.Unique, pe
	case pe.Code == checkViolation, pe.Code == notNullViolation,
		// Class 22, data exceptions: text PostgreSQL cannot hold (a NUL byte, invalid
		// UTF-8), a value out of range.
		strings.HasPrefix(pe.Code, "22"):
		return core.Refused, pe
	}
	return core.Other, pe
}

// retryable reports errors after which the whole transaction may simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == serializationFailure || pe.Code == deadlockDetected)
}

// wrap gives an error of this engine its store kind and context (see core.Wrap).
func wrap(ctx context.Context, op string, err error) error {
	return core.Wrap(ctx, "postgres", classify, op, err)
}

// AcquireLease gives holder the named lease until until when it is free, expired at now or
// already holder's, and reports whether holder has it.
func (d *DB) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	return d.TakeLease(ctx, name, holder, now, until, func(until, now time.Time) error {
		_, err := d.q.AcquireLease(ctx, name, holder, until, now)
		return err
	})
}

func backfillRow(r pgdb.Backfill) store.Backfill {
	return core.BackfillOf(r.UserID, r.Types, r.Since, r.Until, r.Step, r.Attempts, r.NextAttemptAt, r.LastError, r.DoneAt, r.CreatedAt)
}
