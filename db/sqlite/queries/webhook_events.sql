-- name: InsertWebhookEvent :one
-- No row comes back when the dedupe key is already in the inbox: a retried delivery.
INSERT INTO webhook_events (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body)
VALUES (@dedupe_key, @source, @trace_id, @type, @kind, @signed_at, @received_at, @body)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id;

-- name: RecordWebhookOutcome :exec
UPDATE webhook_events
SET applied_at = @applied_at,
    outcome = @outcome
WHERE id = @id;

-- name: ListWebhookEvents :many
SELECT * FROM webhook_events
WHERE id > @after_id
ORDER BY id
LIMIT @max_rows;
