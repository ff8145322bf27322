"""`meterd backup`: a consistent copy of a SQLite database, taken while it serves.

SQLite's online backup API copies the pages of one read snapshot: in WAL mode the
writer goes on committing meanwhile, and the copy holds exactly the transactions
committed when the snapshot began. The copy is written next to its target and renamed
into place only once it is complete and checked, so FILE is whole or absent.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from meterd.errors import StorageUnavailable


def backup_database(source: str, target: str) -> int:
    """Copy the database at `source` to the new file `target`; returns its size in bytes."""
    if not Path(source).is_file():
        raise StorageUnavailable(f"no SQLite database at {source}")
    final = Path(target)
    if final.exists():
        raise StorageUnavailable(f"{target} already exists: choose a new file")
    partial = final.with_name(final.name + ".partial")
    try:
        src = sqlite3.connect(f"file:{Path(source).resolve()}?mode=ro", uri=True, timeout=10.0)
        try:
            dst = sqlite3.connect(partial)
            try:
                # One step (pages=-1): the whole copy comes from a single read snapshot.
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
                [(check,)] = dst.execute("PRAGMA quick_check").fetchall()
                if check != "ok":
                    raise StorageUnavailable(f"the copy failed its check: {check}")
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb+") as copy:
            os.fsync(copy.fileno())
        os.replace(partial, final)
    except (OSError, sqlite3.Error) as error:
        raise StorageUnavailable(f"backup of {source} to {target} failed: {error}") from error
    finally:
        partial.unlink(missing_ok=True)
    return final.stat().st_size
