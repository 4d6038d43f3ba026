// Package sqlite is the SQLite engine of store.Store, over modernc.org/sqlite (pure Go) and
// the sqlc queries in sqlitedb.
//
// SQLite allows one writer at a time, and a second writing connection meets SQLITE_BUSY
// even in WAL mode, so all writes go through a pool of exactly one connection whose
// transactions begin IMMEDIATE; callers queue in database/sql instead of failing. Webhook
// deliveries and new widget sessions, the bulk of the writes, queue instead for a group
// commit that commits those waiting together (batch.go). Reads use a separate read-only
// pool, which WAL lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/terragate/terragate/db"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/core"
	"github.com/terragate/terragate/internal/store/migration"
	"github.com/terragate/terragate/internal/store/sqlite/sqlitedb"
)

// DB is a SQLite database holding terragate's store. It implements store.Store and
// is safe for concurrent use.
type DB struct {
	*coreStore // the store's logic, written once for every engine
	*core.Backfills[sqlitedb.Backfill]

	write *sql.DB // exactly one connection: SQLite has one writer
	read  *sql.DB
	// checkpoint is the connection of the background checkpointer; stopCheckpoints ends it
	// and waits.
	checkpoint      *sql.DB
	stopCheckpoints func()
	wq              *sqlitedb.Queries
	rq              *sqlitedb.Queries
	log             *slog.Logger
	// live answers ReusableWidgetSession without a read when there is no such session
	// (live.go).
	live *liveSessions

	// The group commit of ApplyWebhook and CreateWidgetSession (batch.go): the writes
	// queued, whether Close has been called, whether a batch is being applied (busy) and
	// whether by the batcher (handed), all under mu; the batcher's wake-up, and stopped,
	// closed once it has ended.
	mu      sync.Mutex
	queue   []*pending
	closed  bool
	busy    bool
	handed  bool
	wake    chan struct{}
	stopped chan struct{}

	// afterApply, when set (by tests), runs inside the ApplyWebhook and ReplayDeadLetter
	// transactions after the event's rows are saved (core.Config.AfterApply).
	afterApply func() error
	// afterCommit, when set (by tests), runs after each commit of the batcher with the
	// number of deliveries it applied.
	afterCommit func(applied int)
}

var _ store.Store = (*DB)(nil)

// Options tunes OpenWith.
type Options struct {
	// MaxConns caps the read pool; zero or less means one connection per CPU (at least two).
	// Writes always use one connection: SQLite has one writer.
	MaxConns int
	// Migrate applies pending migrations at open. Without it, Open refuses a database whose
	// schema lacks a migration of this build (store.ErrSchemaOutdated).
	Migrate bool
}

// Open opens (creating if needed) the SQLite database at path and applies pending
// migrations. path is a file name; an in-memory database is refused because each pooled
// connection would see its own empty one. A nil log discards.
func Open(ctx context.Context, path string, log *slog.Logger) (*DB, error) {
	return OpenWith(ctx, path, Options{Migrate: true}, log)
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, opts Options, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	write, err := openWriter(path)
	if err != nil {
		return nil, err
	}
	op := "migrate"
	if opts.Migrate {
		err = migrateUp(ctx, write, log)
	} else {
		op = "check schema of"
		err = checkSchema(ctx, write)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sqlite: %s %s: %w", op, path, err), write.Close())
	}
	// The reader opens after the migration so the file exists and is already in WAL mode.
	read, err := sql.Open("sqlite", DSN(path, true))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sqlite: open %s: %w", path, err), write.Close())
	}
	n := opts.MaxConns
	if n <= 0 {
		n = max(2, runtime.GOMAXPROCS(0))
	}
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	// Every query is prepared once per pool (and by database/sql again on each further
	// connection that runs it), now that the schema is known to be current.
	wq, err := sqlitedb.Prepare(ctx, write)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sqlite: prepare queries: %w", err), read.Close(), write.Close())
	}
	rq, err := sqlitedb.Prepare(ctx, read)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sqlite: prepare queries: %w", err), wq.Close(), read.Close(), write.Close())
	}
	ckpt, err := sql.Open("sqlite", DSN(path, false))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sqlite: open %s: %w", path, err), rq.Close(), wq.Close(), read.Close(), write.Close())
	}
	ckpt.SetMaxOpenConns(1)
	d := &DB{
		write:      write,
		read:       read,
		checkpoint: ckpt,
		wq:         wq,
		rq:         rq,
		log:        log,
		live:       newLiveSessions(),
	}
	d.Backfills = core.NewBackfills("sqlite", wq, backfillRow, engine{d}.Classify, nil)
	d.coreStore = core.New(core.Config[sqlitedb.TerraUser, sqlitedb.WidgetSession, sqlitedb.WebhookEvent, sqlitedb.AuditLog, string, string, sqlitedb.RelayDelivery]{
		Name:   "sqlite",
		Engine: engine{d},
		Read:   rq,
		Write:  wq,
		Rows:   rows,
		Log:    log,
		AfterApply: func() error {
			if d.afterApply == nil {
				return nil
			}
			return d.afterApply()
		},
	})
	if err := d.loadLiveSessions(ctx); err != nil {
		return nil, errors.Join(err, ckpt.Close(), rq.Close(), wq.Close(), read.Close(), write.Close())
	}
	d.stopCheckpoints = d.checkpoints(checkpointEvery)
	d.startBatcher()
	if err := d.Ping(ctx); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// openWriter opens the pool of the one writing connection.
