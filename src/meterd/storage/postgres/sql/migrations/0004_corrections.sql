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
