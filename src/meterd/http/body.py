"""Reading request bodies: with a size limit, straight from ASGI `receive`; and small JSON
bodies decoded into typed structs, with problems in the client's words.

msgspec's own messages ("Expected `str | null`, got `int` - at `$.subject`") name types the
client never wrote; each route says instead what its fields must be, and `decode_body`
turns a decode failure into that sentence, naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

import msgspec
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from meterd.errors import InvalidRequest, PayloadTooLarge
from meterd.explain import malformed, unknown_field

T = TypeVar("T")


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes `limit` bytes.

    `declared` is the Content-Length header, checked before anything is read.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return chunk if not chunks else b"".join([*chunks, chunk])
        chunks.append(chunk)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body exceeds {limit} bytes", maxBytes=limit)


_AT_FIELD = re.compile(r"at `\$\.(\w+)")
_MISSING = re.compile(r"missing required field `(\w+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def decode_body(body: bytes, kind: type[T], field_rules: Mapping[str, str]) -> T:
    """`body` as a `kind`; `field_rules` says, per JSON field name, what it must be."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        raise _invalid(str(error), kind, field_rules) from None
    except msgspec.DecodeError as error:
        raise InvalidRequest(malformed(error).text) from None


def _invalid(message: str, kind: type, field_rules: Mapping[str, str]) -> InvalidRequest:
    missing = _MISSING.search(message)
    if missing is not None:
        return InvalidRequest(f"{missing[1]}: required", field=missing[1])
    unknown = _UNKNOWN.search(message)
    if unknown is not None:
        known = [field.encode_name for field in msgspec.structs.fields(kind)]
        problem = unknown_field(unknown[1], known)
        return InvalidRequest(str(problem), field=problem.field)
    found = _AT_FIELD.search(message)
    if found is not None:
        field = found[1]
        rule = field_rules.get(field, "has the wrong type")
        return InvalidRequest(f"{field}: {rule}", field=field)
    return InvalidRequest("the body must be a JSON object")
