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
