package bench

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the "sqlite" driver, as the store uses it

	"github.com/terragate/terragate/internal/store/engine"
	"github.com/terragate/terragate/internal/store/sqlite"
)

// providers are the providers seeded connections are spread over.
var providers = []string{"OURA", "GARMIN", "FITBIT", "WITHINGS", "POLAR", "SUUNTO", "WHOOP"}

// Population is how many end users a seeded database holds and how many connections
// (Terra users, one per provider) each has.
type Population struct {
	Users    int
	PerUser  int
	Inactive int // of each user's connections, how many are disconnected (listed only with includeInactive)
}

// User is the end user (reference_id) number i of a population.
func User(i int) string { return fmt.Sprintf("bench-user-%07d", i) }

// terraUserID is connection j of end user i.
func terraUserID(i, j int) string { return fmt.Sprintf("bench-tu-%07d-%d", i, j) }

// epoch is when the seeded connections were made.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Migrate creates terragate's schema in the database, as the gateway does at start.
func Migrate(ctx context.Context, databaseURL string) error {
	st, err := engine.Open(ctx, databaseURL, engine.Options{Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	return st.Close()
}

// SeedSQLite migrates the SQLite file at path and fills it with p, in one transaction of
// prepared inserts (row by row through the store would take minutes).
func SeedSQLite(ctx context.Context, path string, p Population) error {
	if err := Migrate(ctx, "sqlite:"+path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", sqlite.DSN(path, false))
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO terra_users
		(user_id, reference_id, provider, active, status, scopes, connected_at, last_webhook_update, updated_at, state_at, replaced_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')`)
	if err != nil {
		return err
	}
	for i := range p.Users {
		for j := range p.PerUser {
			active, status, at := true, "CONNECTED", epoch.Add(time.Duration(i*p.PerUser+j)*time.Second)
			if j < p.Inactive {
				active, status = false, "DISCONNECTED"
			}
			if _, err := ins.ExecContext(ctx, terraUserID(i, j), User(i), providers[j%len(providers)], active, status,
				"activity,sleep,daily", at, at, at, at); err != nil {
				return fmt.Errorf("seed sqlite: %w", err)
			}
		}
	}
	// No ANALYZE: terragate never runs it, and with its statistics SQLite re-plans every
	// statement whose plan could depend on a bound value, on every execution.
	return tx.Commit()
}

// SeedPostgres migrates the database at databaseURL and fills it with p in one statement
// PostgreSQL runs by itself.
func SeedPostgres(ctx context.Context, databaseURL string, p Population) error {
	if err := Migrate(ctx, databaseURL); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `
		INSERT INTO terra_users
			(user_id, reference_id, provider, active, status, scopes, connected_at, last_webhook_update, updated_at, state_at, replaced_by)
		SELECT format('bench-tu-%s-%s', lpad(i::text, 7, '0'), j),
		       format('bench-user-%s', lpad(i::text, 7, '0')),
		       ($4::text[])[1 + j % cardinality($4::text[])],
		       j >= $3, CASE WHEN j >= $3 THEN 'CONNECTED' ELSE 'DISCONNECTED' END,
		       '{activity,sleep,daily}',
		       at, at, at, at, ''
		FROM generate_series(0, $1 - 1) AS i,
		     generate_series(0, $2 - 1) AS j,
		     LATERAL (SELECT $5::timestamptz + make_interval(secs => i * $2 + j)) AS t(at)`,
		p.Users, p.PerUser, p.Inactive, providers, epoch)
	if err != nil {
		return fmt.Errorf("seed postgres: %w", err)
	}
	// Autovacuum would analyze the new rows soon; a long-running database has done so.
	_, err = conn.Exec(ctx, "ANALYZE terra_users")
	return err
}
