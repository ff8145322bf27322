CREATE TABLE rollups (
    customer_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    count INTEGER NOT NULL,
    total BLOB NOT NULL,
    minimum NUMERIC NOT NULL,
    maximum NUMERIC NOT NULL,
    first_ts INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    first_value NUMERIC NOT NULL,
    last_ts INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_value NUMERIC NOT NULL,
    PRIMARY KEY (customer_id, bucket, event_type)
) WITHOUT ROWID;
CREATE INDEX rollups_by_bucket ON rollups (bucket);

CREATE TABLE aggregations (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    period TEXT NOT NULL,
    period_key TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    totals TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (customer_id, period, period_start)
);
CREATE INDEX aggregations_by_period_start ON aggregations (period_start);

CREATE TABLE period_watermarks (
    period TEXT PRIMARY KEY,
    closed_until INTEGER NOT NULL
);
