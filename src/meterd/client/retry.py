"""When to send a request again, and after how long."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

# 429 and every 5xx: the request may succeed later. Other answers are final.
RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, for network errors, 429 and 5xx.

    Retry `n` (from 0) waits between half and all of `backoff * 2**n`, at most
    `max_backoff` seconds; a `Retry-After` answer header is a lower bound. A
    `Retry-After` longer than `max_backoff` ends the retries at once, so a call
    never waits longer than the policy allows.
    """

    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")

    @classmethod
    def of(cls, retries: int | RetryPolicy) -> RetryPolicy:
        return retries if isinstance(retries, RetryPolicy) else cls(retries=retries)

    def delay(self, retry: int, response: httpx.Response | None = None) -> float | None:
        """Seconds to wait before retry number `retry` (0 = the first), or None: give up.

        `response` is the answer that failed; None means a network error.
        """
        if retry >= self.retries:
            return None
        if response is not None and response.status_code not in RETRY_STATUSES:
            return None
        ceiling = min(self.max_backoff, self.backoff * 2**retry)
        wait = random.uniform(ceiling / 2, ceiling)
        retry_after = parse_retry_after(response) if response is not None else None
        if retry_after is not None:
            if retry_after > self.max_backoff:
                return None
            # A little jitter on top, so clients told "1" do not all come back together.
            wait = max(wait, retry_after * random.uniform(1.0, 1.1))
        return wait


def parse_retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or HTTP-date); None when absent or unreadable."""
    text = response.headers.get("retry-after", "").strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
