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
