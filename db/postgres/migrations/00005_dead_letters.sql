-- +goose Up
-- Dead letters: a delivery the store refuses for a reason retrying will not fix (bad data, a
-- bug) stays in the inbox with outcome 'failed' and the reason in error, applies nothing and
-- holds up nothing behind it, and can be replayed once the cause is fixed. replays counts the
-- replays and replayed_at is the last one. error is a short message the caller has cleaned;
-- it never holds secrets. The new columns have constant defaults, so adding them rewrites
-- nothing; the new checks read the inbox once.
ALTER TABLE webhook_events
    DROP CONSTRAINT webhook_events_outcome_check,
    DROP CONSTRAINT webhook_events_check,
    ADD COLUMN error text NOT NULL DEFAULT '',
    ADD COLUMN replayed_at timestamptz,
    ADD COLUMN replays integer NOT NULL DEFAULT 0 CHECK (replays >= 0),
    ADD CONSTRAINT webhook_events_outcome_check
        CHECK (outcome IN ('applied', 'unchanged', 'ignored', 'failed')),
    -- An outcome other than 'failed' is recorded with the time it was applied.
    ADD CONSTRAINT webhook_events_check
        CHECK ((applied_at IS NULL) = (outcome IS NULL OR outcome = 'failed')),
    -- A dead letter says why; any other row has no error.
    ADD CONSTRAINT webhook_events_error_check
        CHECK (outcome IS NULL OR (outcome = 'failed') = (error <> ''));

-- Serves listing the dead letters, newest first: they are few among many deliveries, so only
-- they are indexed.
CREATE INDEX webhook_events_failed ON webhook_events (id) WHERE outcome = 'failed';

-- +goose Down
-- Dead letters go back to an inbox row with no outcome: recorded, never applied.
DROP INDEX webhook_events_failed;
UPDATE webhook_events SET outcome = NULL WHERE outcome = 'failed';
ALTER TABLE webhook_events
    DROP CONSTRAINT webhook_events_error_check,
    DROP CONSTRAINT webhook_events_check,
    DROP CONSTRAINT webhook_events_outcome_check,
    DROP COLUMN replays,
    DROP COLUMN replayed_at,
    DROP COLUMN error,
    ADD CONSTRAINT webhook_events_outcome_check CHECK (outcome IN ('applied', 'unchanged', 'ignored')),
    ADD CONSTRAINT webhook_events_check CHECK ((applied_at IS NULL) = (outcome IS NULL));
