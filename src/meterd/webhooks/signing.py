"""The two signatures every webhook carries.

- codehooks template: `X-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`,
  keyed with the secret string's UTF-8 bytes, using the first secret;
- Standard Webhooks: `webhook-signature: v1,<base64> ...` over "<id>.<ts>.<body>", one
  signature per secret (rotation), keyed as the `standardwebhooks` package keys them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import logging
from collections.abc import Sequence

log = logging.getLogger("meterd.webhooks")


def codehooks_signature(secret: str, timestamp: int, body: bytes) -> str:
    # hmac.digest: the one-shot C path, no HMAC object per signature.
    return "v1=" + hmac.digest(_utf8(secret), b"%d.%b" % (timestamp, body), "sha256").hex()


def standard_signatures(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> str:
    signed = b"%b.%d.%b" % (message_id.encode(), timestamp, body)
    signatures = []
    for secret in secrets:
        try:
            key = _standard_key(secret)
        except (binascii.Error, ValueError) as error:
            # Such a secret still signs the codehooks header; say why this one is missing.
            log.warning("a webhook secret is not usable for Standard Webhooks: %s", error)
            continue
        signatures.append("v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode())
    return " ".join(signatures)


@functools.lru_cache(maxsize=64)
def _utf8(secret: str) -> bytes:
    return secret.encode()


@functools.lru_cache(maxsize=64)
def _standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret, decoded as `standardwebhooks` does
    (the base64 after `whsec_`, padding optional): once per secret, not per attempt."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    if not key:
        raise ValueError("webhook secret may not be empty")
    return key


def signed_headers(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header of one delivery attempt at `timestamp` (unix seconds)."""
    stamp = str(timestamp)
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Timestamp": stamp,
        "X-Webhook-Signature": codehooks_signature(secrets[0], timestamp, body),
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
    }
    standard = standard_signatures(secrets, message_id, timestamp, body)
    if standard:
        headers["webhook-signature"] = standard
    return headers
