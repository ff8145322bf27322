-- name: group_meters
SELECT event_type, group_by, kind, property, built_seq, target_seq FROM group_meters;

-- name: upsert_group_rollup
INSERT INTO group_rollups (customer_id, event_type, bucket, group_key, count, total,
                           minimum, maximum, first_ts, first_seq, first_value,
                           last_ts, last_seq, last_value, area, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (customer_id, event_type, bucket, group_key) DO UPDATE SET
    count = count + excluded.count,
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
    last_ts = max(last_ts, excluded.last_ts),
    -- Levels are never merged here (their buckets are folded again instead).
    area = NULL,
    payload = NULL;

-- name: register_group_meter
INSERT INTO group_meters (event_type, group_by, kind, property, built_seq, target_seq)
VALUES (?, ?, ?, ?, 0, ?)
ON CONFLICT (event_type) DO UPDATE SET
    group_by = excluded.group_by, kind = excluded.kind, property = excluded.property,
    built_seq = 0,
    target_seq = excluded.target_seq;

-- name: forget_group_meter
DELETE FROM group_meters WHERE event_type = ?;

-- name: delete_group_rollups_of
DELETE FROM group_rollups WHERE event_type = ?;

-- name: delete_daily_group_rollups_of
DELETE FROM daily_group_rollups WHERE event_type = ?;

-- name: delete_all_group_rollups
DELETE FROM group_rollups;

-- name: delete_all_daily_group_rollups
DELETE FROM daily_group_rollups;

-- name: restart_group_builds
UPDATE group_meters SET built_seq = 0, target_seq = ?;

-- name: set_built_seq
UPDATE group_meters SET built_seq = ? WHERE event_type = ?;

-- name: group_build_events
-- The active events of one grouped meter with seq in (after, until], oldest first.
SELECT seq, id, event_type, customer_id, value, metadata, ts FROM events
WHERE event_type = ? AND seq > ? AND seq <= ?
  AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
ORDER BY seq LIMIT ?;

-- name: group_bucket_events
-- One (customer, type, bucket)'s active events, for folding its group rollups again.
SELECT seq, id, event_type, customer_id, value, metadata, ts FROM events
WHERE customer_id = ? AND ts >= ? AND ts < ? AND event_type = ?
  AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id);

-- name: delete_group_bucket
DELETE FROM group_rollups WHERE customer_id = ? AND event_type = ? AND bucket = ?;

-- name: delete_daily_group_day
DELETE FROM daily_group_rollups WHERE customer_id = ? AND event_type = ? AND bucket = ?;

-- name: group_rollups_between
SELECT customer_id, event_type, bucket, group_key, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value, area, payload
FROM group_rollups WHERE bucket >= ? AND bucket < ?;

-- name: customer_group_rollups_between
SELECT customer_id, event_type, bucket, group_key, count, total, minimum, maximum,
       first_ts, first_seq, first_value, last_ts, last_seq, last_value, area, payload
FROM group_rollups
WHERE customer_id = ? AND event_type = ? AND bucket >= ? AND bucket < ?;

-- name: group_window_totals
-- A grouped meter's group rollups folded per window, [customer] and group, in SQL:
-- /*fine*/ and /*days*/ are VALUES rows (place, first bucket, end bucket) of
-- 15-minute and whole compacted UTC-day spans; /*dims*/ the stored group (group_key),
-- which Python folds into the wanted dimensions.
WITH fine (place, lo, hi) AS (VALUES /*fine*/),
     days (place, lo, hi) AS (VALUES /*days*/),
     span AS (
    SELECT fine.place, g.customer_id, g.group_key, g.count, g.total, g.minimum, g.maximum
    FROM fine JOIN group_rollups AS g
      ON g.event_type = :event_type AND g.bucket >= fine.lo AND g.bucket < fine.hi
    WHERE 1 /*customers*/
    UNION ALL
    SELECT days.place, g.customer_id, g.group_key, g.count, g.total, g.minimum, g.maximum
    FROM days JOIN daily_group_rollups AS g
      ON g.event_type = :event_type AND g.bucket >= days.lo AND g.bucket < days.hi
    WHERE 1 /*customers*/
)
SELECT place /*customer*/ /*dims*/, sum(count),
       sum(iif(typeof(total) = 'integer', total, 0)),
       group_concat(iif(typeof(total) = 'text', total, NULL), ' '),
       min(minimum), max(maximum)
FROM span
WHERE 1 /*filters*/
GROUP BY place /*customer*/ /*dims*/;

-- name: level_span
-- A time_weighted_avg meter's rows over a span: /*fine*/ and /*days*/ as in
-- group_window_totals (one place each), ordered for folding in time.
WITH fine (place, lo, hi) AS (VALUES /*fine*/),
     days (place, lo, hi) AS (VALUES /*days*/)
SELECT g.customer_id, g.group_key, g.count, g.first_ts, g.first_seq, g.first_value,
       g.last_ts, g.last_seq, g.last_value, g.area
FROM fine JOIN group_rollups AS g
  ON g.event_type = :event_type AND g.bucket >= fine.lo AND g.bucket < fine.hi
WHERE 1 /*customers*/
UNION ALL
SELECT g.customer_id, g.group_key, g.count, g.first_ts, g.first_seq, g.first_value,
       g.last_ts, g.last_seq, g.last_value, g.area
FROM days JOIN daily_group_rollups AS g
  ON g.event_type = :event_type AND g.bucket >= days.lo AND g.bucket < days.hi
WHERE 1 /*customers*/;

-- name: levels_before_bucket
-- Each series' last level before a bucket: the bare last_value comes from the row
-- holding max(last_ts) (rows are disjoint buckets, so that row is unique).
SELECT g.customer_id, g.group_key, g.last_value, max(g.last_ts)
FROM group_rollups AS g
WHERE g.event_type = :event_type AND g.bucket < :bucket /*customers*/
GROUP BY g.customer_id, g.group_key;

-- name: payload_span
-- A percentile or unique_count meter's rows over a span (as level_span).
WITH fine (place, lo, hi) AS (VALUES /*fine*/),
     days (place, lo, hi) AS (VALUES /*days*/)
SELECT g.customer_id, g.group_key, g.count, g.payload
FROM fine JOIN group_rollups AS g
  ON g.event_type = :event_type AND g.bucket >= fine.lo AND g.bucket < fine.hi
WHERE 1 /*customers*/
UNION ALL
SELECT g.customer_id, g.group_key, g.count, g.payload
FROM days JOIN daily_group_rollups AS g
  ON g.event_type = :event_type AND g.bucket >= days.lo AND g.bucket < days.hi
WHERE 1 /*customers*/;
