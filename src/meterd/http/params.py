"""Query-string parameters shared by the listing routes."""

from __future__ import annotations

import base64
import re

from starlette.datastructures import QueryParams

from meterd.errors import InvalidRequest, shown
from meterd.timeutil import parse_iso_ms

MAX_LIMIT = 1000
# ASCII digits only (str.isdigit() also accepts "²"), and few enough for a 64-bit column.
_INTEGER = re.compile(r"-?[0-9]{1,18}")
# Instants meterd accepts in queries: 1970 up to (not including) the year 9000.
MIN_TIME_MS = 0
MAX_TIME_MS = 221_845_392_000_000


def is_integer(text: str) -> bool:
    return _INTEGER.fullmatch(text) is not None


def time_param(params: QueryParams, name: str) -> int | None:
    """An instant given as ISO-8601 or epoch milliseconds."""
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        ms = int(text) if is_integer(text) else parse_iso_ms(text)
    except ValueError:
        raise InvalidRequest(
            f"{name}: {shown(text)} is neither an ISO-8601 time nor epoch milliseconds", field=name
        ) from None
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise InvalidRequest(f"{name}: must lie between 1970 and the year 9000", field=name)
    return ms


def limit_param(params: QueryParams, default: int = 100) -> int:
    text = params.get("limit")
    if text is None or text == "":
        return default
    if not is_integer(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return int(text)


def encode_cursor(*parts: int | str) -> str:
    text = "\x1f".join(str(part) for part in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(params: QueryParams) -> list[str] | None:
    """The parts of the `cursor` parameter, as strings; None when absent."""
    text = params.get("cursor")
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except ValueError:  # bad base64, non-ASCII text, or bytes that are not UTF-8
        raise InvalidRequest("cursor: not a cursor returned by this API", field="cursor") from None
    return raw.split("\x1f")


def int_cursor(params: QueryParams, size: int) -> tuple[int, ...] | None:
    parts = decode_cursor(params)
    if parts is None:
        return None
    if len(parts) != size or not all(is_integer(p) for p in parts):
        raise InvalidRequest("cursor: not a cursor returned by this API", field="cursor")
    return tuple(int(p) for p in parts)


def bool_param(params: QueryParams, name: str) -> bool:
    """`true` or `false` (default false)."""
    text = (params.get(name) or "false").lower()
    if text not in ("true", "false"):
        raise InvalidRequest(f"{name}: must be true or false", field=name)
    return text == "true"
