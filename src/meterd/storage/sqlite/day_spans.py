"""Query windows as 15-minute edges and whole compacted UTC days (SQLite).

Once a day is compacted, its partials are one row per (customer, type[, group]) in
the daily tables: a window reads those for the whole UTC days inside it and the
15-minute rows only for its edges. A window in a zone whose days are not UTC days
has no whole UTC day inside a single day, and reads its 96 buckets as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from meterd.periods import BUCKET_MS

BUCKETS_PER_DAY = 86_400_000 // BUCKET_MS


def split_windows(
    windows: Sequence[tuple[int, int]], compacted_days: int | None
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]] | None:
    """Each window as 15-minute edges and whole compacted UTC days: (place, lo, hi) rows.

    None when a window does not start and end on a 15-minute boundary.
    """
    fine: list[tuple[int, int, int]] = []
    days: list[tuple[int, int, int]] = []
    for place, (lo_ms, hi_ms) in enumerate(windows):
        if lo_ms % BUCKET_MS or hi_ms % BUCKET_MS:
            return None
        start, end = lo_ms // BUCKET_MS, hi_ms // BUCKET_MS
        first_day = -(-start // BUCKETS_PER_DAY)
        end_day = end // BUCKETS_PER_DAY
        if compacted_days is not None:
            end_day = min(end_day, compacted_days)
        if compacted_days is None or end_day <= first_day:
            fine.append((place, start, end))
            continue
        days.append((place, first_day, end_day))
        if start < first_day * BUCKETS_PER_DAY:
            fine.append((place, start, first_day * BUCKETS_PER_DAY))
        if end_day * BUCKETS_PER_DAY < end:
            fine.append((place, end_day * BUCKETS_PER_DAY, end))
    return fine, days


def values_sql(rows: Sequence[tuple[int, int, int]]) -> str:
    # An empty VALUES list is not SQL: a row that matches no bucket stands in.
    return ", ".join(f"({p}, {lo}, {hi})" for p, lo, hi in rows) or "(-1, 0, 0)"
