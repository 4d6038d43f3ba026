// Package postgres is the PostgreSQL engine of store.Store, over pgx/v5 (a pgxpool.Pool) and
// the sqlc queries in pgdb.
//
// Several terragate instances may share one database. Migrations run under a session-level
// advisory lock, so concurrent starts migrate once; ApplyWebhook relies on the inbox's
// unique dedupe key to apply each delivery once, and on row and advisory locks to apply
// concurrent deliveries about the same Terra user one after the other.
package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/terragate/terragate/db"
	"github.com/terragate/terragate/internal/groupcommit"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/core"
	"github.com/terragate/terragate/internal/store/migration"
	"github.com/terragate/terragate/internal/store/postgres/pgdb"
)

// DB is a PostgreSQL database holding terragate's store. It implements store.Store and
// is safe for concurrent use.
type DB struct {
	*coreStore // the store's logic, written once for every engine
	*core.Backfills[pgdb.Backfill]

	pool *pgxpool.Pool
	q    *pgdb.Queries
	log  *slog.Logger

	// The group commits of data events and of the relay's results (group.go).
	dataCommit   *groupcommit.Committer[*dataWrite]
	finishCommit *groupcommit.Committer[*finishWrite]

	// afterApply, when set (by tests), runs inside the ApplyWebhook and ReplayDeadLetter
	// transactions after the event's rows are saved (core.Config.AfterApply).
	afterApply func() error
}

var _ store.Store = (*DB)(nil)

// Options tunes Open.
type Options struct {
	// MaxConns caps the pool; zero or less keeps pgxpool's default (the larger of 4 and the
	// number of CPUs) or the URL's pool_max_conns.
	MaxConns int32
	// Migrate applies pending migrations at open, under the migration lock. Without it, Open
	// refuses a database whose schema lacks a migration of this build
	// (store.ErrSchemaOutdated).
	Migrate bool
}

// Open connects to the database named by a postgres:// or postgresql:// URL (or a pgx
// keyword/value string). The URL's search_path (options=-c search_path=...) picks the schema,
// which must exist. Errors never repeat the password. A nil log discards.
func Open(ctx context.Context, databaseURL string, opts Options, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secret := password(databaseURL)
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, redact(fmt.Errorf("postgres: database URL: %w: %w", store.ErrInvalid, err), secret)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Migrate {
		if err := withProvider(ctx, cfg.ConnConfig, func(p *goose.Provider) error {
			return migration.Up(ctx, p, "postgres", log)
		}); err != nil {
			return nil, redact(wrap(ctx, "migrate", err), secret)
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, redact(wrap(ctx, "open", err), secret)
	}
	d := &DB{pool: pool, q: pgdb.New(pool), log: log}
	d.Backfills = core.NewBackfills("postgres", d.q, backfillRow, engine{d}.Classify, nil)
	d.coreStore = core.New(core.Config[pgdb.TerraUser, pgdb.WidgetSession, pgdb.WebhookEvent, pgdb.AuditLog, []string, []byte, pgdb.RelayDelivery]{
		Name:   "postgres",
		Engine: engine{d},
		Read:   d.q,
		Write:  d.q,
		Rows:   rows,
		Log:    log,
		AfterApply: func() error {
			if d.afterApply == nil {
				return nil
			}
			return d.afterApply()
		},
	})
	d.dataCommit = groupcommit.New(d.applyData, groupcommit.Options{MaxBatch: groupBatch, MaxParallel: groupParallel})
	d.finishCommit = groupcommit.New(d.finishBatch, groupcommit.Options{MaxBatch: groupBatch, MaxParallel: groupParallel})
	check := d.Ping
	if !opts.Migrate {
		check = d.Ready
	}
	if err := check(ctx); err != nil {
		d.closeCommits()
		pool.Close()
		return nil, redact(err, secret)
	}
	log.InfoContext(ctx, "database opened", "engine", "postgres", "host", cfg.ConnConfig.Host,
		"database", cfg.ConnConfig.Database, "max_conns", cfg.MaxConns)
	return d, nil
}

// Migrate runs one migration command (see migration.Run) on the database named by
// databaseURL, for the CLI, under the same lock as Open, and writes what it did to out.
func Migrate(ctx context.Context, databaseURL, command string, out io.Writer) error {
	secret := password(databaseURL)
	// The pool's parser, so that a URL made for Open (pool_max_conns=...) works here too.
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return redact(fmt.Errorf("postgres: database URL: %w: %w", store.ErrInvalid, err), secret)
	}
	err = withProvider(ctx, cfg.ConnConfig, func(p *goose.Provider) error {
		return migration.Run(ctx, p, command, out)
	})
	return redact(wrap(ctx, "migrate "+command, err), secret)
}

