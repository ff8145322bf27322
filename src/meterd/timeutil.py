"""Epoch-millisecond time helpers: meterd keeps every instant as UTC epoch ms."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def datetime_to_ms(moment: datetime) -> int:
    """Epoch ms of `moment`; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(microsecond=(ms % 1000) * 1000)


def parse_iso_ms(text: str) -> int:
    """Parse an ISO-8601 instant ('2025-01-31T23:59:59.999Z'); no offset means UTC.

    Raises ValueError with a readable message.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time") from None
    return datetime_to_ms(moment)


def format_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds: '2025-01-31T23:59:59.999Z'."""
    moment = ms_to_datetime(ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
