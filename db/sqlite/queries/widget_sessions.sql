-- name: CreateWidgetSession :exec
INSERT INTO widget_sessions (
    id, terra_session_id, reference_id, providers, language, success_redirect_url,
    failure_redirect_url, url, status, provider, terra_user_id, failure_reason, input_key,
    return_used_at, expires_at, created_at, updated_at
) VALUES (
    @id, @terra_session_id, @reference_id, @providers, @language, @success_redirect_url,
    @failure_redirect_url, @url, @status, @provider, @terra_user_id, @failure_reason, @input_key,
    @return_used_at, @expires_at, @created_at, @updated_at
);

-- name: GetWidgetSession :one
SELECT * FROM widget_sessions
WHERE id = @id;

-- name: LockWidgetSession :one
-- GetWidgetSession for ApplyWebhook, under the name PostgreSQL's locking query has. SQLite
-- needs no row lock: its one writer runs one transaction at a time.
SELECT * FROM widget_sessions
WHERE id = @id;

-- name: GetWidgetSessionByTerraID :one
-- The repeated "<> ''" lets SQLite use the partial unique index, and never matches a session
-- that has no Terra id.
SELECT * FROM widget_sessions
WHERE terra_session_id = @terra_session_id
  AND terra_session_id <> '';

-- name: LatestWaitingWidgetSession :one
-- The end user's newest session that had no outcome yet at the event's time: created by the
-- cutoff, not expired at the event's time, and CREATED or since swept to EXPIRED (the sweep
-- may run between the event and its delivery).
SELECT * FROM widget_sessions
WHERE reference_id = @reference_id
  AND status IN ('CREATED', 'EXPIRED')
  AND created_at <= @created_by
  AND expires_at >= @alive_at
ORDER BY created_at DESC, id DESC
LIMIT 1;

-- name: ReusableWidgetSession :one
-- A session whose return URL is spent is not handed out again: its next return would be
-- refused.
SELECT * FROM widget_sessions
WHERE reference_id = @reference_id
  AND input_key = @input_key
  AND status = 'CREATED'
  AND expires_at > @live_after
  AND return_used_at IS NULL
ORDER BY created_at DESC, id DESC
LIMIT 1;

-- name: UpdateWidgetSessionOutcome :one
UPDATE widget_sessions
SET status = @status,
    provider = @provider,
    terra_user_id = @terra_user_id,
    failure_reason = @failure_reason,
    updated_at = @updated_at
WHERE id = @id
RETURNING *;

-- name: ConsumeWidgetReturn :execrows
UPDATE widget_sessions
SET return_used_at = @return_used_at
WHERE id = @id
  AND return_used_at IS NULL;

-- name: ExpireWidgetSessions :many
UPDATE widget_sessions
SET status = 'EXPIRED',
    updated_at = @now
WHERE status = 'CREATED'
  AND expires_at <= @now
RETURNING *;

-- name: ListReusableWidgetSessionKeys :many
-- What the SQLite engine's index of live sessions starts from: every session that
-- ReusableWidgetSession could still hand out once its expiry is far enough away.
SELECT reference_id, input_key, expires_at FROM widget_sessions
WHERE status = 'CREATED'
  AND expires_at > @live_after
  AND return_used_at IS NULL
  AND reference_id <> ''
  AND input_key <> '';
