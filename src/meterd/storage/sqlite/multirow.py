"""Many rows per INSERT statement.

Python's sqlite3 releases the GIL around every statement step. With
`executemany`, that is once per row, and each time the writer thread must win
the GIL back from the thread serving HTTP; under load that hand-over, not
SQLite, is what a row costs. One multi-row `VALUES` statement inserts a whole
chunk in one step. Parameters are still bound from Python values, so floats
arrive in SQLite exactly as parsed.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

# Chunks are powers of two up to this, so each query has at most 9 shapes to prepare
# (the connection's statement cache keeps them) and stays far below SQLite's limit of
# 32,766 parameters.
MAX_CHUNK = 256
_ONE_ROW = re.compile(r"VALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))")


def insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run `sql`, an INSERT with one `VALUES (?, ...)` row, over every row in `rows`."""
    start = 0
    while start < len(rows):
        size = _chunk_size(len(rows) - start)
        chunk = rows[start : start + size]
        conn.execute(_expanded(sql, size), [value for row in chunk for value in row])
        start += size


def _chunk_size(remaining: int) -> int:
    """The largest power of two, at most MAX_CHUNK, that fits in `remaining`."""
    return min(MAX_CHUNK, 1 << (remaining.bit_length() - 1))


@lru_cache(maxsize=256)
def _expanded(sql: str, rows: int) -> str:
    match = _ONE_ROW.search(sql)
    if match is None:
        raise ValueError(f"not a one-row INSERT ... VALUES (?, ...): {sql!r}")
    values = ", ".join([match[1]] * rows)
    return f"{sql[: match.start(1)]}{values}{sql[match.end(1) :]}"


def customers_sql(
    customer_ids: Sequence[str] | None, params: dict[str, Any], column: str = "customer_id"
) -> str:
    """`AND column IN (:c0, ...)` for the given customers (binding them into `params`).

    Empty when `customer_ids` is None (every customer); an empty list matches nobody.
    """
    if customer_ids is None:
        return ""
    names = []
    for index, customer_id in enumerate(customer_ids):
        params[f"c{index}"] = customer_id
        names.append(f":c{index}")
    return f"AND {column} IN ({', '.join(names) or 'NULL'})"
