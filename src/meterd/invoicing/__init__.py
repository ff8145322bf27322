"""Sending invoice records to a payment provider (today: Stripe)."""
