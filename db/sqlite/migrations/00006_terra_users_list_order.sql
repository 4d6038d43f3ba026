-- +goose Up
-- Listing an end user's connections orders by (connected_at, user_id); with user_id in the
-- index SQLite reads them in order instead of sorting them on every call, as PostgreSQL's
-- index of the same name already allows.
DROP INDEX terra_users_reference_id;
CREATE INDEX terra_users_reference_id ON terra_users (reference_id, connected_at, user_id);

-- +goose Down
DROP INDEX terra_users_reference_id;
CREATE INDEX terra_users_reference_id ON terra_users (reference_id, connected_at);
