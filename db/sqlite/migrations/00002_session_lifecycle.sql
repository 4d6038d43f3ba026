-- +goose Up
-- Sessions get terragate's own id (id) beside Terra's (terra_session_id): webhooks name
-- Terra's, redirects and terragate's own events name terragate's. Rows from before this
-- migration keep Terra's id in id and an empty terra_session_id, so they still match.

ALTER TABLE widget_sessions ADD COLUMN terra_session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE widget_sessions ADD COLUMN input_key TEXT NOT NULL DEFAULT '';
-- Set once, when the session's signed return URL is used.
ALTER TABLE widget_sessions ADD COLUMN return_used_at DATETIME;

-- Terra never reuses a session id. Partial, so that sessions without one do not collide;
-- lookups repeat "terra_session_id <> ''" so that SQLite can use it.
CREATE UNIQUE INDEX widget_sessions_terra_session_id ON widget_sessions (terra_session_id)
    WHERE terra_session_id <> '';

-- Serves finding the end user's live sessions for the same input; the few found are sorted
-- by age.
CREATE INDEX widget_sessions_reuse ON widget_sessions (reference_id, input_key, status, expires_at);

-- Serves the expiry sweep: CREATED sessions by expiry.
CREATE INDEX widget_sessions_status_expires_at ON widget_sessions (status, expires_at);

-- Where the inbox row came from: Terra's webhook, or what terragate learned itself. Existing
-- rows were all webhooks.
ALTER TABLE webhook_events ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook'
    CHECK (source IN ('webhook', 'redirect', 'api', 'sync'));

-- +goose Down
DROP INDEX widget_sessions_status_expires_at;
DROP INDEX widget_sessions_reuse;
DROP INDEX widget_sessions_terra_session_id;
ALTER TABLE webhook_events DROP COLUMN source;
ALTER TABLE widget_sessions DROP COLUMN return_used_at;
ALTER TABLE widget_sessions DROP COLUMN input_key;
ALTER TABLE widget_sessions DROP COLUMN terra_session_id;
