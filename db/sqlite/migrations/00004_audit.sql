-- +goose Up
-- The audit log: who did what to which end user's data, for security reviews. It is
-- append-only: the store has no query that updates or deletes it, and the triggers below
-- refuse any UPDATE or DELETE that other code (or a person at a SQLite shell) attempts, so
-- an entry once written stays as written. Detail is a small JSON object of strings; it
-- never holds tokens or secrets.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           DATETIME NOT NULL,
    actor        TEXT NOT NULL CHECK (actor <> ''),
    actor_kind   TEXT NOT NULL CHECK (actor_kind IN ('user', 'service', 'system', 'terra')),
    -- Actions are checked in Go (store.CheckAudit), so that a new one needs no migration.
    action       TEXT NOT NULL CHECK (action <> ''),
    subject      TEXT NOT NULL DEFAULT '',
    reference_id TEXT NOT NULL DEFAULT '',
    client_ip    TEXT NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(detail) AND json_type(detail) = 'object')
);

-- +goose StatementBegin
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
-- +goose StatementEnd

-- INSERT OR REPLACE deletes the row it conflicts with without firing delete triggers (unless
-- recursive_triggers is on), so an insert that would meet an existing id is refused before
-- it can replace an entry. The store's insert never names an id.
-- +goose StatementBegin
CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: REPLACE refused');
END;
-- +goose StatementEnd

-- Serve ListAudit, newest first: unfiltered (or by time only), and by each filter that
-- narrows it most (end user, actor, action). Ties on at are broken by id.
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_reference_id ON audit_log (reference_id, at, id);
CREATE INDEX audit_log_actor ON audit_log (actor, at, id);
CREATE INDEX audit_log_action ON audit_log (action, at, id);

-- Serves the admin listing of Terra users (ListTerraUsersPage) in (connected_at, user_id)
-- order when no end user is given. Partial like the listing: tombstones are never listed;
-- the query repeats "replaced_by = ''" so that SQLite uses it.
CREATE INDEX terra_users_connected_at ON terra_users (connected_at, user_id)
    WHERE replaced_by = '';

-- Serves the admin inbox listing by event type, newest first.
CREATE INDEX webhook_events_type ON webhook_events (type, id);

-- +goose Down
DROP INDEX webhook_events_type;
DROP INDEX terra_users_connected_at;
DROP TRIGGER audit_log_no_replace;
DROP TRIGGER audit_log_no_delete;
DROP TRIGGER audit_log_no_update;
DROP TABLE audit_log;
