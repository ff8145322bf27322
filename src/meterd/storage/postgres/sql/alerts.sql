-- Entitlements and usage alerts (storage/postgres/alerts.py).

-- name: any_watched
SELECT EXISTS (SELECT 1 FROM alert_watched);

-- name: watched_among
SELECT customer_id FROM alert_watched WHERE customer_id = ANY(%s);

-- name: touch
INSERT INTO alert_touched (customer_id, event_type)
SELECT * FROM unnest(%s::text[], %s::text[])
ON CONFLICT (customer_id, event_type) DO UPDATE SET version = alert_touched.version + 1;

-- name: watch
INSERT INTO alert_watched (customer_id) VALUES (%s) ON CONFLICT DO NOTHING;

-- name: unwatch
DELETE FROM alert_watched WHERE customer_id = %s;

-- name: watch_customers_with_limits
INSERT INTO alert_watched (customer_id)
SELECT id FROM customers WHERE limits IS NOT NULL AND limits != '{}'
UNION
SELECT customer_id FROM customer_plans WHERE plan = ANY(%s)
ON CONFLICT DO NOTHING;

-- name: unwatch_customers_without_limits
DELETE FROM alert_watched WHERE customer_id NOT IN (
    SELECT id FROM customers WHERE limits IS NOT NULL AND limits != '{}'
    UNION
    SELECT customer_id FROM customer_plans WHERE plan = ANY(%s) AND plan IS NOT NULL
);

-- name: count_watched
SELECT count(*) FROM alert_watched;

-- name: touched_meters
SELECT customer_id, event_type, version FROM alert_touched
WHERE (customer_id, event_type) > (%s, %s)
ORDER BY customer_id, event_type LIMIT %s;

-- name: forget_touch
DELETE FROM alert_touched WHERE customer_id = %s AND event_type = %s AND version = %s;

-- name: insert_alert
INSERT INTO usage_alerts (id, customer_id, meter, period, period_start, period_end, threshold,
                          usage, usage_limit, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: list_alerts
SELECT customer_id, meter, period, period_start, period_end, threshold, usage, usage_limit,
       created_at
FROM usage_alerts WHERE (%s::text IS NULL OR customer_id = %s)
ORDER BY created_at DESC, id DESC LIMIT %s;
