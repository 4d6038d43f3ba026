-- +goose Up
-- The schema of SQLite's 00001 and 00002 together, in PostgreSQL's own types. Identifier
-- columns are COLLATE "C": ids are bytes, not words, and the store promises byte order
-- (ReferenceIDs, tie-breaks on id) whatever the database's default collation; "C" also
-- makes their btree indexes cheaper. Text columns default to '' rather than NULL so that
-- "unknown" has one spelling in both engines. Lists (providers, scopes) are text arrays.

CREATE TABLE widget_sessions (
    id                   text COLLATE "C" PRIMARY KEY CHECK (id <> ''),
    -- Terra's session id, which webhooks carry; '' for sessions stored under Terra's id.
    terra_session_id     text COLLATE "C" NOT NULL DEFAULT '',
    reference_id         text COLLATE "C" NOT NULL DEFAULT '',
    providers            text[] NOT NULL DEFAULT '{}',
    language             text NOT NULL DEFAULT '',
    success_redirect_url text NOT NULL DEFAULT '',
    failure_redirect_url text NOT NULL DEFAULT '',
    url                  text NOT NULL DEFAULT '',
    status               text NOT NULL DEFAULT 'CREATED'
        CHECK (status IN ('CREATED', 'COMPLETED', 'FAILED', 'EXPIRED')),
    provider             text NOT NULL DEFAULT '',
    terra_user_id        text COLLATE "C" NOT NULL DEFAULT '',
    failure_reason       text NOT NULL DEFAULT '',
    input_key            text COLLATE "C" NOT NULL DEFAULT '',
    -- Set once, when the session's signed return URL is used.
    return_used_at       timestamptz,
    expires_at           timestamptz NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

-- Terra never reuses a session id. Partial, so that sessions without one do not collide.
CREATE UNIQUE INDEX widget_sessions_terra_session_id ON widget_sessions (terra_session_id)
    WHERE terra_session_id <> '';

-- Serves matching an event to the end user's newest session still waiting for an outcome
-- (LatestWaitingWidgetSession): only those sessions are indexed, so finished ones cost
-- nothing to skip.
CREATE INDEX widget_sessions_waiting ON widget_sessions (reference_id, created_at, id)
    WHERE status IN ('CREATED', 'EXPIRED');

-- Serves finding the end user's live session for the same input (ReusableWidgetSession).
CREATE INDEX widget_sessions_reuse ON widget_sessions (reference_id, input_key, created_at, id)
    WHERE status = 'CREATED' AND return_used_at IS NULL;

-- Serves the expiry sweep: CREATED sessions by expiry.
CREATE INDEX widget_sessions_created_expires_at ON widget_sessions (expires_at)
    WHERE status = 'CREATED';

CREATE TABLE terra_users (
    user_id             text COLLATE "C" PRIMARY KEY CHECK (user_id <> ''),
    reference_id        text COLLATE "C" NOT NULL DEFAULT '',
    provider            text NOT NULL DEFAULT '',
    active              boolean NOT NULL,
    status              text NOT NULL
        CHECK (status IN ('CONNECTED', 'ERROR', 'REVOKED', 'DISCONNECTED')),
    scopes              text[] NOT NULL DEFAULT '{}',
    -- Signed time of the event that last set scopes; NULL while no event has said.
    scopes_at           timestamptz,
    connected_at        timestamptz NOT NULL,
    last_webhook_update timestamptz,
    updated_at          timestamptz NOT NULL,
    state_at            timestamptz NOT NULL,
    replaced_by         text COLLATE "C" NOT NULL DEFAULT '',
    -- A replaced user is a tombstone: never active again.
    CHECK (replaced_by = '' OR NOT active),
    -- Final statuses are never active.
    CHECK (NOT (active AND status IN ('REVOKED', 'DISCONNECTED')))
);

-- Serves listing an end user's connections, oldest first (ListTerraUsers and
-- ListActiveTerraUsers); tombstones are never listed, so they are not indexed.
CREATE INDEX terra_users_reference_id ON terra_users (reference_id, connected_at, user_id)
    WHERE replaced_by = '';

-- Serves ListReferenceIDs: an index-only scan of the end users with a live connection, in
-- byte order.
CREATE INDEX terra_users_active_reference_id ON terra_users (reference_id)
    WHERE active AND replaced_by = '' AND reference_id <> '';

-- The inbox keeps each body as received (body): jsonb would reorder keys, drop repeated ones
-- and reject JSON that Go accepts (\u0000, lone surrogates), and the body is evidence of what
-- Terra signed. body_json is the same body as jsonb for operators to query, derived by the
-- database so it cannot disagree with body, and NULL when the body is not JSON jsonb takes.
-- +goose StatementBegin
CREATE FUNCTION terragate_jsonb_or_null(body bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    -- IMMUTABLE holds: the source encoding is fixed and a database's encoding never changes.
    RETURN convert_from(body, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- The webhook inbox: one row per delivery, deduplicated across Terra's retries.
CREATE TABLE webhook_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key  text COLLATE "C" NOT NULL UNIQUE CHECK (dedupe_key <> ''),
    -- Where the row came from: Terra's webhook, or what terragate learned itself.
    source      text NOT NULL DEFAULT 'webhook'
        CHECK (source IN ('webhook', 'redirect', 'api', 'sync')),
    trace_id    text NOT NULL DEFAULT '',
    type        text NOT NULL DEFAULT '',
    kind        text NOT NULL CHECK (kind <> ''),
    signed_at   timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    body        bytea NOT NULL,
    body_json   jsonb GENERATED ALWAYS AS (terragate_jsonb_or_null(body)) STORED,
    applied_at  timestamptz,
    outcome     text CHECK (outcome IN ('applied', 'unchanged', 'ignored')),
    -- An outcome is recorded with the time it was applied, in the same statement.
    CHECK ((applied_at IS NULL) = (outcome IS NULL))
);

-- +goose Down
DROP TABLE webhook_events;
DROP FUNCTION terragate_jsonb_or_null(bytea);
DROP TABLE terra_users;
DROP TABLE widget_sessions;
