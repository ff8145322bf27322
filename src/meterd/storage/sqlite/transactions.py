"""A write transaction on a SQLite connection, and what its failure means to a client."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from meterd.errors import StorageUnavailable

T = TypeVar("T")


def in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(conn)` between BEGIN IMMEDIATE and COMMIT; rolled back if anything fails."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException as error:
        rollback(conn)
        raise storage_error(error)  # noqa: B904 - the cause is kept on the error
    return result


def storage_error(error: BaseException) -> BaseException:
    """SQLite's operational errors (a full disk, a lock held too long) as StorageUnavailable."""
    if isinstance(error, sqlite3.OperationalError):
        failure = StorageUnavailable(f"the database could not be written: {error}")
        failure.__cause__ = error
        return failure
    return error


def rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back (a full disk does that); never mask the cause.
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
