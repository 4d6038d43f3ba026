-- +goose Up
-- Dead letters: a delivery the store refuses for a reason retrying will not fix (bad data, a
-- bug) stays in the inbox with outcome 'failed' and the reason in error, applies nothing and
-- holds up nothing behind it, and can be replayed once the cause is fixed. replays counts the
-- replays and replayed_at is the last one. error is a short message the caller has cleaned;
-- it never holds secrets.
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt (SQLite's
-- documented procedure): new table, copy, drop, rename, indexes. No other table references
-- webhook_events and it has no triggers or views. Ids are copied as they are, and the
-- AUTOINCREMENT high-water mark carries over, so that ids are never reused.
CREATE TABLE webhook_events_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key  TEXT NOT NULL UNIQUE CHECK (dedupe_key <> ''),
    trace_id    TEXT NOT NULL DEFAULT '',
    type        TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
    signed_at   DATETIME NOT NULL,
    received_at DATETIME NOT NULL,
    body        BLOB NOT NULL,
    applied_at  DATETIME,
    outcome     TEXT CHECK (outcome IN ('applied', 'unchanged', 'ignored', 'failed')),
    source      TEXT NOT NULL DEFAULT 'webhook'
        CHECK (source IN ('webhook', 'redirect', 'api', 'sync')),
    error       TEXT NOT NULL DEFAULT '',
    replayed_at DATETIME,
    replays     INTEGER NOT NULL DEFAULT 0 CHECK (replays >= 0),
    -- An outcome other than 'failed' is recorded with the time it was applied.
    CHECK ((applied_at IS NULL) = (outcome IS NULL OR outcome = 'failed')),
    -- A dead letter says why; any other row has no error.
    CHECK (outcome IS NULL OR (outcome = 'failed') = (error <> ''))
);

INSERT INTO webhook_events_new (id, dedupe_key, trace_id, type, kind, signed_at, received_at, body,
                                applied_at, outcome, source)
SELECT id, dedupe_key, trace_id, type, kind, signed_at, received_at, body, applied_at, outcome, source
FROM webhook_events;

-- The copy set the new table's sequence to the largest id; the old one may be higher (rows
-- removed by hand).
INSERT INTO sqlite_sequence (name, seq)
SELECT 'webhook_events_new', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'webhook_events_new');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'webhook_events'), 0))
WHERE name = 'webhook_events_new';

DROP TABLE webhook_events;
ALTER TABLE webhook_events_new RENAME TO webhook_events;

-- Serves the admin inbox listing by event type, newest first (as in 00004).
CREATE INDEX webhook_events_type ON webhook_events (type, id);

-- Serves listing the dead letters, newest first: they are few among many deliveries, so only
-- they are indexed.
CREATE INDEX webhook_events_failed ON webhook_events (id) WHERE outcome = 'failed';

-- +goose Down
-- Dead letters go back to an inbox row with no outcome: recorded, never applied.
CREATE TABLE webhook_events_old (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key  TEXT NOT NULL UNIQUE CHECK (dedupe_key <> ''),
    trace_id    TEXT NOT NULL DEFAULT '',
    type        TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
    signed_at   DATETIME NOT NULL,
    received_at DATETIME NOT NULL,
    body        BLOB NOT NULL,
    applied_at  DATETIME,
    outcome     TEXT CHECK (outcome IN ('applied', 'unchanged', 'ignored')),
    source      TEXT NOT NULL DEFAULT 'webhook'
        CHECK (source IN ('webhook', 'redirect', 'api', 'sync'))
);

INSERT INTO webhook_events_old (id, dedupe_key, trace_id, type, kind, signed_at, received_at, body,
                                applied_at, outcome, source)
SELECT id, dedupe_key, trace_id, type, kind, signed_at, received_at, body,
       CASE WHEN outcome = 'failed' THEN NULL ELSE applied_at END,
       CASE WHEN outcome = 'failed' THEN NULL ELSE outcome END,
       source
FROM webhook_events;

INSERT INTO sqlite_sequence (name, seq)
SELECT 'webhook_events_old', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'webhook_events_old');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'webhook_events'), 0))
WHERE name = 'webhook_events_old';

DROP TABLE webhook_events;
ALTER TABLE webhook_events_old RENAME TO webhook_events;
CREATE INDEX webhook_events_type ON webhook_events (type, id);
