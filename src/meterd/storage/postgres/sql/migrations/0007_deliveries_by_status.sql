-- --- deliveries listed by status -------------------------------------------------
-- GET /deliveries?status=... and the console list the newest first: with this index
-- they walk it instead of sorting every row of that status.
CREATE INDEX deliveries_by_status ON deliveries (status, id);
