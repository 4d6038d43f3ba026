-- +goose Up
-- The relay's transactional outbox (issue 13): every stored Terra event that a destination
-- wants is kept here, in the transaction that records it in the inbox, with one delivery per
-- destination, until every destination has it.
--
-- relay_events holds the body, byte for byte, only while a delivery still needs it: NULL once
-- every destination has it, or after RELAY_RETENTION for a dead letter. Deliveries stay, with
-- no body, as the delivery log.
CREATE TABLE relay_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    body       BLOB,
    created_at DATETIME NOT NULL
);

-- One delivery of an event to one destination. A PENDING delivery is due at
-- next_attempt_at; claiming it moves next_attempt_at to the end of its lease and counts the
-- attempt, so that a delivery whose worker died is due again once the lease ends. webhook_id
-- is the Standard Webhooks message id, the same on every attempt. last_error never holds
-- anything of the body.
CREATE TABLE relay_deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           INTEGER NOT NULL REFERENCES relay_events (id),
    destination        TEXT NOT NULL CHECK (destination <> ''),
    webhook_id         TEXT NOT NULL UNIQUE CHECK (webhook_id <> ''),
    event_type         TEXT NOT NULL,
    trace_id           TEXT NOT NULL DEFAULT '',
    terra_reference    TEXT NOT NULL DEFAULT '',
    ordering_timestamp TEXT NOT NULL DEFAULT '',
    status             TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts           INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at    DATETIME,
    last_status_code   INTEGER,
    last_error         TEXT NOT NULL DEFAULT '',
    delivered_at       DATETIME,
    created_at         DATETIME NOT NULL,
    UNIQUE (event_id, destination),
    CHECK ((status = 'PENDING') = (next_attempt_at IS NOT NULL)),
    CHECK ((status = 'DELIVERED') = (delivered_at IS NOT NULL))
);

-- Claiming: the due deliveries of one destination, soonest first.
CREATE INDEX relay_deliveries_due ON relay_deliveries (destination, next_attempt_at, id)
    WHERE status = 'PENDING';

-- +goose Down
DROP INDEX relay_deliveries_due;
DROP TABLE relay_deliveries;
DROP TABLE relay_events;
