"""Listing queries with optional filters, shared by the backends."""

from __future__ import annotations

from typing import Any


def select_where(
    select: str, conditions: list[tuple[str, Any]], *, order_by: str, limit: int
) -> tuple[str, list[Any]]:
    """`select` with the conditions whose value is not None, ordered and limited.

    Fragments use `?` for parameters; a tuple value fills several of them.
    """
    where: list[str] = []
    params: list[Any] = []
    for fragment, value in conditions:
        if value is None:
            continue
        where.append(fragment)
        params.extend(value if isinstance(value, tuple) else (value,))
    sql = select + (" WHERE " + " AND ".join(where) if where else "")
    return f"{sql} ORDER BY {order_by} LIMIT ?", [*params, limit]
