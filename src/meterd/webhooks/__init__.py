"""Signed webhooks: payloads, signatures, and the delivery worker that drains the outbox."""
