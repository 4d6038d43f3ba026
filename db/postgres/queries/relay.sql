-- name: InsertRelayEvent :one
-- Keeps an event's body for the relay, in the transaction that records it in the inbox.
INSERT INTO relay_events (body, created_at)
VALUES (@body, @created_at)
RETURNING id;

-- name: InsertRelayDelivery :exec
-- One delivery of an event to one destination, due at once.
INSERT INTO relay_deliveries (event_id, destination, webhook_id, event_type, trace_id, terra_reference,
                              ordering_timestamp, status, next_attempt_at, created_at)
VALUES (@event_id, @destination, @webhook_id, @event_type, @trace_id, @terra_reference,
        @ordering_timestamp, 'PENDING', @next_attempt_at, @created_at);

-- name: ClaimRelayDeliveries :many
-- Claims up to max_rows due deliveries of one destination, soonest first: each attempt is
-- counted and the delivery is not due again before lease_until. FOR UPDATE SKIP LOCKED lets
-- instances share the work, and one instance work a delivery at a time.
UPDATE relay_deliveries
SET attempts = attempts + 1,
    next_attempt_at = @lease_until,
    leased_until = @lease_until
WHERE id IN (
    SELECT d.id FROM relay_deliveries d
    WHERE d.status = 'PENDING'
      AND d.destination = @destination
      AND d.next_attempt_at <= @now
    ORDER BY d.next_attempt_at, d.id
    LIMIT @max_rows::bigint
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: ResumeRelayDeliveries :execrows
-- Makes one destination's waiting retries due at now: its backend answers again. Deliveries
-- under a lease (an attempt in flight) keep it.
UPDATE relay_deliveries
SET next_attempt_at = @now
WHERE status = 'PENDING'
  AND destination = @destination
  AND next_attempt_at > @now
  AND leased_until IS NULL;

-- name: GetRelayBody :one
-- The body of a relay event; NULL once no delivery needs it.
SELECT body FROM relay_events
WHERE id = @id;

-- name: FinishRelayDelivery :execrows
-- Records the end of a claimed attempt: delivered, due again, or failed for good. Only the
-- attempt that claimed the delivery may (same attempts count, still PENDING): a worker whose
-- lease ran out and whose delivery another worker claimed changes nothing.
UPDATE relay_deliveries
SET status = @status,
    next_attempt_at = @next_attempt_at,
    last_status_code = @last_status_code,
    last_error = @last_error,
    delivered_at = @delivered_at,
    leased_until = NULL
WHERE id = @id
  AND attempts = @attempts
  AND status = 'PENDING';

-- name: DropDeliveredRelayBody :exec
-- Forgets an event's body once every destination has it.
UPDATE relay_events
SET body = NULL, pieces = 0
WHERE relay_events.id = @id
  AND (relay_events.body IS NOT NULL OR relay_events.pieces > 0)
  AND NOT EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.event_id = @id AND d.status <> 'DELIVERED');

-- name: DropExpiredRelayBodies :execrows
-- Forgets the bodies kept since before the retention that no pending delivery needs: those
-- of dead letters, which then can no longer be replayed.
UPDATE relay_events
SET body = NULL, pieces = 0
WHERE (relay_events.body IS NOT NULL OR relay_events.pieces > 0)
  AND relay_events.created_at < @before
  AND NOT EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.event_id = relay_events.id AND d.status = 'PENDING');

-- name: GetRelayDelivery :one
SELECT * FROM relay_deliveries
WHERE id = @id;

-- name: ReplayRelayDelivery :one
-- A dead letter goes back to PENDING, due at now, with its attempts counted afresh; any
-- other delivery is left as it is (no row).
UPDATE relay_deliveries
SET status = 'PENDING',
    attempts = 0,
    next_attempt_at = @now
WHERE id = @id
  AND status = 'FAILED'
RETURNING *;