func openWriter(path string) (*sql.DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file::memory:") {
		return nil, fmt.Errorf("sqlite: open %q: a database file path is required: %w", path, store.ErrInvalid)
	}
	write, err := sql.Open("sqlite", DSN(path, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	return write, nil
}

// Migrate runs one migration command (see migration.Run) on the database at path, for the
// CLI, and writes what it did to out. SQLite's file lock lets one writer at a time, and a
// SQLite database serves one instance, so goose needs no lock of its own here.
func Migrate(ctx context.Context, path, command string, out io.Writer) error {
	write, err := openWriter(path)
	if err != nil {
		return err
	}
	p, err := provider(write)
	if err == nil {
		err = migration.Run(ctx, p, command, out)
	}
	if err := errors.Join(err, write.Close()); err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}
	return nil
}

// DSN is the modernc DSN for path, exported for what must open the file exactly as the
// store does (the benchmarks' hand-written baseline). Pragmas go in the DSN because the
// driver runs them on every new connection, where a db.Exec would reach one pooled
// connection only. Writers begin transactions IMMEDIATE so the write lock is taken up
// front, not upgraded midway, and keep temporary files in memory: the savepoint of each
// delivery in a group commit copies every page it changes to a sub-journal, which would
// otherwise spill to a temporary file, a write syscall a page. Readers are query_only.
func DSN(path string, readOnly bool) string {
	// The driver hands "file:" names to SQLite as URIs, which give '?', '#' and '%' meaning.
	path = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	q := "_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	if readOnly {
		q += "&_pragma=query_only(1)"
	} else {
		q += "&_txlock=immediate&_pragma=wal_autocheckpoint(" + strconv.Itoa(writerCheckpointPages) + ")&_pragma=temp_store(memory)"
	}
	return "file:" + path + "?" + q + "&_time_format=sqlite"
}

// embedded lists the versions of the embedded migrations.
var embedded = sync.OnceValues(func() ([]int64, error) {
	fsys, err := fs.Sub(db.SQLiteMigrations, db.SQLiteMigrationsDir)
	if err != nil {
		return nil, err
	}
	return migration.Versions(fsys)
})

// provider is goose over the embedded migrations. Closing it would close conn, which its
// callers keep using or close themselves.
func provider(conn *sql.DB) (*goose.Provider, error) {
	fsys, err := fs.Sub(db.SQLiteMigrations, db.SQLiteMigrationsDir)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectSQLite3, conn, fsys)
}

// migrateUp applies the embedded migrations that are not applied yet.
func migrateUp(ctx context.Context, conn *sql.DB, log *slog.Logger) error {
	p, err := provider(conn)
	if err != nil {
		return err
	}
	return migration.Up(ctx, p, "sqlite", log)
}

// checkSchema returns store.ErrSchemaOutdated unless every embedded migration is applied.
// It only reads: goose's own checks would create its version table.
func checkSchema(ctx context.Context, conn *sql.DB) error {
	want, err := embedded()
	if err != nil {
		return err
	}
	var applied []int64
	var tables int
	err = conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
		migration.VersionTable).Scan(&tables)
	if err != nil {
		return err
	}
	if tables > 0 {
		rows, err := conn.QueryContext(ctx, "SELECT version_id FROM "+migration.VersionTable+" WHERE version_id > 0")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				return err
			}
			applied = append(applied, v)
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return migration.Check(applied, want)
}

// Ready checks the database answers and its schema has every migration of this build.
func (d *DB) Ready(ctx context.Context) error {
	if err := d.Ping(ctx); err != nil {
		return err
	}
	if err := checkSchema(ctx, d.read); err != nil {
		return wrap(ctx, "ready", err)
	}
	return nil
}

