package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/core"
	"github.com/terragate/terragate/internal/store/sqlite/sqlitedb"
)

// The store's logic is core's, over the rows sqlitedb generates; SQLite keeps a list as
// comma-separated text and an audit entry's detail as JSON text.
type (
	coreStore   = core.Store[sqlitedb.TerraUser, sqlitedb.WidgetSession, sqlitedb.WebhookEvent, sqlitedb.AuditLog, string, string, sqlitedb.RelayDelivery]
	coreTx      = core.Tx[sqlitedb.TerraUser, sqlitedb.WidgetSession, sqlitedb.WebhookEvent, sqlitedb.AuditLog, string, string, sqlitedb.RelayDelivery]
	coreQueries = core.Queries[sqlitedb.TerraUser, sqlitedb.WidgetSession, sqlitedb.WebhookEvent, sqlitedb.AuditLog, string, string, sqlitedb.RelayDelivery]
	coreRows    = core.Rows[sqlitedb.TerraUser, sqlitedb.WidgetSession, sqlitedb.WebhookEvent, sqlitedb.AuditLog, string, string, sqlitedb.RelayDelivery]
)

var rows = coreRows{
	User:    func(r sqlitedb.TerraUser) core.UserRow[string] { return core.UserRow[string](r) },
	Session: sessionRow,
	Event:   func(r sqlitedb.WebhookEvent) core.InboxRow { return core.InboxRow(r) },
	Audit:   func(r sqlitedb.AuditLog) core.AuditRow[string] { return core.AuditRow[string](r) },
	List:    store.JoinList,
	Items:   store.ParseList,
	Detail:  func(b []byte) string { return string(b) },
	Relay:   func(r sqlitedb.RelayDelivery) core.RelayRow { return core.RelayRow(r) },
	JSON:    func(s string) []byte { return []byte(s) },
}

// sessionRow copies a session field by field: SQLite's table has its columns in the order
// its migrations added them.
func sessionRow(r sqlitedb.WidgetSession) core.SessionRow[string] {
	return core.SessionRow[string]{
		ID: r.ID, TerraSessionID: r.TerraSessionID, ReferenceID: r.ReferenceID, Providers: r.Providers,
		Language: r.Language, SuccessRedirectURL: r.SuccessRedirectURL, FailureRedirectURL: r.FailureRedirectURL,
		URL: r.URL, Status: r.Status, Provider: r.Provider, TerraUserID: r.TerraUserID,
		FailureReason: r.FailureReason, InputKey: r.InputKey, ReturnUsedAt: r.ReturnUsedAt,
		ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

// writeTx is the queries of a write transaction on the one writer.
type writeTx struct {
	*sqlitedb.Queries
	tx *sql.Tx
}

// LockUsers does nothing: the one writer runs one transaction at a time.
func (writeTx) LockUsers(context.Context, []string) error { return nil }

// Savepoint runs fn in a savepoint of the transaction.
func (t writeTx) Savepoint(ctx context.Context, fn func(coreTx) error) error {
	return savepoint(ctx, t.tx, func() error { return fn(t) })
}

// engine is what the core asks of SQLite.
type engine struct{ d *DB }

// InTx runs fn in a transaction of the one writer; SQLite has no deadlocks to run it again
// after.
func (e engine) InTx(ctx context.Context, fn func(coreTx) error) error {
	return e.d.inSQLTx(ctx, func(tx *sql.Tx) error { return fn(writeTx{e.d.wq.WithTx(tx), tx}) })
}

// InReadTx runs fn in a read-only transaction on the reader pool: in WAL mode its reads see
// one snapshot of the database.
func (e engine) InReadTx(ctx context.Context, fn func(coreQueries) error) error {
	tx, err := e.d.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	err = fn(e.d.rq.WithTx(tx))
	return errors.Join(err, ignoreDone(tx.Rollback()))
}

// Classify tells what a database/sql or SQLite error means.
func (engine) Classify(err error) (core.Kind, error) { return classify(err) }

func classify(err error) (core.Kind, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return core.NoRows, nil
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return core.Other, nil
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return core.Unique, se
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return core.Refused, se
	}
	return core.Other, se
}

// wrap gives an error of this engine its store kind and context (see core.Wrap).
func wrap(ctx context.Context, op string, err error) error {
	return core.Wrap(ctx, "sqlite", classify, op, err)
}

// AcquireLease gives holder the named lease until until when it is free, expired at now or
// already holder's, and reports whether holder has it.
func (d *DB) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	return d.TakeLease(ctx, name, holder, now, until, func(until, now time.Time) error {
		_, err := d.wq.AcquireLease(ctx, name, holder, until, now)
		return err
	})
}

func backfillRow(r sqlitedb.Backfill) store.Backfill {
	return core.BackfillOf(r.UserID, r.Types, r.Since, r.Until, r.Step, r.Attempts, r.NextAttemptAt, r.LastError, r.DoneAt, r.CreatedAt)
}
