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

# Up to EXACT_ROWS rows (a group commit of single events) go in one statement of exactly
# that many rows: each statement costs the writer a GIL hand-over, and under HTTP load
# that wait, not SQLite, is what a statement costs (32+4+2+1 rows in four statements
# waited four times). Larger counts go in powers of two up to MAX_CHUNK. Each query has
# at most EXACT_ROWS + 3 shapes to prepare, which STATEMENT_CACHE keeps prepared, and
# stays far below SQLite's limit of 32,766 parameters.
EXACT_ROWS = 64
MAX_CHUNK = 256
# Prepared statements a connection keeps (Python's default, 128, is fewer than the
# shapes of three multi-row queries).
STATEMENT_CACHE = 512
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
    """All of `remaining` up to EXACT_ROWS, else the largest power of two that fits, at
    most MAX_CHUNK."""
    if remaining <= EXACT_ROWS:
        return remaining
    return min(MAX_CHUNK, 1 << (remaining.bit_length() - 1))


@lru_cache(maxsize=STATEMENT_CACHE)
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
