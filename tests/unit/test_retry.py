"""The retry policy of webhook deliveries."""

from __future__ import annotations

import random

import pytest

from meterd.webhooks.retry import JITTER, MAX_RETRY_AFTER_MS, next_step, retry_after_ms

NOW = 1_736_935_200_000
SCHEDULE = (5_000, 300_000, 1_800_000)


def step(
    status: int | None, attempt: int, retry_after: str | None = None
) -> tuple[str, int | None]:
    result = next_step(
        status_code=status,
        retry_after=retry_after,
        attempt=attempt,
        schedule_ms=SCHEDULE,
        now_ms=NOW,
        rng=random.Random(7),
    )
    return result.status, result.next_attempt_ms


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert step(status, 1) == ("delivered", None)


@pytest.mark.parametrize("status", [None, 301, 400, 404, 429, 500, 503])
def test_everything_else_is_retried_on_schedule_with_jitter(status: int | None) -> None:
    for attempt, delay in enumerate(SCHEDULE, start=1):
        state, at = step(status, attempt)
        assert state == "pending"
        assert at is not None
        assert delay * (1 - JITTER) <= at - NOW <= delay * (1 + JITTER)


def test_schedule_exhausted_is_failed() -> None:
    assert step(500, len(SCHEDULE) + 1) == ("failed", None)


def test_410_fails_at_once() -> None:
    assert step(410, 1) == ("failed", None)


def test_retry_after_seconds_and_dates() -> None:
    assert step(503, 1, "30") == ("pending", NOW + 30_000)
    assert retry_after_ms("Wed, 15 Jan 2025 10:01:00 GMT", NOW) == 60_000
    assert retry_after_ms("garbage", NOW) is None
    assert step(429, 1, str(10 * 86_400)) == ("pending", NOW + MAX_RETRY_AFTER_MS)


@pytest.mark.parametrize(
    "header",
    [
        "²",  # str.isdigit() accepts it, int() refuses it
        "١٢",  # Arabic-Indic digits
        "-5",
        "1.5",
        "",
        "   ",
        "Mon, 99 Foo 2025 99:99:99 GMT",
        "Wed, 15 Jan 99999 10:01:00 GMT",
        "\x00",
    ],
)
def test_unreadable_retry_after_never_raises_and_falls_back_to_the_schedule(header: str) -> None:
    assert retry_after_ms(header, NOW) is None
    state, at = step(503, 1, header)
    assert state == "pending" and at is not None
    assert SCHEDULE[0] * (1 - JITTER) <= at - NOW <= SCHEDULE[0] * (1 + JITTER)


@pytest.mark.parametrize(
    "header", ["9" * 5_000, "1" + "0" * 30, "99999999", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_absurd_retry_after_is_capped(header: str) -> None:
    assert retry_after_ms(header, NOW) == MAX_RETRY_AFTER_MS
    assert step(503, 1, header) == ("pending", NOW + MAX_RETRY_AFTER_MS)


def test_retry_after_in_the_past_means_now() -> None:
    assert retry_after_ms("Wed, 01 Jan 2020 00:00:00 GMT", NOW) == 0
    assert retry_after_ms(" 0 ", NOW) == 0
