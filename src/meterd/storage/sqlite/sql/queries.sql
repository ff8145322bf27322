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

-- name: upsert_rollup
INSERT INTO rollups (customer_id, bucket, event_type, count, total, minimum, maximum,
                     first_ts, first_seq, first_value, last_ts, last_seq, last_value)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (customer_id, bucket, event_type) DO UPDATE SET
    count = count + excluded.count,
    -- Integers that cannot overflow add in SQL; anything else calls back into Python.
    total = iif(typeof(total) = 'integer' AND typeof(excluded.total) = 'integer'
                AND total BETWEEN -4611686018427387904 AND 4611686018427387903
                AND excluded.total BETWEEN -4611686018427387904 AND 4611686018427387903,
                total + excluded.total, exact_add(total, excluded.total)),
    minimum = min(minimum, excluded.minimum),
    maximum = max(maximum, excluded.maximum),
    first_value = iif((excluded.first_ts, excluded.first_seq) < (first_ts, first_seq),
                      excluded.first_value, first_value),
    first_seq = iif((excluded.first_ts, excluded.first_seq) < (first_ts, first_seq),
                    excluded.first_seq, first_seq),
    first_ts = min(first_ts, excluded.first_ts),
    last_value = iif((excluded.last_ts, excluded.last_seq) > (last_ts, last_seq),
                     excluded.last_value, last_value),
    last_seq = iif((excluded.last_ts, excluded.last_seq) > (last_ts, last_seq),
                   excluded.last_seq, last_seq),
    last_ts = max(last_ts, excluded.last_ts);

-- name: customer_span
-- Prefixed to the customer_* queries: one customer's partials over [start, end) in
-- 15-minute buckets, with the whole compacted days in between read from daily_rollups
-- (days first_day..end_day-1 cover buckets fine_end..fine_start-1).
WITH span AS (
    SELECT * FROM rollups
    WHERE customer_id = :customer AND bucket >= :start AND bucket < :fine_end
    UNION ALL
    SELECT * FROM daily_rollups
    WHERE customer_id = :customer AND bucket >= :first_day AND bucket < :end_day
    UNION ALL
    SELECT * FROM rollups
    WHERE customer_id = :customer AND bucket >= :fine_start AND bucket < :end
)

-- name: customer_rollups
SELECT customer_id, event_type, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value
FROM span;

-- name: compacted_days
SELECT days_until FROM rollup_compaction;

-- name: set_compacted_days
INSERT INTO rollup_compaction (id, days_until) VALUES (1, ?)
ON CONFLICT (id) DO UPDATE SET days_until = excluded.days_until;

-- name: delete_daily_rollups
DELETE FROM daily_rollups;

-- name: reset_compaction
DELETE FROM rollup_compaction;

-- name: period_rollups
SELECT customer_id, event_type, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value
FROM rollups
WHERE bucket >= ? AND bucket < ?;

-- name: first_bucket_from
SELECT min(bucket) FROM rollups WHERE bucket >= ?;

-- name: watermark
SELECT closed_until FROM period_watermarks WHERE period = ?;

-- name: advance_watermark
INSERT INTO period_watermarks (period, closed_until) VALUES (?, ?)
ON CONFLICT (period) DO UPDATE SET closed_until = max(closed_until, excluded.closed_until);

-- name: upsert_aggregation
INSERT INTO aggregations (id, customer_id, period, period_key, period_start, period_end,
                          status, totals, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status,
    totals = excluded.totals,
    updated_at = excluded.updated_at
WHERE aggregations.status = 'open';

-- name: delete_rollups
DELETE FROM rollups;

-- name: events_from_seq
-- Voided events count in no rollup.
SELECT seq, customer_id, event_type, value, ts FROM events
WHERE seq > ? AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
ORDER BY seq LIMIT ?;

-- name: closed_aggregation_ids
SELECT id FROM aggregations WHERE period = ? AND period_start = ? AND status = 'closed';

-- name: insert_delivery
INSERT INTO deliveries (message_id, aggregation_id, url, payload, status, next_attempt_at,
                        created_at, updated_at)
VALUES (?, ?, ?, ?, 'pending', ?, ?, ?);

-- name: claim_deliveries
UPDATE deliveries SET claimed_until = ?
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= ?
      AND (claimed_until IS NULL OR claimed_until < ?)
    ORDER BY next_attempt_at
    LIMIT ?
)
RETURNING id, message_id, aggregation_id, url, payload, status, attempts, retry_from,
          next_attempt_at, dry_run, last_error, created_at, updated_at, delivered_at;

