"""The rule every identifier (customer id, event id, event type, Idempotency-Key) obeys.

Identifiers travel in URLs, headers, logs and terminals, so besides being 1 to 256
characters they must not hold characters that are invisible or that change how
text around them is shown: C0 and C1 controls (a trailing newline included),
bidirectional overrides and isolates (which make "abc" display as "cba"), the
line and paragraph separators, and the byte-order mark.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LENGTH = 256

# One character class, used by the msgspec schema (the fast path) and by the
# explanation below, so both always agree.
FORBIDDEN = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\ufeff"
PATTERN = f"^[^{FORBIDDEN}]+\\Z"
_FORBIDDEN = re.compile(f"[{FORBIDDEN}]")


def identifier_problem(text: str) -> str | None:
    """What is wrong with `text` as an identifier, in plain words; None if nothing."""
    if not text:
        return "must not be empty"
    if len(text) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters (it has {len(text)})"
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    char = found.group()
    name = unicodedata.name(char, "")
    label = f"U+{ord(char):04X} {name}".rstrip()
    return (
        "must not contain control characters or invisible formatting characters "
        f"({label} at position {found.start() + 1})"
    )