// Ping checks both pools reach the database.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.write.PingContext(ctx); err != nil {
		return wrap(ctx, "ping", err)
	}
	if err := d.read.PingContext(ctx); err != nil {
		return wrap(ctx, "ping", err)
	}
	return nil
}

// Close stops the batcher, once it has applied the deliveries waiting, and the
// checkpointer, and closes the prepared statements and the pools. ApplyWebhook fails after
// Close.
func (d *DB) Close() error {
	d.stopBatcher()
	d.stopCheckpoints()
	return errors.Join(d.checkpoint.Close(), d.rq.Close(), d.wq.Close(), d.read.Close(), d.write.Close())
}

// checkpointEvery is how often the background checkpointer copies the WAL into the
// database. At webhook rates a few thousand pages pile up in between, far below
// writerCheckpointPages.
const checkpointEvery = 100 * time.Millisecond

// walRestartPages is the WAL size (in pages) above which the checkpointer has the WAL start
// over. SQLite reuses the WAL from its beginning only when a write begins with every page in
// it copied into the database, which a steady stream of writes never allows: without help
// the WAL grows until a committing writer checkpoints it itself, and that commit (and
// everything queued behind SQLite's one writer) waits for the checkpoint's syncs, 60-90 ms
// here at 2,000 webhooks/s.
const walRestartPages = 4000

// restartLeftover and restartPasses bound what the checkpoint on the writer's connection
// finds still to copy: what the last of at most restartPasses passes of the checkpointer
// left, 256 pages or fewer unless writes outpace the passes.
const (
	restartLeftover = 256
	restartPasses   = 4
)

// writerCheckpointPages is the WAL size at which a committing writer checkpoints itself,
// as SQLite does by default at 1000: a backstop for when the checkpointer cannot keep up.
const writerCheckpointPages = 40000

// checkpoints copies the WAL into the database every interval on a connection of its own,
// until the returned function is called. A checkpoint syncs the files, which takes
// milliseconds on common disks: left to SQLite's automatic checkpoint it runs inside the
// commit of whichever request crosses 1000 pages, and that request waits. PASSIVE
// waits for no reader or writer; with nothing new in the WAL it costs next to nothing.
//
// Once the WAL has grown past walRestartPages and this checkpoint copied all of it, a second
// one runs on the writer's connection, between two of its transactions: it has only the
// pages written meanwhile to copy, so the writer waits for that little, and the next write
// then starts the WAL over instead of growing it.
func (d *DB) checkpoints(interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pages, copied, err := d.passiveCheckpoint(ctx)
			// The pages written while a pass ran are left for the next: a few passes in a
			// row leave the writer's one little to copy.
			for pass := 1; err == nil && pages >= walRestartPages && copied == pages; pass++ {
				var more int
				if more, copied, err = d.passiveCheckpoint(ctx); err != nil || copied < more {
					break // a reader holds an older snapshot: the WAL cannot start over yet
				}
				if more-pages < restartLeftover || pass == restartPasses {
					_, err = d.write.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
					break
				}
				pages = more
			}
			if err != nil && ctx.Err() == nil {
				d.log.Warn("sqlite: background checkpoint failed", "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// passiveCheckpoint copies what it can of the WAL on the checkpointer's connection and
// returns the WAL's size and how much of it is now in the database, in pages.
func (d *DB) passiveCheckpoint(ctx context.Context) (pages, copied int, err error) {
	var busy int
	err = d.checkpoint.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &pages, &copied)
	return pages, copied, err
}

// inSQLTx runs fn in a write transaction, committing if it returns nil.
func (d *DB) inSQLTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, ignoreDone(tx.Rollback()))
	}
	return tx.Commit()
}

// savepoint runs fn inside a savepoint of tx. When fn fails, what it wrote is undone and the
// transaction can go on; if even that fails, the error no longer carries fn's, so that the
// caller rolls the whole transaction back instead of going on.
func savepoint(ctx context.Context, tx *sql.Tx, fn func() error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT apply_event"); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(); err != nil {
		if _, rbErr := tx.ExecContext(ctx, "ROLLBACK TO apply_event"); rbErr != nil {
			return fmt.Errorf("%v; roll back to savepoint: %w", err, rbErr)
		}
		return err
	}
	if _, err := tx.ExecContext(ctx, "RELEASE apply_event"); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// ignoreDone drops the error of a rollback the driver already made (it rolls back on
// context cancellation).
func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
