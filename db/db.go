// Package db holds terragate's SQL, one directory per engine: goose migrations (which sqlc
// also reads as the schema) and the sqlc queries. The migrations are embedded so that every
// binary carries the schema it expects and applies it at start.
package db

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"
)

// SQLiteMigrations holds the SQLite migrations under sqlite/migrations; engines take the
// subtree with fs.Sub.
//
//go:embed sqlite/migrations/*.sql
var SQLiteMigrations embed.FS

// SQLiteMigrationsDir is the directory of SQLiteMigrations that holds the migration files.
const SQLiteMigrationsDir = "sqlite/migrations"

// PostgresMigrations holds the PostgreSQL migrations under postgres/migrations. Their
// versions name the same schema as SQLite's from version 3 on; PostgreSQL's 00001 is
// SQLite's 00001 and 00002 together, so it has no 00002.
//
//go:embed postgres/migrations/*.sql
var PostgresMigrations embed.FS

// PostgresMigrationsDir is the directory of PostgresMigrations that holds the migration
// files.
const PostgresMigrationsDir = "postgres/migrations"

// queries holds the sqlc queries of both engines, for Query.
//
//go:embed sqlite/queries/*.sql postgres/queries/*.sql
var queries embed.FS

// Query returns the text of the named sqlc query of an engine ("sqlite" or "postgres"),
// from its "-- name: <name> :<kind>" line to the semicolon that ends it, as sqlc reads it
// (with sqlc's @name parameters). The benchmarks' hand-written baseline runs the same SQL
// as the store through it.
func Query(engine, name string) (string, error) {
	files, err := fs.Glob(queries, engine+"/queries/*.sql")
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("db: no queries for engine %q", engine)
	}
	marker := "-- name: " + name + " "
	for _, f := range files {
		b, err := fs.ReadFile(queries, f)
		if err != nil {
			return "", err
		}
		text := string(b)
		i := strings.Index(text, marker)
		if i < 0 {
			continue
		}
		body := text[i:]
		if j := strings.IndexByte(body, '\n'); j >= 0 {
			body = body[j+1:]
		}
		if j := strings.IndexByte(body, ';'); j >= 0 {
			body = body[:j]
		}
		return strings.TrimSpace(body), nil
	}
	return "", fmt.Errorf("db: no %s query named %q", engine, name)
}
