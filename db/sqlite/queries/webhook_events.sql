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

-- name: ListWebhookEventsPage :many
-- A page of the admin inbox listing, newest first, resuming below the cursor's id. The
-- filters are optional (an empty one matches any). This one walks the primary key; for one
-- event type, the store uses ListWebhookEventsPageByType, which takes the same parameters
-- in the same order.
SELECT * FROM webhook_events
WHERE id < CAST(@before_id AS INTEGER)
  AND (CAST(@type AS TEXT) = '' OR type = @type)
  AND (CAST(@source AS TEXT) = '' OR source = @source)
  AND (CAST(@outcome AS TEXT) = '' OR outcome = @outcome)
ORDER BY id DESC
LIMIT @max_rows;

-- name: ListWebhookEventsPageByType :many
-- ListWebhookEventsPage for one event type, over webhook_events_type.
SELECT * FROM webhook_events
WHERE id < CAST(@before_id AS INTEGER)
  AND type = @type
  AND (CAST(@source AS TEXT) = '' OR source = @source)
  AND (CAST(@outcome AS TEXT) = '' OR outcome = @outcome)
ORDER BY id DESC
LIMIT @max_rows;
