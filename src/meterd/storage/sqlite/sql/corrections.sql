-- Queries of corrections and late events (storage/sqlite/corrections.py, recompute.py).

-- name: event_by_id
SELECT seq, id, event_type, customer_id, value, metadata, ts, received_at FROM events
WHERE id = ?;

-- name: void_of_event
SELECT event_id, voided_at, reason, key_name, key_prefix, replaced_by FROM event_voids
WHERE event_id = ?;

-- name: void_replaced_by
SELECT event_id, voided_at, reason, key_name, key_prefix, replaced_by FROM event_voids
WHERE replaced_by = ?;

-- name: void_by_idempotency_key
SELECT event_id, voided_at, reason, key_name, key_prefix, replaced_by FROM event_voids
WHERE idempotency_key = ?;

-- name: insert_void
INSERT INTO event_voids (event_id, voided_at, reason, key_name, key_prefix, replaced_by,
                         idempotency_key)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: active_bucket_events
SELECT e.seq, e.value, e.ts FROM events e
WHERE e.customer_id = ? AND e.ts >= ? AND e.ts < ? AND e.event_type = ?
  AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = e.id);

-- name: delete_rollup
DELETE FROM rollups WHERE customer_id = ? AND bucket = ? AND event_type = ?;

-- name: delete_daily_rollup
DELETE FROM daily_rollups WHERE customer_id = ? AND bucket = ? AND event_type = ?;

-- name: type_rollups
SELECT customer_id, event_type, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value
FROM rollups
WHERE customer_id = ? AND bucket >= ? AND bucket < ? AND event_type = ?;

-- name: watermarks
SELECT period, closed_until FROM period_watermarks;

-- name: insert_late_change
INSERT INTO late_changes (period, customer_id, bucket) VALUES (?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: late_changes
SELECT period, customer_id, bucket FROM late_changes LIMIT ?;

-- name: delete_late_change
DELETE FROM late_changes WHERE period = ? AND customer_id = ? AND bucket = ?;

-- name: insert_revision
INSERT INTO aggregation_revisions (aggregation_id, revision, totals, created_at)
VALUES (?, ?, ?, ?);

-- name: first_revision
SELECT totals, updated_at FROM aggregations WHERE id = ? AND status = 'closed';

-- name: later_revisions
SELECT revision, totals, created_at FROM aggregation_revisions WHERE aggregation_id = ?
ORDER BY revision;

-- name: delete_open_aggregation
DELETE FROM aggregations WHERE id = ? AND status = 'open';

-- name: api_key_by_hash
SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE key_hash = ?;

-- name: bucket_level_metadata
-- The metadata of one customer's events of a time-weighted meter in one bucket, voided
-- ones included: the series (groups) whose levels a change there may alter.
SELECT metadata FROM events
WHERE event_type = :event_type AND customer_id = :customer AND ts >= :from_ms AND ts < :to_ms;

-- name: later_levels
-- One customer's active events of a time-weighted meter after (ts, seq), oldest first:
-- where a changed level ends.
SELECT ts, seq, metadata FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = :event_type AND customer_id = :customer
  AND ts >= :ts AND (ts > :ts OR seq > :seq)
ORDER BY ts, seq
LIMIT :limit;
