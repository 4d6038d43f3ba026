-- name: GetTerraUser :one
SELECT * FROM terra_users
WHERE user_id = @user_id;

-- name: LockTerraUser :one
-- GetTerraUser for ApplyWebhook: the row stays locked until the transaction ends.
SELECT * FROM terra_users
WHERE user_id = @user_id
FOR UPDATE;

-- name: ListActiveTerraUsers :many
SELECT * FROM terra_users
WHERE reference_id = @reference_id
  AND replaced_by = ''
  AND active
ORDER BY connected_at, user_id;

-- name: ListTerraUsers :many
SELECT * FROM terra_users
WHERE reference_id = @reference_id
  AND replaced_by = ''
ORDER BY connected_at, user_id;

-- name: SaveTerraUser :exec
-- The row is decided in Go (store.Apply); this only saves it whole. Nothing is read back:
-- the row saved is the row given.
INSERT INTO terra_users (
    user_id, reference_id, provider, active, status, scopes, scopes_at, connected_at,
    last_webhook_update, updated_at, state_at, replaced_by
) VALUES (
    @user_id, @reference_id, @provider, @active, @status, @scopes, @scopes_at, @connected_at,
    @last_webhook_update, @updated_at, @state_at, @replaced_by
)
ON CONFLICT (user_id) DO UPDATE SET
    reference_id = excluded.reference_id,
    provider = excluded.provider,
    active = excluded.active,
    status = excluded.status,
    scopes = excluded.scopes,
    scopes_at = excluded.scopes_at,
    connected_at = excluded.connected_at,
    last_webhook_update = excluded.last_webhook_update,
    updated_at = excluded.updated_at,
    state_at = excluded.state_at,
    replaced_by = excluded.replaced_by;

-- name: ListReferenceIDs :many
-- The end users with at least one live connection, in byte order: the column is COLLATE "C".
SELECT DISTINCT reference_id FROM terra_users
WHERE reference_id <> ''
  AND replaced_by = ''
  AND active
ORDER BY reference_id;

-- name: ListTerraUsersPage :many
-- A page of the admin listing of Terra users, in (connected_at, user_id) order, resuming
-- after the cursor's key; tombstones are never listed. Provider and status are optional (an
-- empty one matches any). This one walks terra_users_connected_at; for one end user, the
-- store uses ListTerraUsersPageByReference.
SELECT * FROM terra_users
WHERE replaced_by = ''
  AND (connected_at, user_id) > (@after_at::timestamptz, @after_user_id::text)
  AND (@provider::text = '' OR provider = @provider)
  AND (@status::text = '' OR status = @status)
ORDER BY connected_at, user_id
LIMIT @max_rows::bigint;

-- name: ListTerraUsersPageByReference :many
-- ListTerraUsersPage for one end user, over terra_users_reference_id.
SELECT * FROM terra_users
WHERE reference_id = @reference_id
  AND replaced_by = ''
  AND (connected_at, user_id) > (@after_at::timestamptz, @after_user_id::text)
  AND (@provider::text = '' OR provider = @provider)
  AND (@status::text = '' OR status = @status)
ORDER BY connected_at, user_id
LIMIT @max_rows::bigint;

-- name: CountTerraUsers :one
-- The total count of ListTerraUsersPage's listing, whatever the page.
SELECT count(*) FROM terra_users
WHERE replaced_by = ''
  AND (@provider::text = '' OR provider = @provider)
  AND (@status::text = '' OR status = @status);

-- name: CountTerraUsersByReference :one
-- The total count of ListTerraUsersPageByReference's listing, whatever the page.
SELECT count(*) FROM terra_users
WHERE reference_id = @reference_id
  AND replaced_by = ''
  AND (@provider::text = '' OR provider = @provider)
  AND (@status::text = '' OR status = @status);
