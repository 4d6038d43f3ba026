// Package db holds terragate's SQL, one directory per engine: goose migrations (which sqlc
// also reads as the schema) and the sqlc queries. The migrations are embedded so that every
// binary carries the schema it expects and applies it at start.
package db

import "embed"

// SQLiteMigrations holds the SQLite migrations under sqlite/migrations; engines take the
// subtree with fs.Sub.
//
//go:embed sqlite/migrations/*.sql
var SQLiteMigrations embed.FS

// SQLiteMigrationsDir is the directory of SQLiteMigrations that holds the migration files.
const SQLiteMigrationsDir = "sqlite/migrations"
