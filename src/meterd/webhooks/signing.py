"""The two signatures every webhook carries.

- codehooks template: `X-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`,
  keyed with the secret string's UTF-8 bytes, using the first secret;
- Standard Webhooks: `webhook-signature: v1,<base64> ...` over "<id>.<ts>.<body>", one
  signature per secret (rotation), keyed as the `standardwebhooks` package keys them.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

log = logging.getLogger("meterd.webhooks")


def codehooks_signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def standard_signatures(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    signatures = []
    for secret in secrets:
        try:
            signatures.append(Webhook(secret).sign(message_id, moment, body.decode()))
        except (binascii.Error, ValueError) as error:
            # Such a secret still signs the codehooks header; say why this one is missing.
            log.warning("a webhook secret is not usable for Standard Webhooks: %s", error)
    return " ".join(signatures)


def signed_headers(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header of one delivery attempt at `timestamp` (unix seconds)."""
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": codehooks_signature(secrets[0], timestamp, body),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
    }
    standard = standard_signatures(secrets, message_id, timestamp, body)
    if standard:
        headers["webhook-signature"] = standard
    return headers
