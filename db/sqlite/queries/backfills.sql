-- name: InsertBackfill :exec
-- Records a connection's backfill once: a connection that has one keeps it.
INSERT INTO backfills (user_id, types, since, until, next_attempt_at, created_at)
VALUES (@user_id, @types, @since, @until, @created_at, @created_at)
ON CONFLICT (user_id) DO NOTHING;

-- name: ClaimBackfill :one
-- Claims the pending backfill due soonest: its attempt is counted and it is not due again
-- before lease_until. SQLite's one writer claims one at a time.
UPDATE backfills
SET attempts = attempts + 1,
    next_attempt_at = @lease_until
WHERE user_id = (
    SELECT b.user_id FROM backfills b
    WHERE b.done_at IS NULL AND b.next_attempt_at <= @now
    ORDER BY b.next_attempt_at, b.user_id
    LIMIT 1
)
RETURNING *;

-- name: FinishBackfill :execrows
-- Records how far a claimed backfill got: done (done_at set) or due again at
-- next_attempt_at. The attempt count guards against a worker whose lease ran out.
UPDATE backfills
SET step = @step, next_attempt_at = @next_attempt_at, last_error = @last_error, done_at = @done_at
WHERE user_id = @user_id AND attempts = @attempts AND done_at IS NULL;

-- name: GetBackfill :one
SELECT * FROM backfills WHERE user_id = @user_id;
