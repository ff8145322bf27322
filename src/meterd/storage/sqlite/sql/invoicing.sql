-- Customers, plan assignments and invoices (storage/sqlite/invoicing.py).

-- name: upsert_customer
INSERT INTO customers (id, stripe_customer, limits, created_at, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    stripe_customer = excluded.stripe_customer,
    limits = excluded.limits,
    updated_at = excluded.updated_at;

-- name: delete_plans_from
DELETE FROM customer_plans WHERE customer_id = ? AND effective_from >= ?;

-- name: insert_plan
INSERT INTO customer_plans (customer_id, effective_from, plan) VALUES (?, ?, ?);

-- name: get_customer
SELECT id, stripe_customer, limits, created_at, updated_at FROM customers WHERE id = ?;

-- name: customer_plans
SELECT plan, effective_from FROM customer_plans WHERE customer_id = ? ORDER BY effective_from;

-- name: list_customers
SELECT id, stripe_customer, limits, created_at, updated_at FROM customers
WHERE id > ? ORDER BY id LIMIT ?;

-- name: plans_between
SELECT customer_id, plan, effective_from FROM customer_plans
WHERE customer_id BETWEEN ? AND ? ORDER BY customer_id, effective_from;

-- name: plans_in_force
SELECT customer_id, plan FROM (
    SELECT customer_id, plan,
           row_number() OVER (PARTITION BY customer_id ORDER BY effective_from DESC) AS recency
    FROM customer_plans WHERE effective_from <= ?
) WHERE recency = 1 AND plan IS NOT NULL;

-- name: insert_invoice
INSERT INTO invoices (id, customer_id, plan, period, period_key, period_start, period_end,
                      revision, currency, total, lines, status, created_at, updated_at,
                      provider, provider_customer, provider_invoice, provider_items, attempts,
                      next_attempt_at, last_error, sent_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: claim_invoices
UPDATE invoices SET claimed_until = ?
WHERE id IN (
    SELECT id FROM invoices
    WHERE status = 'draft' AND next_attempt_at <= ?
      AND (claimed_until IS NULL OR claimed_until < ?)
    ORDER BY next_attempt_at
    LIMIT ?
)
RETURNING id;

-- name: save_invoice_progress
UPDATE invoices SET provider_customer = ?, provider_items = ?, updated_at = ? WHERE id = ?;

-- name: finish_invoice_attempt
UPDATE invoices SET
    attempts = attempts + 1,
    status = ?,
    next_attempt_at = ?,
    last_error = ?,
    provider_invoice = coalesce(?, provider_invoice),
    claimed_until = NULL,
    updated_at = ?,
    sent_at = CASE WHEN status <> 'sent' AND ? = 'sent' THEN ? ELSE sent_at END
WHERE id = ? AND status <> 'sent';

-- name: resend_invoice
UPDATE invoices SET status = 'draft', attempts = 0, next_attempt_at = ?,
                    provider = coalesce(provider, ?), updated_at = ?
WHERE id = ? AND status <> 'sent';
