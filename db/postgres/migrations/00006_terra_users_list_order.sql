-- +goose Up
-- SQLite's 00006 puts user_id into terra_users_reference_id so that listings need no sort.
-- PostgreSQL's index has held it from the start; the version is kept so that both engines
-- name the same schema by the same number.
SELECT 1;

-- +goose Down
SELECT 1;
