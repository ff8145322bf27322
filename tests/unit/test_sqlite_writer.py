"""The SQLite writer thread: calls queued together share one commit, and fail alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from meterd.errors import IdConflict, StorageUnavailable
from meterd.ingest import NewEvent
from meterd.storage.sqlite.writer import Writer


def _no_ingest(
    conn: sqlite3.Connection, jobs: Sequence[Sequence[NewEvent]]
) -> list[list[bool] | IdConflict]:
    raise AssertionError("not used here")


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[tuple[Writer, Path]]:
    path = tmp_path / "w.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (v TEXT PRIMARY KEY)")
    setup.close()
    w = Writer(
        lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False), _no_ingest
    )
    w.start()
    yield w, path
    w.stop()


def _rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT v FROM t ORDER BY v")]


def _insert(value: str) -> Callable[[sqlite3.Connection], str]:
    def run(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        return value

    return run


def _insert_then_fail(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t VALUES ('undone')")
    raise ValueError("this call fails after writing")


async def test_a_failing_call_undoes_only_its_own_writes(writer: tuple[Writer, Path]) -> None:
    w, path = writer
    results = await asyncio.gather(
        w.call(_insert("a")),
        w.call(_insert_then_fail),
        w.call(_insert("b")),
        w.call(lambda conn: conn.execute("INSERT INTO t VALUES ('a')")),  # duplicate key
        return_exceptions=True,
    )
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], sqlite3.IntegrityError)
    assert _rows(path) == ["a", "b"]


async def test_an_operational_error_is_storage_unavailable(writer: tuple[Writer, Path]) -> None:
    w, path = writer
    with pytest.raises(StorageUnavailable, match="no such table"):
        await w.call(lambda conn: conn.execute("INSERT INTO missing VALUES (1)"))
    assert await w.call(_insert("after"))
    assert _rows(path) == ["after"]