-- name: release_claims
UPDATE deliveries SET claimed_until = NULL WHERE claimed_until IS NOT NULL;

-- name: insert_attempt
INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, response, error)
VALUES (?, ?, ?, ?, ?, ?);

-- name: update_delivery_after_attempt
UPDATE deliveries SET
    attempts = attempts + 1,
    status = ?,
    next_attempt_at = ?,
    claimed_until = NULL,
    dry_run = ?,
    last_error = ?,
    updated_at = ?,
    delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END
WHERE id = ?;

-- name: get_delivery
SELECT id, message_id, aggregation_id, url, payload, status, attempts, retry_from,
       next_attempt_at, dry_run, last_error, created_at, updated_at, delivered_at
FROM deliveries WHERE id = ?;

-- name: delivery_attempts
SELECT attempted_at, status_code, latency_ms, response, error
FROM delivery_attempts WHERE delivery_id = ? ORDER BY id;

-- name: redeliver
UPDATE deliveries SET status = 'pending', next_attempt_at = ?, retry_from = attempts,
                      claimed_until = NULL, updated_at = ?
WHERE id = ?;

-- name: customer_totals
-- One row per event type, folded in SQLite rather than in Python: exact integer totals
-- are summed here, decimal ones concatenated for Python to add.
SELECT event_type, sum(count),
       sum(iif(typeof(total) = 'integer', total, 0)),
       group_concat(iif(typeof(total) = 'text', total, NULL), ' '),
       min(minimum), max(maximum)
FROM span
GROUP BY event_type;

-- name: customer_firsts
-- The bare columns come from the row holding min(first_ts). That row is unique: a
-- rollup row's events all lie in its own bucket, so no two rows share a first_ts.
SELECT event_type, first_seq, first_value, min(first_ts)
FROM span
GROUP BY event_type;

-- name: customer_lasts
SELECT event_type, last_seq, last_value, max(last_ts)
FROM span
GROUP BY event_type;

-- name: outbox_backlog
SELECT count(*), min(created_at) FROM deliveries WHERE status = 'pending';

-- name: meter_events
-- One event type's raw events in [from, to), optionally of some customers only
-- (/*customers*/ becomes "AND customer_id IN (...)").
SELECT customer_id, ts, seq, value, metadata FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = :event_type AND ts >= :from_ms AND ts < :to_ms /*customers*/;

-- name: levels_before
-- The last event before :before_ms of each customer and each distinct value of the
-- meter's groupBy keys (/*groups*/ adds json_type and json_extract of each).
SELECT customer_id, ts, seq, value, metadata FROM (
    SELECT customer_id, ts, seq, value, metadata,
           row_number() OVER (PARTITION BY customer_id /*groups*/ ORDER BY ts DESC, seq DESC)
               AS place
    FROM events
    WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
      AND event_type = :event_type AND ts < :before_ms /*customers*/
)
WHERE place = 1;

-- name: bucket_partials
-- One event type's 15-minute partials in [from, to) (bucket numbers), with the bucket
-- where customer_rollups has the event type.
SELECT customer_id, bucket, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value
FROM rollups
WHERE event_type = :event_type AND bucket >= :from_ms AND bucket < :to_ms /*customers*/;

-- name: meter_count
-- One customer's events of one meter in [from, to) (the meter's partial index covers it).
SELECT count(*) FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = :event_type AND customer_id = :customer AND ts >= :from_ms AND ts < :to_ms;

-- name: meter_nth_value
-- The value at 0-based rank :offset, smallest first: a nearest-rank percentile.
SELECT value FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = :event_type AND customer_id = :customer AND ts >= :from_ms AND ts < :to_ms
ORDER BY value LIMIT 1 OFFSET :offset;

