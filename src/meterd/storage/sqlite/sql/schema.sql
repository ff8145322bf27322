-- The current schema, applied to fresh databases. Every change here needs a
-- migration in migrations/ too; tests/integration/test_migrations.py checks both agree.

-- Raw events: immutable, the source of truth. seq is the arrival order.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    value NUMERIC NOT NULL,
    metadata TEXT,
    ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_by_id ON events (id);
CREATE INDEX events_by_customer_time ON events (customer_id, ts);
CREATE INDEX events_by_time ON events (ts);

-- API keys, stored as SHA-256 hashes; prefix is only for display.
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- Partial aggregates per (customer, 15-minute bucket, event type), kept in the events'
-- transaction. total is the exact sum: an INTEGER, or TEXT holding a decimal (BLOB
-- affinity keeps either as given; NUMERIC would turn "0.3" into a float).
-- Everything here can be rebuilt from events (`meterd rebuild`).
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

-- Aggregation records: one per customer, period and period start; 'closed' is final.
-- totals is the JSON of {events, eventCounts, eventCount}.
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

-- Per configured period: every period ending at or before closed_until is closed.
CREATE TABLE period_watermarks (
    period TEXT PRIMARY KEY,
    closed_until INTEGER NOT NULL
);

-- The webhook outbox: one row per (closed aggregation record, webhook), written in the
-- close's transaction. payload is the exact body, identical on every attempt;
-- message_id is the Standard Webhooks webhook-id, stable across retries. A row is
-- claimed (claimed_until) while an attempt is in flight. Retries count from retry_from,
-- which a redelivery moves to the current attempt count.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    aggregation_id TEXT NOT NULL,
    url TEXT NOT NULL,
    payload BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_from INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    claimed_until INTEGER,
    dry_run INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_aggregation ON deliveries (aggregation_id);
-- The deliveries listing (newest first, by status) walks this index instead of sorting.
CREATE INDEX deliveries_by_status ON deliveries (status, id);

-- Every attempt: when, the answer (status code, first 1 KB) or the error, how long.
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    attempted_at INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    response TEXT,
    error TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);

-- --- plans and invoices -----------------------------------------------------------
-- A customer's billing record: `limits` is kept as the JSON text it was given.
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    stripe_customer TEXT,
    limits TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Which plan applies from when: the latest row at or before a period's start decides
-- the period's plan (plan NULL: metered, not invoiced).
CREATE TABLE customer_plans (
    customer_id TEXT NOT NULL,
    effective_from INTEGER NOT NULL,
    plan TEXT,
    PRIMARY KEY (customer_id, effective_from)
);

-- One invoice record per customer plan period (and revision); amounts are exact
-- decimal text, `lines` the priced lines as JSON. The provider columns and the claim
-- are the Stripe bridge's own state, the guard against a second Stripe invoice.
CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    plan TEXT NOT NULL,
    period TEXT NOT NULL,
    period_key TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    currency TEXT NOT NULL,
    total TEXT NOT NULL,
    lines TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'sent', 'failed')),
    provider TEXT,
    provider_customer TEXT,
    provider_invoice TEXT,
    provider_items TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    claimed_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    sent_at INTEGER,
    UNIQUE (customer_id, period, period_start, revision)
);
CREATE INDEX invoices_by_period_start ON invoices (period_start);
CREATE INDEX invoices_due ON invoices (status, next_attempt_at);

