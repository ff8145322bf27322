-- name: next_seqs
-- Also takes the shared ingest lock: a close waits for in-flight ingest behind it
-- (ingest_barrier in corrections.sql), so no late event goes unnoticed.
SELECT nextval('events_seq')
FROM (SELECT pg_advisory_xact_lock_shared(hashtext('meterd.ingest.' || current_schema()))) AS ingest_lock,
     generate_series(1, %s);

-- name: insert_events
-- Columns travel as binary arrays: psycopg builds those in C, text arrays in Python.
INSERT INTO events (seq, id, event_type, customer_id, value, metadata, ts, received_at)
SELECT seq, id, event_type, customer_id, value, metadata,
       timestamptz 'epoch' + ts * interval '1 millisecond',
       timestamptz 'epoch' + received * interval '1 millisecond'
FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::numeric[], %b::jsonb[],
            %b::bigint[], %b::bigint[])
     AS e (seq, id, event_type, customer_id, value, metadata, ts, received)
ON CONFLICT (id) DO NOTHING
RETURNING seq;

-- name: events_by_id
-- What stored ids hold, to tell a retried event from a reused id.
SELECT id, seq, event_type, customer_id, value, metadata::text,
       (extract(epoch FROM ts) * 1000)::bigint
FROM events WHERE id = ANY(%s::text[]);

-- name: delete_events
-- Only rows of the current transaction: those of a request refused for a reused id.
DELETE FROM events WHERE seq = ANY(%s::bigint[]);

-- name: upsert_rollups
INSERT INTO rollups (customer_id, bucket, event_type, count, total, minimum, maximum,
                     first_ts, first_seq, first_value, last_ts, last_seq, last_value)
SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bigint[], %b::numeric[],
                     %b::numeric[], %b::numeric[], %b::bigint[], %b::bigint[], %b::numeric[],
                     %b::bigint[], %b::bigint[], %b::numeric[])
ON CONFLICT (customer_id, bucket, event_type) DO UPDATE SET
    count = rollups.count + excluded.count,
    total = rollups.total + excluded.total,
    minimum = least(rollups.minimum, excluded.minimum),
    maximum = greatest(rollups.maximum, excluded.maximum),
    first_value = CASE WHEN (excluded.first_ts, excluded.first_seq) < (rollups.first_ts, rollups.first_seq)
                       THEN excluded.first_value ELSE rollups.first_value END,
    first_seq = CASE WHEN (excluded.first_ts, excluded.first_seq) < (rollups.first_ts, rollups.first_seq)
                     THEN excluded.first_seq ELSE rollups.first_seq END,
    first_ts = least(rollups.first_ts, excluded.first_ts),
    last_value = CASE WHEN (excluded.last_ts, excluded.last_seq) > (rollups.last_ts, rollups.last_seq)
                      THEN excluded.last_value ELSE rollups.last_value END,
    last_seq = CASE WHEN (excluded.last_ts, excluded.last_seq) > (rollups.last_ts, rollups.last_seq)
                    THEN excluded.last_seq ELSE rollups.last_seq END,
    last_ts = greatest(rollups.last_ts, excluded.last_ts);

-- name: customer_rollups
SELECT customer_id, event_type, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value
FROM rollups
WHERE customer_id = %s AND bucket >= %s AND bucket < %s;

-- name: period_rollups
SELECT customer_id, event_type, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value
FROM rollups
WHERE bucket >= %s AND bucket < %s;

-- name: first_bucket_from
SELECT min(bucket) FROM rollups WHERE bucket >= %s;

-- name: watermark
SELECT closed_until FROM period_watermarks WHERE period = %s;

-- name: try_lock_period
SELECT pg_try_advisory_xact_lock(hashtext('meterd.close.' || current_schema() || '.' || %s));

-- name: advance_watermark
INSERT INTO period_watermarks (period, closed_until) VALUES (%s, %s)
ON CONFLICT (period) DO UPDATE
SET closed_until = greatest(period_watermarks.closed_until, excluded.closed_until);

