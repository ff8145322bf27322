"""What a delivery becomes after an attempt: delivered, retried later, or failed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from meterd.storage.base import DeliveryStatus
from meterd.timeutil import datetime_to_ms

# Spread retries by ±20% so endpoints that failed together are not retried together.
JITTER = 0.2
# A Retry-After longer than this is capped, so one answer cannot park a delivery for weeks.
MAX_RETRY_AFTER_MS = 24 * 3_600_000


class NextStep(NamedTuple):
    status: DeliveryStatus
    next_attempt_ms: int | None = None


def next_step(
    *,
    status_code: int | None,
    retry_after: str | None,
    attempt: int,
    schedule_ms: Sequence[int],
    now_ms: int,
    rng: random.Random,
) -> NextStep:
    """The delivery's state after attempt number `attempt` (1 = first) of this round.

    Only 2xx is success; 410 Gone stops at once; anything else (other statuses,
    timeouts, connection errors: `status_code` None) waits the scheduled delay, or
    what `Retry-After` asks, then tries again until the schedule runs out.
    """
    if status_code is not None and 200 <= status_code < 300:
        return NextStep("delivered")
    if status_code == 410 or attempt > len(schedule_ms):
        return NextStep("failed")
    delay = schedule_ms[attempt - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    asked = retry_after_ms(retry_after, now_ms)
    if asked is not None:
        delay = min(asked, MAX_RETRY_AFTER_MS)
    return NextStep("pending", now_ms + int(delay))


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """A Retry-After header (seconds or an HTTP date) as a delay in milliseconds.

    Whatever the receiver sent, this never raises: a value it cannot read is None (the
    schedule decides), and a huge one is capped at MAX_RETRY_AFTER_MS.
    """
    if not value:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses.
    if value.isascii() and value.isdigit():
        # More digits than the cap has seconds: no need to build a 5,000-digit int.
        if len(value) > len(str(MAX_RETRY_AFTER_MS // 1000)):
            return MAX_RETRY_AFTER_MS
        return min(int(value) * 1000, MAX_RETRY_AFTER_MS)
    try:
        asked = datetime_to_ms(parsedate_to_datetime(value)) - now_ms
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return min(max(0, asked), MAX_RETRY_AFTER_MS)
