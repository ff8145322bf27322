-- name: group_meters
SELECT event_type, group_by, kind, property, built_seq, target_seq FROM group_meters;

-- name: share_group_meters
SELECT event_type, group_by, kind, property, built_seq, target_seq FROM group_meters
WHERE event_type = ANY(%s::text[]) ORDER BY event_type FOR SHARE;

-- name: upsert_group_rollups
INSERT INTO group_rollups (customer_id, event_type, bucket, group_key, count, total,
                           minimum, maximum, first_ts, first_seq, first_value,
                           last_ts, last_seq, last_value, area, payload)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::bigint[],
                     %b::numeric[], %b::numeric[], %b::numeric[], %b::bigint[], %b::bigint[],
                     %b::numeric[], %b::bigint[], %b::bigint[], %b::numeric[], %b::numeric[],
                     %b::bytea[])
ON CONFLICT (customer_id, event_type, bucket, group_key) DO UPDATE SET
    count = group_rollups.count + excluded.count,
    total = group_rollups.total + excluded.total,
    minimum = least(group_rollups.minimum, excluded.minimum),
    maximum = greatest(group_rollups.maximum, excluded.maximum),
    first_value = CASE WHEN (excluded.first_ts, excluded.first_seq)
                            < (group_rollups.first_ts, group_rollups.first_seq)
                       THEN excluded.first_value ELSE group_rollups.first_value END,
    first_seq = CASE WHEN (excluded.first_ts, excluded.first_seq)
                          < (group_rollups.first_ts, group_rollups.first_seq)
                     THEN excluded.first_seq ELSE group_rollups.first_seq END,
    first_ts = least(group_rollups.first_ts, excluded.first_ts),
    last_value = CASE WHEN (excluded.last_ts, excluded.last_seq)
                           > (group_rollups.last_ts, group_rollups.last_seq)
                      THEN excluded.last_value ELSE group_rollups.last_value END,
    last_seq = CASE WHEN (excluded.last_ts, excluded.last_seq)
                         > (group_rollups.last_ts, group_rollups.last_seq)
                    THEN excluded.last_seq ELSE group_rollups.last_seq END,
    last_ts = greatest(group_rollups.last_ts, excluded.last_ts),
    -- Levels are never merged here (their buckets are folded again instead).
    area = NULL,
    payload = NULL;

-- name: register_group_meter
INSERT INTO group_meters (event_type, group_by, kind, property, built_seq, target_seq)
VALUES (%s, %s, %s, %s, 0, %s)
ON CONFLICT (event_type) DO UPDATE SET
    group_by = excluded.group_by, kind = excluded.kind, property = excluded.property,
    built_seq = 0,
    target_seq = excluded.target_seq;

-- name: forget_group_meter
DELETE FROM group_meters WHERE event_type = %s;

-- name: delete_group_rollups_of
DELETE FROM group_rollups WHERE event_type = %s;

-- name: delete_all_group_rollups
DELETE FROM group_rollups;

-- name: restart_group_builds
UPDATE group_meters SET built_seq = 0, target_seq = %s;

-- name: max_event_seq
SELECT coalesce(max(seq), 0) FROM events;

-- name: lock_group_meter
SELECT built_seq, target_seq FROM group_meters WHERE event_type = %s FOR UPDATE;

-- name: set_built_seq
UPDATE group_meters SET built_seq = %s WHERE event_type = %s;

-- name: group_build_events
-- The active events of one grouped meter with seq in (after, until], oldest first.
SELECT seq, id, event_type, customer_id, value, metadata::text,
       (extract(epoch FROM ts) * 1000)::bigint
FROM events
WHERE event_type = %s AND seq > %s AND seq <= %s
  AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id)
ORDER BY seq LIMIT %s;

-- name: group_bucket_events
SELECT seq, id, event_type, customer_id, value, metadata::text,
       (extract(epoch FROM ts) * 1000)::bigint
FROM events
WHERE customer_id = %s
  AND ts >= timestamptz 'epoch' + %s * interval '1 millisecond'
  AND ts < timestamptz 'epoch' + %s * interval '1 millisecond'
  AND event_type = %s
  AND NOT EXISTS (SELECT 1 FROM event_voids v WHERE v.event_id = events.id);

-- name: delete_group_bucket
DELETE FROM group_rollups WHERE customer_id = %s AND event_type = %s AND bucket = %s;

-- name: group_window_totals
-- A grouped meter's group rollups folded per window, [customer] and group;
-- /*dims*/ the stored group (group_key, folded into the wanted dimensions in Python),
-- /*filters*/ and /*customers*/ optional conditions.
SELECT w.place /*customer*/ /*dims*/, sum(g.count), sum(g.total),
       min(g.minimum), max(g.maximum)
FROM unnest(%(places)s::int[], %(los)s::bigint[], %(his)s::bigint[]) AS w (place, lo, hi)
JOIN group_rollups AS g
  ON g.event_type = %(event_type)s AND g.bucket >= w.lo AND g.bucket < w.hi
WHERE true /*customers*/ /*filters*/
GROUP BY w.place /*customer*/ /*dims*/;

-- name: level_span
-- A time_weighted_avg meter's rows over [lo, hi) (bucket numbers).
SELECT g.customer_id, g.group_key, g.count, g.first_ts, g.first_seq, g.first_value,
       g.last_ts, g.last_seq, g.last_value, g.area
FROM group_rollups AS g
WHERE g.event_type = %(event_type)s AND g.bucket >= %(lo)s AND g.bucket < %(hi)s
  /*customers*/;

-- name: levels_before_bucket
-- Each series' last level before a bucket.
SELECT DISTINCT ON (g.customer_id, g.group_key) g.customer_id, g.group_key, g.last_value
FROM group_rollups AS g
WHERE g.event_type = %(event_type)s AND g.bucket < %(lo)s /*customers*/
ORDER BY g.customer_id, g.group_key, g.last_ts DESC, g.last_seq DESC;

-- name: payload_span
-- A percentile or unique_count meter's rows over [lo, hi) (bucket numbers).
SELECT g.customer_id, g.group_key, g.count, g.payload
FROM group_rollups AS g
WHERE g.event_type = %(event_type)s AND g.bucket >= %(lo)s AND g.bucket < %(hi)s
  /*customers*/;
