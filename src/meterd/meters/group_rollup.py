"""Group partials: the rollups of meters with `groupBy`, one per group (DESIGN §6).

For a grouped meter of a foldable op (sum, count, avg, min, max) meterd keeps a
`Partial` per (customer, event type, 15-minute bucket, group), next to the plain
rollups and in the same transaction, so grouped live usage, records and the usage
query read buckets, not events. A group is stored as the JSON array of its texts
in `groupBy` order (`group_text`), so reads can pick any of its dimensions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from meterd.meters.groups import GroupKey, GroupTotal, group_key, metadata_of
from meterd.periods import BUCKET_MS
from meterd.rollup import Partial, Point, add_exact, partial_of

# A stored event as the ingest transaction holds it: (seq, id, event_type,
# customer_id, value, metadata JSON text, ts_ms), possibly with more columns after.
StoredRow = Sequence[Any]
# customer_id, event_type, bucket (15-minute or day number), group text.
GroupBucketKey = tuple[str, str, int, str]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[str | None])


def group_text(key: GroupKey) -> str:
    """A group as stored: the JSON array of its dimension texts (null for none)."""
    return _encoder.encode(list(key)).decode()


def group_of_text(text: str) -> GroupKey:
    return tuple(_decoder.decode(text))


def fold_groups(
    rows: Iterable[StoredRow],
    group_by: Mapping[str, Sequence[str]],
    bucket_ms: int = BUCKET_MS,
) -> dict[GroupBucketKey, Partial]:
    """Partials per (customer, event type, bucket, group) of the rows whose type is grouped.

    `group_by` maps each grouped event type to its dimension keys; other rows are
    left out, so a config without groupBy costs one dictionary lookup per event.
    """
    partials: dict[GroupBucketKey, Partial] = {}
    for row in rows:
        keys = group_by.get(row[2])
        if keys is None:
            continue
        seq, event_type, customer_id, value, ts_ms = row[0], row[2], row[3], row[4], row[6]
        text = group_text(group_key(metadata_of(row[5]), keys))
        key = (customer_id, event_type, ts_ms // bucket_ms, text)
        point = partial_of(Point(ts_ms, seq, value))
        known = partials.get(key)
        partials[key] = point if known is None else known.merge(point)
    return partials


def merge_into(
    target: dict[GroupBucketKey, Partial], more: Iterable[tuple[GroupBucketKey, Partial]]
) -> None:
    for key, partial in more:
        known = target.get(key)
        target[key] = partial if known is None else known.merge(partial)


def decode_group_by(text: str) -> tuple[str, ...]:
    return tuple(msgspec.json.decode(text, type=list[str]))


def encode_group_by(keys: Sequence[str]) -> str:
    return _encoder.encode(list(keys)).decode()


def positions(registered: Sequence[str], wanted: Sequence[str]) -> list[int] | None:
    """Where each wanted dimension sits in a stored group; None if one is not stored."""
    try:
        return [list(registered).index(key) for key in wanted]
    except ValueError:
        return None


def project(totals: Iterable[GroupTotal], places: Sequence[int]) -> list[GroupTotal]:
    """Totals per stored group (its JSON text as the only key part) folded per wanted
    dimensions: `places` picks them from the stored group, in the wanted order."""
    merged: dict[tuple[int, str | None, GroupKey], GroupTotal] = {}
    for row in totals:
        [text] = row.group
        assert isinstance(text, str)
        stored = group_of_text(text)
        group = tuple(stored[i] for i in places)
        key = (row.place, row.customer_id, group)
        known = merged.get(key)
        merged[key] = (
            row._replace(group=group)
            if known is None
            else known._replace(
                events=known.events + row.events,
                total=add_exact(known.total, row.total),
                minimum=min(known.minimum, row.minimum),
                maximum=max(known.maximum, row.maximum),
            )
        )
    return list(merged.values())
