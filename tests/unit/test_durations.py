"""Duration strings: "500ms", "30s", "5m", "2h", "30d", "1w"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterd.durations import MAX_DURATION_MS, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0ms", 0),
        ("0s", 0),
        ("500ms", 500),
        ("1500ms", 1_500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("90m", 5_400_000),
        ("2h", 7_200_000),
        ("30d", 2_592_000_000),
        ("1w", 604_800_000),
        ("007s", 7_000),
        ("36500d", MAX_DURATION_MS),
    ],
)
def test_parses_whole_amounts_of_each_unit(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "5x",
        "m",
        "ms",
        "1.5h",
        "-5m",
        "+5m",
        "5 m",
        " 5m",
        "5m ",
        "5M",
        "5H",
        "5mm",
        "5min",
        "1h30m",
        "٥m",  # an Arabic-Indic digit: \d would take it, a config should not
        "5m\n",
    ],
)
def test_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(text)


def test_the_message_quotes_the_text_and_shows_examples() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("5x")
    assert str(caught.value) == ('"5x" is not a duration like "500ms", "30s", "5m", "2h" or "30d"')


@pytest.mark.parametrize(
    "text", ["36501d", "5215w", "99999999999999999999999999999h", "9" * 5000 + "d"]
)
def test_rejects_durations_over_a_hundred_years(text: str) -> None:
    with pytest.raises(ValueError, match="is too long"):
        parse_duration(text)


def test_a_long_bad_text_is_shortened_in_the_message() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("x" * 500)
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (1, "1ms"),
        (1_500, "1500ms"),
        (30_000, "30s"),
        (90_000, "90s"),
        (3_600_000, "1h"),
        (5_400_000, "90m"),
        (86_400_000, "1d"),
        (2_592_000_000, "30d"),
        (604_800_000, "1w"),
        (1_209_600_000, "2w"),
    ],
)
def test_formats_in_the_largest_exact_unit(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_format_rejects_negative_durations() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=MAX_DURATION_MS))
def test_format_then_parse_gives_back_the_same_milliseconds(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms
