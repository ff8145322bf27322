-- Queries of the console and the customer portal: sessions, portal tokens, customers,
-- and the overview's counts.

-- name: insert_session
INSERT INTO console_sessions (session_hash, key_hash, created_at, expires_at)
VALUES (%s, %s, %s, %s);

-- name: delete_expired_sessions
DELETE FROM console_sessions WHERE expires_at <= %s;

-- name: get_session
SELECT session_hash, key_hash, created_at, expires_at
FROM console_sessions WHERE session_hash = %s;

-- name: delete_session
DELETE FROM console_sessions WHERE session_hash = %s;

-- name: insert_portal_token
INSERT INTO portal_tokens (token_hash, customer_id, meters, created_at, expires_at, revoked_at)
VALUES (%s, %s, %s, %s, %s, %s);

-- name: get_portal_token
SELECT token_hash, customer_id, meters, created_at, expires_at, revoked_at
FROM portal_tokens WHERE token_hash = %s;

-- name: revoke_portal_token
UPDATE portal_tokens SET revoked_at = %s WHERE token_hash = %s AND revoked_at IS NULL;

-- name: revoke_customer_portal_tokens
UPDATE portal_tokens SET revoked_at = %s WHERE customer_id = %s AND revoked_at IS NULL;

-- name: customer_ids
-- Customers with any rollup, in id order after the given id, skipping from one id to the next
-- through the primary key (one index probe per customer, not one per rollup row).
WITH RECURSIVE customer (id) AS (
    SELECT min(customer_id) FROM rollups WHERE customer_id > %(after)s
    UNION ALL
    SELECT (SELECT min(customer_id) FROM rollups WHERE customer_id > customer.id)
    FROM customer WHERE customer.id IS NOT NULL
)
SELECT id FROM customer
WHERE id IS NOT NULL AND (%(search)s::text IS NULL OR strpos(id, %(search)s::text) > 0)
LIMIT %(limit)s;

-- name: event_counts_by_bucket
SELECT bucket, sum(count) FROM rollups WHERE bucket >= %s AND bucket < %s
GROUP BY bucket ORDER BY bucket;

-- name: delivery_count
SELECT count(*) FROM deliveries WHERE status = %s;
