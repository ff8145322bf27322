"""Query and form values of the HTML pages, checked like the API checks its own."""

from __future__ import annotations

import re
from collections.abc import Collection

from starlette.datastructures import QueryParams

from meterd.errors import InvalidRequest
from meterd.timeutil import parse_iso_ms

_INTEGER = re.compile(r"[0-9]{1,18}")
MAX_TEXT = 256
MAX_TIME_MS = 221_845_392_000_000  # the year 9000, as the API's limit


def text_param(params: QueryParams, name: str) -> str:
    value = params.get(name, "")
    if len(value) > MAX_TEXT:
        raise InvalidRequest(f"{name}: at most {MAX_TEXT} characters", field=name)
    return value


def choice_param(params: QueryParams, name: str, choices: Collection[str], default: str) -> str:
    value = params.get(name) or default
    if value not in choices:
        raise InvalidRequest(f"{name}: must be one of {', '.join(choices)}", field=name)
    return value


def time_param(params: QueryParams, name: str) -> int | None:
    """An instant as ISO-8601 or epoch milliseconds; blank means none."""
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        ms = int(text) if _INTEGER.fullmatch(text) else parse_iso_ms(text)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{name}: {text[:40]!r} is neither an ISO-8601 time nor epoch milliseconds", field=name
        ) from None
    if not 0 <= ms < MAX_TIME_MS:
        raise InvalidRequest(f"{name}: must lie between 1970 and the year 9000", field=name)
    return ms


def pair_cursor(params: QueryParams, name: str) -> tuple[int, int] | None:
    """A keyset cursor written as `<int>.<int>` by the page that links to the next one."""
    text = params.get(name, "")
    if not text:
        return None
    first, dot, second = text.partition(".")
    if not dot or not _INTEGER.fullmatch(first) or not _INTEGER.fullmatch(second):
        raise InvalidRequest(f"{name}: not a cursor written by this page", field=name)
    return int(first), int(second)


def int_param(params: QueryParams, name: str) -> int | None:
    text = params.get(name, "")
    if not text:
        return None
    if not _INTEGER.fullmatch(text):
        raise InvalidRequest(f"{name}: must be a whole number", field=name)
    return int(text)
