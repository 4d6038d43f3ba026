-- name: WebhookEventExists :one
-- Whether a delivery with this dedupe key is in the inbox: a retried delivery, which
-- ApplyWebhook answers as a duplicate even when applying it again would fail.
SELECT EXISTS (SELECT 1 FROM webhook_events WHERE dedupe_key = @dedupe_key);

-- name: InsertAppliedWebhookEvent :execrows
-- Records a delivery with what applying it did, in the transaction that applies it: one
-- statement, where an insert and then an update of the outcome cost two. No row is inserted
-- (0 rows) when the dedupe key is already in the inbox; a second instance inserting the same
-- key waits for the first one's transaction, and then inserts nothing (or the row, if the
-- first rolled back).
INSERT INTO webhook_events (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body, applied_at, outcome)
VALUES (@dedupe_key, @source, @trace_id, @type, @kind, @signed_at, @received_at, @body, @applied_at, @outcome)
ON CONFLICT (dedupe_key) DO NOTHING;

-- name: LockKey :exec
-- Serializes the transactions that take the same key until they end. ApplyWebhook takes one
-- per Terra user it touches, so that deliveries about a row that does not exist yet (which
-- FOR UPDATE cannot lock) still apply one after the other. PostgreSQL only: instances share
-- the database, where SQLite's one writer runs one transaction at a time.
SELECT pg_advisory_xact_lock(@key::bigint);

-- name: ListWebhookEventsPage :many
-- A page of the admin inbox listing, newest first, resuming below the cursor's id. The
-- filters are optional (an empty one matches any). This one walks the primary key; for one
-- event type, the store uses ListWebhookEventsPageByType, which takes the same parameters
-- in the same order.
SELECT * FROM webhook_events
WHERE id < @before_id::bigint
  AND (@type::text = '' OR type = @type)
  AND (@source::text = '' OR source = @source)
  AND (@outcome::text = '' OR outcome = @outcome)
ORDER BY id DESC
LIMIT @max_rows::bigint;

-- name: ListWebhookEventsPageByType :many
-- ListWebhookEventsPage for one event type, over webhook_events_type.
SELECT * FROM webhook_events
WHERE id < @before_id::bigint
  AND type = @type
  AND (@source::text = '' OR source = @source)
  AND (@outcome::text = '' OR outcome = @outcome)
ORDER BY id DESC
LIMIT @max_rows::bigint;

-- name: ListDeadLettersPage :many
-- ListWebhookEventsPage for the dead letters (outcome 'failed'), over webhook_events_failed.
SELECT * FROM webhook_events
WHERE outcome = 'failed'
  AND id < @before_id::bigint
  AND (@type::text = '' OR type = @type)
  AND (@source::text = '' OR source = @source)
ORDER BY id DESC
LIMIT @max_rows::bigint;

-- name: GetWebhookEvent :one
SELECT * FROM webhook_events
WHERE id = @id;

-- name: GetWebhookEventByDedupeKey :one
SELECT * FROM webhook_events
WHERE dedupe_key = @dedupe_key;

-- name: LockWebhookEvent :one
-- GetWebhookEvent for ReplayDeadLetter: holds off a concurrent replay of the same row (on any
-- instance) until this transaction ends.
SELECT * FROM webhook_events
WHERE id = @id
FOR UPDATE;

-- name: InsertDeadLetter :one
-- No row comes back when the dedupe key is already in the inbox, whatever its outcome; as with
-- InsertAppliedWebhookEvent, an insert of the same key in flight elsewhere is waited for first.
INSERT INTO webhook_events (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body, outcome, error)
VALUES (@dedupe_key, @source, @trace_id, @type, @kind, @signed_at, @received_at, @body, 'failed', @error)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING *;

-- name: RecordReplay :execrows
-- Records a replay of a dead letter: what applying it did (applied_at and outcome, no error),
-- or, when it failed again, outcome 'failed' with the new error and no applied_at. Only a
-- dead letter changes, so a second replay of the same row changes nothing.
UPDATE webhook_events
SET type = @type,
    kind = @kind,
    applied_at = @applied_at,
    outcome = @outcome,
    error = @error,
    replayed_at = @replayed_at,
    replays = replays + 1
WHERE id = @id
  AND outcome = 'failed';

-- name: RecordDataEvents :batchone
-- Records a data event (one terragate applies nothing of) in the inbox and enqueues its relay,
-- in one statement: no delivery is enqueued when the dedupe key is already in the inbox, and
-- no body is kept without a destination. Batched: the group commit of such events sends many
-- in one round trip and one transaction (see the postgres package's group.go).
WITH inbox AS (
    INSERT INTO webhook_events (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body, applied_at, outcome)
    VALUES (@dedupe_key, @source, @trace_id, @type, 'ignored', @signed_at, @received_at, @body, @applied_at, 'ignored')
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
), relay_event AS (
    INSERT INTO relay_events (body, created_at)
    SELECT @relay_body::bytea, @applied_at FROM inbox
    WHERE cardinality(@destinations::text[]) > 0
    RETURNING id
), relay_delivery AS (
    INSERT INTO relay_deliveries (event_id, destination, webhook_id, event_type, trace_id, terra_reference,
                                  ordering_timestamp, status, next_attempt_at, created_at)
    SELECT relay_event.id, d.destination, (@webhook_ids::text[])[d.n], @relay_type, @relay_trace_id, @terra_reference,
           @ordering_timestamp, 'PENDING', @applied_at, @applied_at
    FROM relay_event, unnest(@destinations::text[]) WITH ORDINALITY AS d (destination, n)
    RETURNING 1
)
SELECT (SELECT count(*) FROM inbox)::bigint AS recorded,
       (SELECT count(*) FROM relay_delivery)::bigint AS enqueued;