-- name: meter_distinct
-- Events and distinct values of the metadata key at :path, compared as group text: a
-- string as is, a number as its shortest text (1.0 is "1"), true/false; null is none.
SELECT count(*), count(DISTINCT CASE json_type(metadata, :path)
    WHEN 'text' THEN json_extract(metadata, :path)
    WHEN 'integer' THEN CAST(json_extract(metadata, :path) AS TEXT)
    WHEN 'real' THEN iif(json_extract(metadata, :path)
                             = CAST(json_extract(metadata, :path) AS INTEGER),
                         CAST(CAST(json_extract(metadata, :path) AS INTEGER) AS TEXT),
                         CAST(json_extract(metadata, :path) AS TEXT))
    WHEN 'true' THEN 'true'
    WHEN 'false' THEN 'false'
END)
FROM events
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = :event_type AND customer_id = :customer AND ts >= :from_ms AND ts < :to_ms;

-- name: meter_level_area
-- The integral of one customer's level over [from, to): each level holds until the next
-- event; the one in force at :from_ms is the last event before it. Also the events
-- inside, whether a level was held before, and how many levels are not integers (the
-- caller then integrates exactly in Python instead).
WITH before AS (
    SELECT value FROM events
    WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
      AND event_type = :event_type AND customer_id = :customer AND ts < :from_ms
    ORDER BY ts DESC, seq DESC LIMIT 1
), levels AS (
    SELECT :from_ms AS ts, -1 AS seq, value FROM before
    UNION ALL
    SELECT ts, seq, value FROM events
    WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
      AND event_type = :event_type AND customer_id = :customer
      AND ts >= :from_ms AND ts < :to_ms
)
SELECT total(value * (next_ts - ts)), sum(value * (next_ts - ts)), count(*),
       sum(seq = -1), sum(seq = -1 AND value != 0), sum(typeof(value) != 'integer')
FROM (SELECT ts, seq, value, lead(ts, 1, :to_ms) OVER (ORDER BY ts, seq) AS next_ts
      FROM levels);

-- name: window_totals
-- One event type's partials folded per window (and customer, when /*customer*/ adds
-- it): count, exact integer total, decimal totals to add in Python, min, max.
-- /*fine*/ and /*days*/ are VALUES rows (place, first bucket, end bucket) of the
-- 15-minute edges (rollups) and the whole compacted UTC days (daily_rollups).
WITH fine (place, lo, hi) AS (VALUES /*fine*/),
     days (place, lo, hi) AS (VALUES /*days*/),
     span AS (
    SELECT fine.place, r.customer_id, r.count, r.total, r.minimum, r.maximum
    FROM fine JOIN rollups AS r ON r.bucket >= fine.lo AND r.bucket < fine.hi
    WHERE r.event_type = :event_type /*customers*/
    UNION ALL
    SELECT days.place, r.customer_id, r.count, r.total, r.minimum, r.maximum
    FROM days JOIN daily_rollups AS r ON r.bucket >= days.lo AND r.bucket < days.hi
    WHERE r.event_type = :event_type /*customers*/
)
SELECT place /*customer*/, sum(count),
       sum(iif(typeof(total) = 'integer', total, 0)),
       group_concat(iif(typeof(total) = 'text', total, NULL), ' '),
       min(minimum), max(maximum)
FROM span
GROUP BY place /*customer*/;

-- name: group_totals
-- One meter's raw events folded per window, [customer] and group, in SQL:
-- count, exact integer total, other values as round-trip text for Python to add,
-- min, max. /*place*/ gives each event's window (arithmetic or a CASE), /*groups*/ the
-- group text of each groupBy key, /*filters*/ and /*customers*/ optional conditions;
-- the meter's partial index (named by /*index*/) covers every column read. A meter
-- without one runs it with no INDEXED BY: events_by_time or events_by_customer_time.
SELECT /*place*/ AS place /*customer*/ /*groups*/, count(*),
       sum(iif(typeof(value) = 'integer', value, 0)),
       group_concat(iif(typeof(value) = 'integer', NULL, printf('%!.17g', value)), ' '),
       min(value), max(value)
FROM events INDEXED BY /*index*/
WHERE NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
  AND event_type = :event_type AND ts >= :from_ms AND ts < :to_ms /*customers*/ /*filters*/
GROUP BY place /*customer*/ /*groups*/;
