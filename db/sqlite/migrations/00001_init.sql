-- +goose Up
-- Times are DATETIME text written by the driver in UTC ("2006-01-02 15:04:05.999999999+00:00"),
-- so text comparison orders them. Text columns default to '' rather than NULL so that
-- "unknown" has one spelling in both engines.

CREATE TABLE widget_sessions (
    id                   TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
    reference_id         TEXT NOT NULL DEFAULT '',
    providers            TEXT NOT NULL DEFAULT '', -- comma-separated
    language             TEXT NOT NULL DEFAULT '',
    success_redirect_url TEXT NOT NULL DEFAULT '',
    failure_redirect_url TEXT NOT NULL DEFAULT '',
    url                  TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL DEFAULT 'CREATED'
        CHECK (status IN ('CREATED', 'COMPLETED', 'FAILED', 'EXPIRED')),
    provider             TEXT NOT NULL DEFAULT '',
    terra_user_id        TEXT NOT NULL DEFAULT '',
    failure_reason       TEXT NOT NULL DEFAULT '',
    expires_at           DATETIME NOT NULL,
    created_at           DATETIME NOT NULL,
    updated_at           DATETIME NOT NULL
);

-- Serves matching a webhook to the end user's latest session.
CREATE INDEX widget_sessions_reference_id_created_at ON widget_sessions (reference_id, created_at);

CREATE TABLE terra_users (
    user_id             TEXT PRIMARY KEY NOT NULL CHECK (user_id <> ''),
    reference_id        TEXT NOT NULL DEFAULT '',
    provider            TEXT NOT NULL DEFAULT '',
    active              BOOLEAN NOT NULL CHECK (active IN (0, 1)),
    status              TEXT NOT NULL
        CHECK (status IN ('CONNECTED', 'ERROR', 'REVOKED', 'DISCONNECTED')),
    scopes              TEXT NOT NULL DEFAULT '', -- comma-separated
    -- Signed time of the event that last set scopes; NULL while no event has said.
    scopes_at           DATETIME,
    connected_at        DATETIME NOT NULL,
    last_webhook_update DATETIME,
    updated_at          DATETIME NOT NULL,
    state_at            DATETIME NOT NULL,
    replaced_by         TEXT NOT NULL DEFAULT '',
    -- A replaced user is a tombstone: never active again.
    CHECK (replaced_by = '' OR active = 0)
);

-- Serves listing an end user's connections, oldest first.
CREATE INDEX terra_users_reference_id ON terra_users (reference_id, connected_at);

-- The webhook inbox: one row per delivery, deduplicated across Terra's retries.
CREATE TABLE webhook_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key  TEXT NOT NULL UNIQUE CHECK (dedupe_key <> ''),
    trace_id    TEXT NOT NULL DEFAULT '',
    type        TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
    signed_at   DATETIME NOT NULL,
    received_at DATETIME NOT NULL,
    body        BLOB NOT NULL,
    applied_at  DATETIME,
    outcome     TEXT CHECK (outcome IN ('applied', 'unchanged', 'ignored'))
);

-- +goose Down
DROP TABLE webhook_events;
DROP TABLE terra_users;
DROP TABLE widget_sessions;
