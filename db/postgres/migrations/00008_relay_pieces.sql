-- +goose Up
-- Large bodies for the relay (issue 13), kept in bounded pieces: each piece is one zstd frame
-- of at most 1 MiB of the body as Terra sent it (internal/spool). A streamed event has body
-- NULL and pieces > 0; a small one keeps its body inline with pieces = 0. Dropping a body sets
-- both to nothing, and its pieces are deleted in the same transaction.
ALTER TABLE relay_events ADD COLUMN pieces bigint NOT NULL DEFAULT 0 CHECK (pieces >= 0);

CREATE TABLE relay_pieces (
    event_id bigint NOT NULL REFERENCES relay_events (id),
    seq      bigint NOT NULL CHECK (seq >= 0),
    data     bytea NOT NULL,
    PRIMARY KEY (event_id, seq)
);

-- +goose Down
DROP TABLE relay_pieces;
ALTER TABLE relay_events DROP COLUMN pieces;
