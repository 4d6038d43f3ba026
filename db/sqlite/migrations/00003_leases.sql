-- +goose Up
-- Leases let several instances share one database and still run background work (the sync
-- sweep, session expiry) on one of them at a time. Times come from the instances, so their
-- clocks must agree to within the lease's margin.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL CHECK (name <> ''),
    holder     TEXT NOT NULL CHECK (holder <> ''),
    expires_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE leases;
