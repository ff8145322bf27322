"""Query-string parameters shared by the listing routes."""

from __future__ import annotations

import base64
import binascii

from starlette.datastructures import QueryParams

from meterd.errors import InvalidRequest
from meterd.timeutil import parse_iso_ms

MAX_LIMIT = 1000


def time_param(params: QueryParams, name: str) -> int | None:
    """An instant given as ISO-8601 or epoch milliseconds."""
    text = params.get(name)
    if text is None or text == "":
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return parse_iso_ms(text)
    except ValueError:
        raise InvalidRequest(
            f"{name}: {text!r} is neither an ISO-8601 time nor epoch milliseconds", field=name
        ) from None


def limit_param(params: QueryParams, default: int = 100) -> int:
    text = params.get("limit")
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
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
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor: not a cursor returned by this API", field="cursor") from None
    return raw.split("\x1f")


def int_cursor(params: QueryParams, size: int) -> tuple[int, ...] | None:
    parts = decode_cursor(params)
    if parts is None:
        return None
    if len(parts) != size or not all(p.lstrip("-").isdigit() for p in parts):
        raise InvalidRequest("cursor: not a cursor returned by this API", field="cursor")
    return tuple(int(p) for p in parts)
