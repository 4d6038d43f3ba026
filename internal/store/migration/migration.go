// Package migration runs and checks the store engines' goose migrations, so that both
// engines migrate, judge a database's schema and answer the CLI's commands the same way.
// Engines supply the goose provider (with the locking their database offers) and the list of
// versions a database has applied.
package migration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/terragate/terragate/internal/store"
)

// Commands names the commands Run accepts, for help text and errors.
const Commands = "up, down, status"

// VersionTable is the table goose keeps applied versions in.
const VersionTable = "goose_db_version"

// Versions lists the versions of the migration files (NNNNN_name.sql) in fsys, ascending.
func Versions(fsys fs.FS) ([]int64, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	versions := make([]int64, 0, len(names))
	for _, name := range names {
		v, err := goose.NumericComponent(name)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", name, err)
		}
		versions = append(versions, v)
	}
	if len(versions) == 0 {
		return nil, errors.New("no migrations embedded")
	}
	slices.Sort(versions)
	return versions, nil
}

// Check compares the versions a database has applied with the ones this build embeds: any
// embedded version not applied is store.ErrSchemaOutdated. Versions beyond the embedded
// ones are accepted, because during a rolling deploy a newer instance migrates first and
// migrations are written to keep the previous build working.
func Check(applied, embedded []int64) error {
	var missing []int64
	for _, v := range embedded {
		if !slices.Contains(applied, v) {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	latest := int64(0)
	if len(applied) > 0 {
		latest = slices.Max(applied)
	}
	return fmt.Errorf("%w: at version %d, missing %v", store.ErrSchemaOutdated, latest, missing)
}

// Up applies the pending migrations and logs each one.
func Up(ctx context.Context, p *goose.Provider, engine string, log *slog.Logger) error {
	results, err := p.Up(ctx)
	for _, r := range results {
		log.InfoContext(ctx, "database migrated", "engine", engine, "version", r.Source.Version,
			"file", r.Source.Path, "duration", r.Duration)
	}
	return err
}

// Run runs one command for the CLI and writes what it did to out: "up" applies every pending
// migration, "down" rolls back the latest one, "status" lists every migration and whether it
// is applied.
func Run(ctx context.Context, p *goose.Provider, command string, out io.Writer) error {
	switch command {
	case "up":
		results, err := p.Up(ctx)
		for _, r := range results {
			fmt.Fprintf(out, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
		}
		if err != nil {
			return err
		}
		if len(results) == 0 {
			fmt.Fprintln(out, "no pending migrations")
		}
		return nil
	case "down":
		r, err := p.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			fmt.Fprintln(out, "no migration to roll back")
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "rolled back %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
		return nil
	case "status":
		statuses, err := p.Status(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "VERSION\tSTATE\tAPPLIED AT\tFILE")
		for _, s := range statuses {
			at := ""
			if s.State == goose.StateApplied {
				at = s.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, s.Source.Path)
		}
		return w.Flush()
	}
	return fmt.Errorf("migrate: unknown command %q; want one of %s: %w", command, Commands, store.ErrInvalid)
}