-- name: upsert_aggregations
INSERT INTO aggregations (id, customer_id, period, period_key, period_start, period_end,
                          status, totals, created_at, updated_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[],
                     %s::bigint[], %s::text[], %s::jsonb[], %s::bigint[], %s::bigint[])
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status,
    totals = excluded.totals,
    updated_at = excluded.updated_at
WHERE aggregations.status = 'open'
RETURNING id;

-- name: delete_rollups
DELETE FROM rollups;

-- name: events_from_seq
SELECT seq, customer_id, event_type, value, (extract(epoch FROM ts) * 1000)::bigint
FROM events
WHERE seq > %s AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
ORDER BY seq LIMIT %s;

-- name: insert_deliveries
INSERT INTO deliveries (message_id, aggregation_id, url, payload, status, next_attempt_at,
                        created_at, updated_at)
SELECT m, a, u, p, 'pending', %s, %s, %s
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[]) AS o (m, a, u, p)
ON CONFLICT (message_id) DO NOTHING;

-- name: claim_deliveries
UPDATE deliveries SET claimed_until = %s
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= %s
      AND (claimed_until IS NULL OR claimed_until < %s)
    ORDER BY next_attempt_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, message_id, aggregation_id, url, payload, status, attempts, retry_from,
          next_attempt_at, dry_run, last_error, created_at, updated_at, delivered_at;

-- name: insert_attempt
INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, response, error)
VALUES (%s, %s, %s, %s, %s, %s);

-- name: update_delivery_after_attempt
UPDATE deliveries SET
    attempts = attempts + 1,
    status = %s,
    next_attempt_at = %s,
    claimed_until = NULL,
    dry_run = %s,
    last_error = %s,
    updated_at = %s,
    delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END
WHERE id = %s;

-- name: get_delivery
SELECT id, message_id, aggregation_id, url, payload, status, attempts, retry_from,
       next_attempt_at, dry_run, last_error, created_at, updated_at, delivered_at
FROM deliveries WHERE id = %s;

-- name: delivery_attempts
SELECT attempted_at, status_code, latency_ms, response, error
FROM delivery_attempts WHERE delivery_id = %s ORDER BY id;

-- name: redeliver
UPDATE deliveries SET status = 'pending', next_attempt_at = %s, retry_from = attempts,
                      claimed_until = NULL, updated_at = %s
WHERE id = %s;

-- name: insert_api_key
INSERT INTO api_keys (name, prefix, key_hash, created_at) VALUES (%s, %s, %s, %s)
RETURNING id, name, prefix, created_at, revoked_at;

-- name: list_api_keys
SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL;

-- name: active_api_key_hashes
SELECT key_hash FROM api_keys WHERE revoked_at IS NULL;

-- name: outbox_backlog
SELECT count(*), min(created_at) FROM deliveries WHERE status = 'pending';

-- name: meter_events
-- One event type's raw events in [from, to), optionally of some customers only
-- (/*customers*/ becomes "AND customer_id = ANY(...)").
SELECT customer_id, (extract(epoch FROM ts) * 1000)::bigint, seq, value, metadata::text
FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = %(event_type)s
  AND ts >= timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond'
  AND ts < timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond' /*customers*/;

-- name: levels_before
-- The last event before :before_ms of each customer and each distinct value of the
-- meter's groupBy keys (/*groups*/ adds metadata -> key for each).
SELECT DISTINCT ON (customer_id /*groups*/)
       customer_id, (extract(epoch FROM ts) * 1000)::bigint, seq, value, metadata::text
FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = %(event_type)s
  AND ts < timestamptz 'epoch' + %(before_ms)s * interval '1 millisecond' /*customers*/
ORDER BY customer_id /*groups*/, ts DESC, seq DESC;

