-- Entitlements and usage alerts (storage/sqlite/alerts.py).

-- name: any_watched
SELECT EXISTS (SELECT 1 FROM alert_watched);

-- name: watched_among
SELECT value FROM json_each(?) WHERE value IN (SELECT customer_id FROM alert_watched);

-- name: touch
INSERT INTO alert_touched (customer_id, event_type) VALUES (?, ?)
ON CONFLICT (customer_id, event_type) DO UPDATE SET version = version + 1;

-- name: watch
INSERT OR IGNORE INTO alert_watched (customer_id) VALUES (?);

-- name: unwatch
DELETE FROM alert_watched WHERE customer_id = ?;

-- name: watch_customers_with_limits
INSERT OR IGNORE INTO alert_watched (customer_id)
SELECT id FROM customers WHERE limits IS NOT NULL AND limits != '{}'
UNION
SELECT customer_id FROM customer_plans WHERE plan IN (SELECT value FROM json_each(?));

-- name: unwatch_customers_without_limits
DELETE FROM alert_watched WHERE customer_id NOT IN (
    SELECT id FROM customers WHERE limits IS NOT NULL AND limits != '{}'
    UNION
    SELECT customer_id FROM customer_plans WHERE plan IN (SELECT value FROM json_each(?))
);

-- name: count_watched
SELECT count(*) FROM alert_watched;

-- name: touched_meters
SELECT customer_id, event_type, version FROM alert_touched
WHERE (customer_id, event_type) > (?, ?)
ORDER BY customer_id, event_type LIMIT ?;

-- name: forget_touch
DELETE FROM alert_touched WHERE customer_id = ? AND event_type = ? AND version = ?;

-- name: insert_alert
INSERT INTO usage_alerts (id, customer_id, meter, period, period_start, period_end, threshold,
                          usage, usage_limit, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: list_alerts
SELECT customer_id, meter, period, period_start, period_end, threshold, usage, usage_limit,
       created_at
FROM usage_alerts WHERE (?1 IS NULL OR customer_id = ?1)
ORDER BY created_at DESC, id DESC LIMIT ?2;
