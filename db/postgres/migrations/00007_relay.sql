-- +goose Up
-- The relay's transactional outbox (issue 13): every stored Terra event that a destination
-- wants is kept here, in the transaction that records it in the inbox, with one delivery per
-- destination, until every destination has it.
--
-- relay_events holds the body, byte for byte, only while a delivery still needs it: NULL once
-- every destination has it, or after RELAY_RETENTION for a dead letter. Deliveries stay, with
-- no body, as the delivery log.
CREATE TABLE relay_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       bytea,
    created_at timestamptz NOT NULL
);

-- One delivery of an event to one destination. A PENDING delivery is due at
-- next_attempt_at; claiming it (FOR UPDATE SKIP LOCKED, so instances share the work) moves
-- next_attempt_at to the end of its lease and counts the attempt, so that a delivery whose
-- worker died is due again once the lease ends. webhook_id is the Standard Webhooks message
-- id, the same on every attempt. last_error never holds anything of the body. Integers are
-- bigint so that both engines' generated code has the same types.
CREATE TABLE relay_deliveries (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id           bigint NOT NULL REFERENCES relay_events (id),
    destination        text NOT NULL CHECK (destination <> ''),
    webhook_id         text COLLATE "C" NOT NULL UNIQUE CHECK (webhook_id <> ''),
    event_type         text NOT NULL,
    trace_id           text NOT NULL DEFAULT '',
    terra_reference    text NOT NULL DEFAULT '',
    ordering_timestamp text NOT NULL DEFAULT '',
    status             text NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts           bigint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at    timestamptz,
    last_status_code   bigint,
    last_error         text NOT NULL DEFAULT '',
    delivered_at       timestamptz,
    created_at         timestamptz NOT NULL,
    UNIQUE (event_id, destination),
    CHECK ((status = 'PENDING') = (next_attempt_at IS NOT NULL)),
    CHECK ((status = 'DELIVERED') = (delivered_at IS NOT NULL))
);

-- Claiming: the due deliveries of one destination, soonest first.
CREATE INDEX relay_deliveries_due ON relay_deliveries (destination, next_attempt_at, id)
    WHERE status = 'PENDING';

-- +goose Down
DROP TABLE relay_deliveries;
DROP TABLE relay_events;
