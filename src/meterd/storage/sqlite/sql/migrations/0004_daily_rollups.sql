-- Partials per (customer, UTC day, event type), folded from rollups for every whole
-- day before rollup_compaction.days_until, so reading a long period costs one row per
-- day instead of 96. Late events for such days update both tables. Rebuilt from
-- rollups at any time (`meterd rebuild` clears both and the scheduler folds again).
CREATE TABLE daily_rollups (
    customer_id TEXT NOT NULL,
    bucket INTEGER NOT NULL, -- the UTC day number: ts // 86400000
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

-- One row: every UTC day number below days_until is in daily_rollups.
CREATE TABLE rollup_compaction (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    days_until INTEGER NOT NULL
);
