"""Reading request bodies with a size limit, straight from ASGI `receive`."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from meterd.errors import PayloadTooLarge


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
