-- Queries of corrections and late events (storage/postgres/corrections.py, recompute.py).

-- name: event_by_id
SELECT seq, id, event_type, customer_id, value, metadata::text,
       (extract(epoch FROM ts) * 1000)::bigint, (extract(epoch FROM received_at) * 1000)::bigint
FROM events WHERE id = %s;

-- name: void_of_event
SELECT event_id, voided_at, reason, key_name, key_prefix, replaced_by FROM event_voids
WHERE event_id = %s;

-- name: void_replaced_by
SELECT event_id, voided_at, reason, key_name, key_prefix, replaced_by FROM event_voids
WHERE replaced_by = %s;

-- name: void_by_idempotency_key
SELECT event_id, voided_at, reason, key_name, key_prefix, replaced_by FROM event_voids
WHERE idempotency_key = %s;

-- name: insert_void
-- The unique keys decide between corrections racing on one event (or one key).
INSERT INTO event_voids (event_id, voided_at, reason, key_name, key_prefix, replaced_by,
                         idempotency_key)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
RETURNING event_id;

-- name: lock_rollup
SELECT 1 FROM rollups WHERE customer_id = %s AND bucket = %s AND event_type = %s FOR UPDATE;

-- name: active_bucket_events
SELECT e.seq, e.value, (extract(epoch FROM e.ts) * 1000)::bigint FROM events e
WHERE e.customer_id = %s
  AND e.ts >= timestamptz 'epoch' + %s * interval '1 millisecond'
  AND e.ts < timestamptz 'epoch' + %s * interval '1 millisecond'
  AND e.event_type = %s
  AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = e.id);

-- name: delete_rollup
DELETE FROM rollups WHERE customer_id = %s AND bucket = %s AND event_type = %s;

-- name: replace_rollup
INSERT INTO rollups (customer_id, bucket, event_type, count, total, minimum, maximum,
                     first_ts, first_seq, first_value, last_ts, last_seq, last_value)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (customer_id, bucket, event_type) DO UPDATE SET
    count = excluded.count, total = excluded.total,
    minimum = excluded.minimum, maximum = excluded.maximum,
    first_ts = excluded.first_ts, first_seq = excluded.first_seq,
    first_value = excluded.first_value,
    last_ts = excluded.last_ts, last_seq = excluded.last_seq, last_value = excluded.last_value;

-- name: note_late_events
-- In every ingest transaction, after next_seqs took the shared ingest lock: the stored
-- (customer, bucket) pairs that fall before a period's close horizon.
INSERT INTO late_changes (period, customer_id, bucket)
SELECT h.period, p.customer_id, p.bucket
FROM close_horizons h
JOIN unnest(%s::text[], %s::bigint[]) AS p (customer_id, bucket)
  ON p.bucket * 900000 < h.closing_until
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING;

-- name: insert_late_change
INSERT INTO late_changes (period, customer_id, bucket) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING;

-- name: raise_close_horizon
INSERT INTO close_horizons (period, closing_until) VALUES (%s, %s)
ON CONFLICT (period) DO UPDATE
SET closing_until = greatest(close_horizons.closing_until, excluded.closing_until);

-- name: ingest_barrier
-- Waits until every ingest transaction holding the shared lock has ended.
SELECT pg_advisory_xact_lock(hashtext('meterd.ingest.' || current_schema()));

-- name: claim_late_changes
SELECT period, customer_id, bucket FROM late_changes
ORDER BY period, customer_id, bucket
LIMIT %s
FOR UPDATE SKIP LOCKED;

-- name: delete_late_change
DELETE FROM late_changes WHERE period = %s AND customer_id = %s AND bucket = %s;

-- name: watermarks
SELECT period, closed_until FROM period_watermarks;

-- name: close_horizons
SELECT period, closing_until FROM close_horizons;

-- name: upsert_record
INSERT INTO aggregations (id, customer_id, period, period_key, period_start, period_end,
                          status, totals, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status,
    totals = excluded.totals,
    updated_at = excluded.updated_at
WHERE aggregations.status = 'open'
RETURNING id;

-- name: delete_open_aggregation
DELETE FROM aggregations WHERE id = %s AND status = 'open';

-- name: insert_revision
INSERT INTO aggregation_revisions (aggregation_id, revision, totals, created_at)
VALUES (%s, %s, %s, %s);

-- name: first_revision
SELECT totals::text, updated_at FROM aggregations WHERE id = %s AND status = 'closed';

-- name: later_revisions
SELECT revision, totals::text, created_at FROM aggregation_revisions
WHERE aggregation_id = %s ORDER BY revision;

-- name: insert_delivery
INSERT INTO deliveries (message_id, aggregation_id, url, payload, status, next_attempt_at,
                        created_at, updated_at)
VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s)
ON CONFLICT (message_id) DO NOTHING;

-- name: api_key_by_hash
SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE key_hash = %s;

-- name: bucket_level_metadata
-- The metadata of one customer's events of a time-weighted meter in one bucket, voided
-- ones included: the series (groups) whose levels a change there may alter.
SELECT metadata::text FROM events
WHERE event_type = %(event_type)s AND customer_id = %(customer)s
  AND ts >= timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond'
  AND ts < timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond';

-- name: later_levels
-- One customer's active events of a time-weighted meter after (ts, seq), oldest first:
-- where a changed level ends.
SELECT (extract(epoch FROM ts) * 1000)::bigint, seq, metadata::text FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = %(event_type)s AND customer_id = %(customer)s
  AND (ts, seq) > (timestamptz 'epoch' + %(ts)s * interval '1 millisecond', %(seq)s)
ORDER BY ts, seq
LIMIT %(limit)s;
