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

// PostgresMigrations holds the PostgreSQL migrations under postgres/migrations. Their
// versions name the same schema as SQLite's from version 3 on; PostgreSQL's 00001 is
// SQLite's 00001 and 00002 together, so it has no 00002.
//
//go:embed postgres/migrations/*.sql
var PostgresMigrations embed.FS

// PostgresMigrationsDir is the directory of PostgresMigrations that holds the migration
// files.
const PostgresMigrationsDir = "postgres/migrations"