// withProvider runs fn with goose over the embedded migrations, on connections of their own
// that close afterwards: a session-level lock can then never outlive the migration in a
// pooled connection.
//
// The advisory lock's id is derived from the schema, so instances sharing a schema migrate
// one at a time while deployments (and tests) in other schemas of the same database do not
// wait for each other.
func withProvider(ctx context.Context, cfg *pgx.ConnConfig, fn func(*goose.Provider) error) error {
	conn := stdlib.OpenDB(*cfg.Copy())
	defer conn.Close()
	var schema sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return err
	}
	if !schema.Valid {
		return fmt.Errorf("the search_path names no existing schema: %w", store.ErrInvalid)
	}
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(lockID("terragate migrations "+schema.String)),
		// Poll every second (goose's default is 5 s) for up to 10 minutes: a waiting instance
		// starts soon after the one migrating finishes.
		lock.WithLockTimeout(1, 600),
		lock.WithUnlockTimeout(1, 60),
	)
	if err != nil {
		return err
	}
	fsys, err := fs.Sub(db.PostgresMigrations, db.PostgresMigrationsDir)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, conn, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return err
	}
	return fn(p)
}

// lockID maps a name to an advisory lock id. Two names sharing an id only make their holders
// wait for each other.
func lockID(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// embedded lists the versions of the embedded migrations.
var embedded = sync.OnceValues(func() ([]int64, error) {
	fsys, err := fs.Sub(db.PostgresMigrations, db.PostgresMigrationsDir)
	if err != nil {
		return nil, err
	}
	return migration.Versions(fsys)
})

// Ready checks the database answers and its schema has every migration of this build. It
// only reads: goose's own checks would create its version table.
func (d *DB) Ready(ctx context.Context) error {
	want, err := embedded()
	if err != nil {
		return err
	}
	var exists bool
	err = d.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", migration.VersionTable).Scan(&exists)
	if err != nil {
		return wrap(ctx, "ready", err)
	}
	var applied []int64
	if exists {
		rows, err := d.pool.Query(ctx, "SELECT version_id FROM "+migration.VersionTable+" WHERE version_id > 0")
		if err == nil {
			applied, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		}
		if err != nil {
			return wrap(ctx, "ready", err)
		}
	}
	if err := migration.Check(applied, want); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// Ping checks the database answers.
func (d *DB) Ping(ctx context.Context) error {
	return wrap(ctx, "ping", d.pool.Ping(ctx))
}

// closeCommits waits for the writes being group-committed and refuses later ones.
func (d *DB) closeCommits() {
	d.dataCommit.Close()
	d.finishCommit.Close()
}

// Close waits for the data events and relay results being committed, then closes the pool, waiting for
// connections in use to be returned. Later ones are refused.
func (d *DB) Close() error {
	d.closeCommits()
	d.pool.Close()
	return nil
}

// password is the password in a postgres URL or keyword/value string, or "" when there is
// none or the string does not parse: errors must not repeat it.
func password(databaseURL string) string {
	if u, err := url.Parse(databaseURL); err == nil && u.User != nil {
		p, _ := u.User.Password()
		return p
	}
	for field := range strings.FieldsSeq(databaseURL) {
		if v, ok := strings.CutPrefix(field, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// redacted is an error whose text has a secret masked; errors.Is and As still see the cause.
type redacted struct {
	err    error
	secret string
}

func (e redacted) Error() string { return strings.ReplaceAll(e.err.Error(), e.secret, "xxxxx") }
func (e redacted) Unwrap() error { return e.err }

// redact masks secret in err's text. pgx already redacts what it parses; this also covers
// the strings it cannot parse and any message that quotes its input.
func redact(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	return redacted{err: err, secret: secret}
}