-- name: ListRelayDeliveriesPage :many
-- A page of the delivery log, newest first, below the cursor's id; empty filters match any.
SELECT * FROM relay_deliveries
WHERE id < @before_id::bigint
  AND (@destination::text = '' OR destination = @destination)
  AND (@status::text = '' OR status = @status)
  AND (@event_type::text = '' OR event_type = @event_type)
ORDER BY id DESC
LIMIT @max_rows::bigint;

-- name: CountPendingRelayDeliveries :one
-- The backlog of one destination, for the metrics: over relay_deliveries_due.
SELECT count(*) FROM relay_deliveries
WHERE status = 'PENDING'
  AND destination = @destination;

-- name: OldestPendingRelayDelivery :one
-- When the oldest PENDING delivery of one destination was enqueued, for the metrics.
SELECT created_at FROM relay_deliveries
WHERE status = 'PENDING'
  AND destination = @destination
ORDER BY id
LIMIT 1;

-- name: InsertStreamedRelayEvent :one
-- Keeps a large event for the relay as pieces (InsertRelayPiece), in the transaction that
-- records it in the inbox.
INSERT INTO relay_events (body, pieces, created_at)
VALUES (NULL, @pieces, @created_at)
RETURNING id;

-- name: InsertRelayPiece :exec
INSERT INTO relay_pieces (event_id, seq, data)
VALUES (@event_id, @seq, @data);

-- name: GetRelayPieces :one
-- How many pieces a relay event's body is kept in: 0 for a body kept inline, or not kept.
SELECT pieces FROM relay_events
WHERE id = @id;

-- name: GetRelayPiece :one
SELECT data FROM relay_pieces
WHERE event_id = @event_id AND seq = @seq;

-- name: DeleteDroppedRelayPieces :exec
-- Deletes the pieces of an event whose body DropDeliveredRelayBody dropped.
DELETE FROM relay_pieces
WHERE relay_pieces.event_id = @id
  AND EXISTS (SELECT 1 FROM relay_events e WHERE e.id = @id AND e.pieces = 0);

-- name: DeleteOrphanRelayPieces :exec
-- Deletes the pieces of every body dropped (DropExpiredRelayBodies): relay_pieces holds only
-- the bodies still kept, so this reads little.
DELETE FROM relay_pieces
WHERE NOT EXISTS (SELECT 1 FROM relay_events e WHERE e.id = relay_pieces.event_id AND e.pieces > 0);

-- name: FinishRelayDeliveries :batchone
-- FinishRelayDelivery, DropDeliveredRelayBody and DeleteDroppedRelayPieces in one statement,
-- for the group commit of attempts' results: the body goes once no other delivery of its
-- event still needs it. finished counts the deliveries changed (0 when another attempt
-- claimed it since).
WITH finished AS (
    UPDATE relay_deliveries
    SET status = @status,
        next_attempt_at = @next_attempt_at,
        last_status_code = @last_status_code,
        last_error = @last_error,
        delivered_at = @delivered_at,
        leased_until = NULL
    WHERE relay_deliveries.id = @id
      AND relay_deliveries.attempts = @attempts
      AND relay_deliveries.status = 'PENDING'
    RETURNING relay_deliveries.event_id, relay_deliveries.status
), dropped AS (
    -- The statement's snapshot still shows this delivery PENDING: it is left out.
    UPDATE relay_events
    SET body = NULL, pieces = 0
    WHERE relay_events.id IN (SELECT finished.event_id FROM finished WHERE finished.status = 'DELIVERED')
      AND (relay_events.body IS NOT NULL OR relay_events.pieces > 0)
      AND NOT EXISTS (SELECT 1 FROM relay_deliveries d
                      WHERE d.event_id = relay_events.id AND d.status <> 'DELIVERED' AND d.id <> @id)
    RETURNING relay_events.id
), dropped_pieces AS (
    DELETE FROM relay_pieces
    WHERE relay_pieces.event_id IN (SELECT dropped.id FROM dropped)
)
SELECT count(*)::bigint AS finished FROM finished;
