-- +goose Up
-- A claimed delivery's lease, apart from when it is due: while an attempt is in flight its
-- next_attempt_at is the lease's end too, and this tells the two apart. A destination whose
-- circuit closes again after an outage has its waiting retries made due at once (its
-- backend is back), and an attempt in flight, here or on another instance, must not be.
ALTER TABLE relay_deliveries ADD COLUMN leased_until timestamptz;

-- +goose Down
ALTER TABLE relay_deliveries DROP COLUMN leased_until;
