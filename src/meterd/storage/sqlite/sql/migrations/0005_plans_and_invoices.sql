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
