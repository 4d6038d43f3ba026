-- +goose Up
-- Version 3 on both engines (PostgreSQL's 00001 covers SQLite's 00001 and 00002).
-- Leases let several instances share one database and still run background work (the sync
-- sweep, session expiry) on one of them at a time. Times come from the instances, so their
-- clocks must agree to within the lease's margin.
CREATE TABLE leases (
    name       text COLLATE "C" PRIMARY KEY CHECK (name <> ''),
    holder     text COLLATE "C" NOT NULL CHECK (holder <> ''),
    expires_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE leases;
