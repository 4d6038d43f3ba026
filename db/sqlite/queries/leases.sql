-- name: AcquireLease :one
-- The lease goes to holder when it is free, already holder's, or expired at now; no row comes
-- back when another holder has it. The test sits in the SELECT because sqlc leaves parameters
-- in an upsert's WHERE unbound (they would read as NULL); SQLite's single writer makes test
-- and write one step. sqlc cannot type parameters here, so the Go fields are untyped.
INSERT INTO leases (name, holder, expires_at)
SELECT @name, @holder, @until
WHERE NOT EXISTS (
    SELECT 1 FROM leases
    WHERE name = @name
      AND holder <> @holder
      AND expires_at > @now
)
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder,
    expires_at = excluded.expires_at
RETURNING holder;

-- name: ReleaseLease :exec
DELETE FROM leases
WHERE name = @name
  AND holder = @holder;
