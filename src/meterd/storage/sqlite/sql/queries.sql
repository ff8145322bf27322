-- name: max_seq
SELECT coalesce(max(seq), 0) FROM events;

-- name: insert_event
INSERT INTO events (seq, id, event_type, customer_id, value, metadata, ts, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_api_key
INSERT INTO api_keys (name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?)
RETURNING id, name, prefix, created_at, revoked_at;

-- name: list_api_keys
SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL;

-- name: active_api_key_hashes
SELECT key_hash FROM api_keys WHERE revoked_at IS NULL;
