"""API keys: random tokens, stored and compared as SHA-256 hashes.

The keys carry 256 random bits, so a fast hash is enough: there is nothing
to brute-force that a slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "mk_"


def generate_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """Enough of a key to recognise it in `meterd keys list`, too little to use it."""
    return key[: len(PREFIX) + 6]
