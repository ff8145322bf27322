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
