"""How many events each group commit carried, counted in fixed buckets for /metrics."""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds (inclusive) of the buckets; one more bucket takes everything above.
BOUNDS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


class CommitSizes:
    """A histogram of events per ingest transaction; only the writer adds to it."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.events = 0
        self.commits = 0

    def observe(self, events: int) -> None:
        self.counts[bisect_left(BOUNDS, events)] += 1
        self.events += events
        self.commits += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, commits at or below it) pairs, the last one "+Inf"."""
        running = 0
        buckets = []
        for bound, count in zip([*map(str, BOUNDS), "+Inf"], self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets
