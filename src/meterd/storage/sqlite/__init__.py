"""The embedded SQLite backend (WAL, one writer thread, read-only readers)."""
