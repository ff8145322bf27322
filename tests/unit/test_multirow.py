"""Multi-row INSERT statements store exactly what one-row inserts would."""

from __future__ import annotations

import sqlite3

import pytest

from meterd.storage.sqlite.multirow import MAX_CHUNK, insert_rows

INSERT = "INSERT INTO t (a, b, c) VALUES (?, ?, ?)"


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b NUMERIC, c TEXT)")
    return conn


@pytest.mark.parametrize("count", [0, 1, 2, 3, 63, 64, 65, MAX_CHUNK, MAX_CHUNK + 1, 1000])
def test_every_row_is_inserted_once_in_order(count: int) -> None:
    rows = [(i, i / 10, f"row {i}") for i in range(count)]
    conn = _table()
    insert_rows(conn, INSERT, rows)
    assert conn.execute("SELECT a, b, c FROM t ORDER BY a").fetchall() == rows


def test_floats_arrive_exactly_as_bound() -> None:
    values = [0.1, 1e-300, 2.0**53 + 2, 123456.789012345678, -0.0]
    conn = _table()
    insert_rows(conn, INSERT, [(i, v, None) for i, v in enumerate(values)])
    assert [row[0] for row in conn.execute("SELECT b FROM t ORDER BY a")] == values


def test_an_upsert_tail_is_kept() -> None:
    conn = _table()
    upsert = INSERT + " ON CONFLICT (a) DO UPDATE SET c = c || excluded.c"
    insert_rows(conn, upsert, [(1, 1, "x"), (2, 2, "y")])
    insert_rows(conn, upsert, [(1, 1, "z")])
    assert conn.execute("SELECT c FROM t ORDER BY a").fetchall() == [("xz",), ("y",)]


def test_a_statement_without_one_values_row_is_refused() -> None:
    with pytest.raises(ValueError, match="one-row INSERT"):
        insert_rows(_table(), "INSERT INTO t SELECT 1, 2, 3", [(1, 2, 3)])