-- --- console and portal ---------------------------------------------------------
-- Console sessions and portal tokens, both stored as SHA-256 hashes of the secret.
CREATE TABLE console_sessions (
    session_hash TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

-- meters: a JSON array of the event types the token may read; NULL for all of them.
CREATE TABLE portal_tokens (
    token_hash TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    meters TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX portal_tokens_by_customer ON portal_tokens (customer_id);

-- --- corrections ---
-- Corrections and late events (DESIGN.md section 8).
-- A voided event stays in events, unchanged; this row records the correction: when,
-- why, which API key (name and display prefix, never the key), and for an amendment
-- the replacement's id and the Idempotency-Key that makes a retried amend harmless.
CREATE TABLE event_voids (
    event_id TEXT PRIMARY KEY,
    voided_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    key_name TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    replaced_by TEXT UNIQUE,
    idempotency_key TEXT UNIQUE
);

-- What changed in a period that was already closed: (period, customer, 15-minute bucket),
-- written by the ingest or correction transaction only for events before the period's
-- watermark, and consumed when the touched records are recomputed.
CREATE TABLE late_changes (
    period TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    PRIMARY KEY (period, customer_id, bucket)
) WITHOUT ROWID;

-- Revisions 2, 3, ... of closed records (revision 1 is the aggregations row, never edited).
CREATE TABLE aggregation_revisions (
    aggregation_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    totals TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (aggregation_id, revision)
);

-- --- entitlements and usage alerts ------------------------------------------------
-- Customers with a limit (their own `limits` or a plan with allowances): the only ones
-- whose ingest records a touch below, so others pay one lookup per transaction.
CREATE TABLE alert_watched (
    customer_id TEXT PRIMARY KEY
) WITHOUT ROWID;

-- What ingest touched since the alert check last looked: one row per watched
-- (customer, meter), written in the events' transaction. version grows with each touch,
-- so the check removes a row only if no ingest touched it again while it was read.
CREATE TABLE alert_touched (
    customer_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (customer_id, event_type)
) WITHOUT ROWID;

-- One row per threshold crossed: the unique key makes `usage.threshold_crossed` once per
-- customer, meter, period and threshold; its outbox rows commit with it.
CREATE TABLE usage_alerts (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    meter TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    threshold REAL NOT NULL,
    usage TEXT NOT NULL,
    usage_limit TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (customer_id, meter, period, period_start, threshold)
);

-- Group rollups (DESIGN §6): partials per (customer, event type, 15-minute bucket,
-- group) of the meters with groupBy and a foldable op, kept in the events'
-- transaction; group_key is the JSON array of the group's texts in groupBy order.
CREATE TABLE group_rollups (
    customer_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    group_key TEXT NOT NULL,
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
    -- time_weighted_avg meters: the exact integral of the level from the first event
    -- to the last (value x ms), as total is stored; NULL for other meters.
    area BLOB,
    -- percentile: the bucket's values sorted, as packed doubles; unique_count: its
    -- distinct property texts sorted, as a JSON list; NULL for other meters.
    payload BLOB,
    PRIMARY KEY (customer_id, event_type, bucket, group_key)
) WITHOUT ROWID;
CREATE INDEX group_rollups_by_bucket ON group_rollups (event_type, bucket);

-- The same per UTC day, for every whole day before rollup_compaction.days_until.
CREATE TABLE daily_group_rollups (
    customer_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    bucket INTEGER NOT NULL, -- the UTC day number
    group_key TEXT NOT NULL,
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
    -- time_weighted_avg meters: the exact integral of the level from the first event
    -- to the last (value x ms), as total is stored; NULL for other meters.
    area BLOB,
    -- percentile: the bucket's values sorted, as packed doubles; unique_count: its
    -- distinct property texts sorted, as a JSON list; NULL for other meters.
    payload BLOB,
    PRIMARY KEY (customer_id, event_type, bucket, group_key)
) WITHOUT ROWID;
CREATE INDEX daily_group_rollups_by_bucket ON daily_group_rollups (event_type, bucket);

-- The meters whose group rollups are kept (grouped ones of a foldable op, and every
-- time_weighted_avg, percentile and unique_count one), with the groupBy they use. Events
-- with seq above target_seq are folded at ingest; those up to target_seq by the
-- background build, which has done every seq up to built_seq. Reads use the rows
-- only once built_seq >= target_seq; until then they fold raw events.
CREATE TABLE group_meters (
    event_type TEXT PRIMARY KEY,
    group_by TEXT NOT NULL, -- JSON array of metadata keys
    kind TEXT NOT NULL, -- sums, levels (time_weighted_avg), values (percentile), distinct
    property TEXT, -- unique_count: the metadata key counted
    built_seq INTEGER NOT NULL,
    target_seq INTEGER NOT NULL
);

-- The usage query reads whole days of all customers from daily_rollups.
CREATE INDEX daily_rollups_by_bucket ON daily_rollups (event_type, bucket);
