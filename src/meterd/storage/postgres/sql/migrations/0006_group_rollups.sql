-- Group rollups (DESIGN §6): partials per (customer, event type, 15-minute bucket,
-- group) of the meters with groupBy and a foldable op, kept in the events'
-- transaction; group_key is the JSON array of the group's texts in groupBy order.
CREATE TABLE group_rollups (
    customer_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    group_key TEXT NOT NULL,
    count BIGINT NOT NULL,
    total NUMERIC NOT NULL,
    minimum NUMERIC NOT NULL,
    maximum NUMERIC NOT NULL,
    first_ts BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    first_value NUMERIC NOT NULL,
    last_ts BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    last_value NUMERIC NOT NULL,
    -- time_weighted_avg meters: the exact integral of the level from the first event
    -- to the last (value x ms); NULL for other meters.
    area NUMERIC,
    -- percentile: the bucket's values sorted, as packed doubles; unique_count: its
    -- distinct property texts sorted, as a JSON list; NULL for other meters.
    payload BYTEA,
    PRIMARY KEY (customer_id, event_type, bucket, group_key)
);
CREATE INDEX group_rollups_by_bucket ON group_rollups (event_type, bucket);

-- The meters whose group rollups are kept (grouped ones of a foldable op, and every
-- time_weighted_avg, percentile and unique_count one), with the groupBy they use. Events
-- with seq above target_seq are folded at ingest; those up to target_seq by the
-- background build, which has done every seq up to built_seq. Reads use the rows
-- only once built_seq >= target_seq; until then they fold raw events. Registering
-- waits for in-flight ingest (the ingest barrier), so every seq up to target_seq
-- is committed when the build reads it.
CREATE TABLE group_meters (
    event_type TEXT PRIMARY KEY,
    group_by TEXT NOT NULL, -- JSON array of metadata keys
    kind TEXT NOT NULL, -- sums, levels (time_weighted_avg), values (percentile), distinct
    property TEXT, -- unique_count: the metadata key counted
    built_seq BIGINT NOT NULL,
    target_seq BIGINT NOT NULL
);
