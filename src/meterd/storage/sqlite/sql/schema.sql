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
