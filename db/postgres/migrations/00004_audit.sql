-- +goose Up
-- The audit log: who did what to which end user's data, for security reviews. It is
-- append-only: the store has no query that updates or deletes it, and the trigger below
-- refuses UPDATE, DELETE and TRUNCATE whoever runs them, so an entry once written stays as
-- written. Only the table's owner (ALTER TABLE ... DISABLE TRIGGER) or a superuser
-- (session_replication_role) can get past it; deployments that want more run the gateway
-- as a role that does not own the table. The trigger is per statement: it refuses the
-- statement itself, even one that would touch no row. Detail is a small JSON object of
-- strings; it never holds tokens or secrets.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor        text COLLATE "C" NOT NULL CHECK (actor <> ''),
    actor_kind   text NOT NULL CHECK (actor_kind IN ('user', 'service', 'system', 'terra')),
    -- Actions are checked in Go (store.CheckAudit), so that a new one needs no migration.
    action       text COLLATE "C" NOT NULL CHECK (action <> ''),
    subject      text COLLATE "C" NOT NULL DEFAULT '',
    reference_id text COLLATE "C" NOT NULL DEFAULT '',
    client_ip    text NOT NULL DEFAULT '',
    detail       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);

-- +goose StatementBegin
CREATE FUNCTION terragate_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION terragate_audit_log_append_only();

-- Serve ListAudit, newest first: unfiltered (or by time only), and by each filter that
-- narrows it most (end user, actor, action). Ties on at are broken by id.
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_reference_id ON audit_log (reference_id, at, id);
CREATE INDEX audit_log_actor ON audit_log (actor, at, id);
CREATE INDEX audit_log_action ON audit_log (action, at, id);

-- Serves the admin listing of Terra users (ListTerraUsersPage) in (connected_at, user_id)
-- order when no end user is given. Tombstones are never listed, so they are not indexed.
CREATE INDEX terra_users_connected_at ON terra_users (connected_at, user_id)
    WHERE replaced_by = '';

-- Serves the admin inbox listing by event type, newest first.
CREATE INDEX webhook_events_type ON webhook_events (type, id);

-- +goose Down
DROP INDEX webhook_events_type;
DROP INDEX terra_users_connected_at;
DROP TABLE audit_log;
DROP FUNCTION terragate_audit_log_append_only();