-- name: bucket_partials
-- One event type's 15-minute partials in [from, to) (bucket numbers), with the bucket
-- where customer_rollups has the event type.
SELECT customer_id, bucket, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value
FROM rollups
WHERE event_type = %(event_type)s AND bucket >= %(from_ms)s AND bucket < %(to_ms)s /*customers*/;

-- name: meter_count
-- One customer's events of one meter in [from, to) (the meter's partial index covers it).
SELECT count(*) FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = %(event_type)s AND customer_id = %(customer)s
  AND ts >= timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond'
  AND ts < timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond';

-- name: meter_nth_value
-- The value at 0-based rank :offset, smallest first: a nearest-rank percentile.
SELECT value FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = %(event_type)s AND customer_id = %(customer)s
  AND ts >= timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond'
  AND ts < timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond'
ORDER BY value LIMIT 1 OFFSET %(offset)s;

-- name: meter_distinct
-- Events and distinct values of one metadata key, compared as group text: a string as
-- is, a number as its shortest text (1.0 is "1"), true/false; null is none.
SELECT count(*), count(DISTINCT CASE jsonb_typeof(metadata -> %(key)s)
    WHEN 'string' THEN metadata ->> %(key)s
    WHEN 'number' THEN trim_scale((metadata ->> %(key)s)::numeric)::text
    WHEN 'boolean' THEN metadata ->> %(key)s
END)
FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = %(event_type)s AND customer_id = %(customer)s
  AND ts >= timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond'
  AND ts < timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond';

-- name: meter_level_area
-- The exact integral of one customer's level over [from, to) (numeric arithmetic): each
-- level holds until the next event; the one in force at from is the last event before.
WITH bounds AS (
    SELECT timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond' AS lo,
           timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond' AS hi
), before AS (
    SELECT value FROM events, bounds
    WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
      AND event_type = %(event_type)s AND customer_id = %(customer)s AND ts < bounds.lo
    ORDER BY ts DESC, seq DESC LIMIT 1
), levels AS (
    SELECT %(from_ms)s::bigint AS ts, -1::bigint AS seq, value FROM before
    UNION ALL
    SELECT (extract(epoch FROM ts) * 1000)::bigint, seq, value FROM events, bounds
    WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
      AND event_type = %(event_type)s AND customer_id = %(customer)s
      AND ts >= bounds.lo AND ts < bounds.hi
)
SELECT coalesce(sum(value * (next_ts - ts)), 0), count(*),
       count(*) FILTER (WHERE seq = -1), count(*) FILTER (WHERE seq = -1 AND value != 0)
FROM (SELECT ts, seq, value, lead(ts, 1, %(to_ms)s::bigint) OVER (ORDER BY ts, seq) AS next_ts
      FROM levels) AS held;

-- name: window_totals
-- One event type's rollups folded per window (and customer, when /*customer*/ adds it).
SELECT w.place /*customer*/, sum(r.count), sum(r.total), min(r.minimum), max(r.maximum)
FROM unnest(%(places)s::int[], %(los)s::bigint[], %(his)s::bigint[]) AS w (place, lo, hi)
JOIN rollups AS r ON r.bucket >= w.lo AND r.bucket < w.hi
WHERE r.event_type = %(event_type)s /*customers*/
GROUP BY w.place /*customer*/;

-- name: group_totals
-- One meter's raw events folded per window, [customer] and group, in SQL.
-- width_bucket over the window starts gives each event's window (1-based);
-- /*groups*/ the group text of each groupBy key, /*filters*/ and /*customers*/
-- optional conditions.
SELECT width_bucket(ts, %(starts)s::timestamptz[]) AS place /*customer*/ /*groups*/,
       count(*), sum(value), min(value), max(value)
FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = %(event_type)s
  AND ts >= timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond'
  AND ts < timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond'
  /*customers*/ /*filters*/
GROUP BY place /*customer*/ /*groups*/;
