-- name: AcquireLease :one
-- The lease goes to holder when it is free, already holder's, or expired at now; no row comes
-- back when another holder has it. The conflicting row is locked before the WHERE is checked,
-- so two instances racing for an expired lease see one winner.
INSERT INTO leases (name, holder, expires_at)
VALUES (@name, @holder, @until)
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder,
    expires_at = excluded.expires_at
WHERE leases.holder = excluded.holder
   OR leases.expires_at <= @now
RETURNING holder;

-- name: ReleaseLease :exec
DELETE FROM leases
WHERE name = @name
  AND holder = @holder;
