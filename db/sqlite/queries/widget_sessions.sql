-- name: CreateWidgetSession :exec
INSERT INTO widget_sessions (
    id, reference_id, providers, language, success_redirect_url, failure_redirect_url,
    url, status, provider, terra_user_id, failure_reason, expires_at, created_at, updated_at
) VALUES (
    @id, @reference_id, @providers, @language, @success_redirect_url, @failure_redirect_url,
    @url, @status, @provider, @terra_user_id, @failure_reason, @expires_at, @created_at, @updated_at
);

-- name: GetWidgetSession :one
SELECT * FROM widget_sessions
WHERE id = @id;

-- name: LatestCreatedWidgetSession :one
-- The end user's newest session still waiting for an outcome, created by the cutoff and
-- not expired at the event's time.
SELECT * FROM widget_sessions
WHERE reference_id = @reference_id
  AND status = 'CREATED'
  AND created_at <= @created_by
  AND expires_at >= @alive_at
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
