-- +goose Up
-- Automatic backfill (issue 13, BACKFILL_DAYS): one row per connection terragate asks Terra
-- for history of, written in the transaction that applies the connection's first auth
-- webhook, so that a crash loses none and a repeated auth (the key is taken) asks nothing
-- again. A pending row is due at next_attempt_at; claiming it moves next_attempt_at to the
-- end of its lease, so that a row whose worker died is due again once the lease ends. step
-- counts the Terra requests already made (types times windows of at most 1,825 days), so a
-- retry after a 429 goes on where it stopped.
CREATE TABLE backfills (
    user_id         TEXT PRIMARY KEY CHECK (user_id <> ''),
    types           TEXT NOT NULL CHECK (types <> ''),
    since           DATETIME NOT NULL,
    until           DATETIME NOT NULL,
    step            INTEGER NOT NULL DEFAULT 0 CHECK (step >= 0),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at DATETIME NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    done_at         DATETIME,
    created_at      DATETIME NOT NULL
);

CREATE INDEX backfills_due ON backfills (next_attempt_at) WHERE done_at IS NULL;

-- +goose Down
DROP INDEX backfills_due;
DROP TABLE backfills;
