-- The current schema, applied to fresh databases; every change here needs a migration
-- in migrations/ too (tests/integration/test_migrations.py checks they agree).
-- Same tables as the SQLite backend: raw events (source of truth; seq = arrival order),
-- API key hashes, 15-minute rollups (exact NUMERIC totals), aggregation records,
-- per-period close watermarks, and the webhook outbox with its attempts.

CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    value NUMERIC NOT NULL,
    metadata JSONB,
    ts TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE events_seq OWNED BY events.seq;
CREATE INDEX events_by_customer_time ON events (customer_id, ts, seq);
CREATE INDEX events_by_time ON events (ts, seq);

CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Every ingest updates the rows of its 15-minute buckets again and again. A fill
-- factor of 80 leaves room in each page for the new row versions, so the updates stay
-- heap-only (HOT: no new index entries) instead of moving rows to other pages.
CREATE TABLE rollups (
    customer_id TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    event_type TEXT NOT NULL,
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
    PRIMARY KEY (customer_id, bucket, event_type)
) WITH (fillfactor = 80);
CREATE INDEX rollups_by_bucket ON rollups (bucket);

CREATE TABLE aggregations (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    period TEXT NOT NULL,
    period_key TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    totals JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (customer_id, period, period_start)
);
CREATE INDEX aggregations_by_period_start ON aggregations (period_start);

CREATE TABLE period_watermarks (
    period TEXT PRIMARY KEY,
    closed_until BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    aggregation_id TEXT NOT NULL,
    url TEXT NOT NULL,
    payload BYTEA NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_from INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    claimed_until BIGINT,
    dry_run BOOLEAN NOT NULL DEFAULT FALSE,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_aggregation ON deliveries (aggregation_id);
-- The deliveries listing (newest first, by status) walks this index instead of sorting.
CREATE INDEX deliveries_by_status ON deliveries (status, id);

CREATE TABLE delivery_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    attempted_at BIGINT NOT NULL,
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
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Which plan applies from when: the latest row at or before a period's start decides
-- the period's plan (plan NULL: metered, not invoiced).
CREATE TABLE customer_plans (
    customer_id TEXT NOT NULL,
    effective_from BIGINT NOT NULL,
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
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
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
    next_attempt_at BIGINT,
    claimed_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    sent_at BIGINT,
    UNIQUE (customer_id, period, period_start, revision)
);
CREATE INDEX invoices_by_period_start ON invoices (period_start);
CREATE INDEX invoices_due ON invoices (status, next_attempt_at);

-- --- console and portal ---------------------------------------------------------
-- Console sessions and portal tokens, both stored as SHA-256 hashes of the secret.
CREATE TABLE console_sessions (
    session_hash TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

-- meters: a JSON array of the event types the token may read; NULL for all of them.
CREATE TABLE portal_tokens (
    token_hash TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    meters TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX portal_tokens_by_customer ON portal_tokens (customer_id);

-- --- corrections ---
-- Corrections and late events (DESIGN.md section 8).
-- A voided event stays in events, unchanged; this row records the correction: when,
-- why, which API key (name and display prefix, never the key), and for an amendment
-- the replacement's id and the Idempotency-Key that makes a retried amend harmless.
CREATE TABLE event_voids (
    event_id TEXT PRIMARY KEY,
    voided_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    key_name TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    replaced_by TEXT UNIQUE,
    idempotency_key TEXT UNIQUE
);

-- What changed in a period that was already closed (or is being closed): (period,
-- customer, 15-minute bucket), written by the ingest or correction transaction only for
-- events before the period's close horizon, consumed when the records are recomputed.
CREATE TABLE late_changes (
    period TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    PRIMARY KEY (period, customer_id, bucket)
);

-- Per period: a close up to closing_until may be running or done. Raised before a close
-- reads its rollups, behind a barrier that waits for in-flight ingest transactions, so an
-- event the close cannot see is always recorded in late_changes.
CREATE TABLE close_horizons (
    period TEXT PRIMARY KEY,
    closing_until BIGINT NOT NULL
);

-- Revisions 2, 3, ... of closed records (revision 1 is the aggregations row, never edited).
CREATE TABLE aggregation_revisions (
    aggregation_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    totals JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (aggregation_id, revision)
);

-- --- entitlements and usage alerts ------------------------------------------------
-- Customers with a limit (their own `limits` or a plan with allowances): the only ones
-- whose ingest records a touch below, so others pay one lookup per transaction.
CREATE TABLE alert_watched (
    customer_id TEXT PRIMARY KEY
);

-- What ingest touched since the alert check last looked: one row per watched
-- (customer, meter), written in the events' transaction. version grows with each touch,
-- so the check removes a row only if no ingest touched it again while it was read.
CREATE TABLE alert_touched (
    customer_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (customer_id, event_type)
);

-- One row per threshold crossed: the unique key makes `usage.threshold_crossed` once per
-- customer, meter, period and threshold; its outbox rows commit with it.
CREATE TABLE usage_alerts (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    meter TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    usage TEXT NOT NULL,
    usage_limit TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (customer_id, meter, period, period_start, threshold)
);

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
) WITH (fillfactor = 80);
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
