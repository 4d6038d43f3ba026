-- name: InsertAuditEntry :exec
-- The audit log is append-only: this insert and the listings below are its only queries, and
-- the table's triggers refuse any UPDATE or DELETE.
INSERT INTO audit_log (at, actor, actor_kind, action, subject, reference_id, client_ip, detail)
VALUES (@at, @actor, @actor_kind, @action, @subject, @reference_id, @client_ip, @detail);

-- name: ListAuditEntries :many
-- A page of the audit log, newest first, resuming below the cursor's (at, id); the filters
-- are optional (an empty one matches any). This one reads by time alone, over audit_log_at;
-- the ...By variants below are led by one filter, over its own index, and the store picks
-- the variant of the most selective filter given. All four take their parameters in the
-- same order, so that their generated Go parameter types convert into each other.
SELECT * FROM audit_log
WHERE at >= @since
  AND at < @until
  AND (at, id) < (@before_at::timestamptz, @before_id::bigint)
  AND (@reference_id::text = '' OR reference_id = @reference_id)
  AND (@actor::text = '' OR actor = @actor)
  AND (@action::text = '' OR action = @action)
ORDER BY at DESC, id DESC
LIMIT @max_rows::bigint;

-- name: ListAuditEntriesByReference :many
-- ListAuditEntries led by the end user (audit_log_reference_id).
SELECT * FROM audit_log
WHERE at >= @since
  AND at < @until
  AND (at, id) < (@before_at::timestamptz, @before_id::bigint)
  AND reference_id = @reference_id
  AND (@actor::text = '' OR actor = @actor)
  AND (@action::text = '' OR action = @action)
ORDER BY at DESC, id DESC
LIMIT @max_rows::bigint;

-- name: ListAuditEntriesByActor :many
-- ListAuditEntries led by the actor (audit_log_actor).
SELECT * FROM audit_log
WHERE at >= @since
  AND at < @until
  AND (at, id) < (@before_at::timestamptz, @before_id::bigint)
  AND (@reference_id::text = '' OR reference_id = @reference_id)
  AND actor = @actor
  AND (@action::text = '' OR action = @action)
ORDER BY at DESC, id DESC
LIMIT @max_rows::bigint;

-- name: ListAuditEntriesByAction :many
-- ListAuditEntries led by the action (audit_log_action).
SELECT * FROM audit_log
WHERE at >= @since
  AND at < @until
  AND (at, id) < (@before_at::timestamptz, @before_id::bigint)
  AND (@reference_id::text = '' OR reference_id = @reference_id)
  AND (@actor::text = '' OR actor = @actor)
  AND action = @action
ORDER BY at DESC, id DESC
LIMIT @max_rows::bigint;
