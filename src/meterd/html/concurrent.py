"""Running a page's independent reads side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")
G = TypeVar("G")


@overload
async def concurrently(
    a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], d: Awaitable[D], /
) -> tuple[A, B, C, D]: ...


@overload
async def concurrently(
    a: Awaitable[A],
    b: Awaitable[B],
    c: Awaitable[C],
    d: Awaitable[D],
    e: Awaitable[E],
    f: Awaitable[F],
    g: Awaitable[G],
    /,
) -> tuple[A, B, C, D, E, F, G]: ...


async def concurrently(*reads: Awaitable[Any]) -> tuple[Any, ...]:
    """Every read's result in order. All of them finish before the first error (if any)
    is raised, so none is left running behind the response."""
    results = await asyncio.gather(*reads, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return tuple(results)
