"""Fuzzing support: ingest bodies, an oracle of what was stored, a server that logs freely.

The bodies are JSON texts built from Python values, so that one field can carry a
token Python's `json` module refuses to write (`1e999`, `NaN`) or a number no float
holds. The oracle reads the server's SQLite file directly, read-only: what a request
committed is then known independently of the read API that is itself under test.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec
from hypothesis import strategies as st

from tests.acceptance.server import MeterdProcess

EVENT_TYPES = ("api.calls", "storage.bytes", "response.time.ms")  # the built-in sample config
FIELDS = ("customerId", "value", "metadata", "timestamp", "id", "eventType")
MIN_EPOCH_MS = 100_000_000_000  # README: an integer below this is refused as seconds
FAR_FUTURE_MS = 4_000_000_000_000  # 2096: always more than 5 minutes ahead
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RawJSON:
    """JSON text written into the body as it is, valid JSON or not."""

    text: str

    def __repr__(self) -> str:
        return f"RawJSON({_short(self.text)})"


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def encode(value: object) -> bytes:
    """`value` as JSON text; RawJSON leaves are copied verbatim."""
    return _text(value).encode()


def _text(value: object) -> str:
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, dict):
        items = (
            json.dumps(str(key), ensure_ascii=False) + ":" + _text(v) for key, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


# --- arbitrary JSON -------------------------------------------------------------------

NUMBER_TOKENS = (
    "1e999",
    "-1e999",
    "1E+400",
    "0.5e-400",
    "-0",
    "1.7976931348623157e308",
    "123456789012345678901234567890",
    "NaN",  # not JSON
    "Infinity",  # not JSON
    "-Infinity",  # not JSON
    "01",  # not JSON
)
ODD_STRINGS = ("", "NaN", "Infinity", "1e999", "1", "null", "api.calls", "2025-01-15T10:00:00Z")

scalars: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.tuples(st.integers(min_value=19, max_value=400), st.sampled_from([1, -1])).map(
        lambda digits_sign: digits_sign[1] * 10 ** digits_sign[0]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(ODD_STRINGS),
    st.sampled_from(NUMBER_TOKENS).map(RawJSON),
)
keys = st.sampled_from(FIELDS) | st.text(max_size=12)
json_values: st.SearchStrategy[object] = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=25,
)
# Objects with the event's field names, each holding a plausible value or any JSON value:
# near enough to an event that some get stored.
_plausible: dict[str, st.SearchStrategy[object]] = {
    "customerId": st.text(min_size=1, max_size=30),
    "value": st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    "timestamp": st.integers(min_value=MIN_EPOCH_MS, max_value=1_600_000_000_000),
    "id": st.text(min_size=1, max_size=30),
    "eventType": st.sampled_from(EVENT_TYPES),
}
_field_values = {
    name: st.one_of(plausible, plausible, json_values) for name, plausible in _plausible.items()
}
event_shaped: st.SearchStrategy[object] = st.fixed_dictionaries(
    {name: _field_values[name] for name in ("customerId", "value", "eventType")},
    optional={name: _field_values[name] for name in ("metadata", "timestamp", "id")},
) | st.fixed_dictionaries({}, optional=_field_values)
any_body: st.SearchStrategy[object] = st.one_of(
    json_values,
    event_shaped,
    st.lists(event_shaped, min_size=1, max_size=3),
    st.lists(event_shaped | json_values, max_size=6),
)


# --- near-valid events: one field mutated ---------------------------------------------


class Missing(Enum):
    """The mutation removes the field."""

    FIELD = "missing"


Expect = Literal["accept", "invalid", "malformed", "either", "deep"]


class Mutation(NamedTuple):
    """One field of a valid event replaced (or removed), and what the server must do.

    accept: stored (201). invalid: refused as an invalid event (400 on the single
    route, 422 naming the event in a batch). malformed: the body is not JSON (400).
    either: stored or refused as invalid; the docs do not say which. deep: nested
    deeper than a parser may go: stored, or refused as invalid or as a bad body (400).
    """

    field: str
    value: object
    expect: Expect

    def __repr__(self) -> str:
        return f"Mutation({self.field!r}, {_short(self.value)}, {self.expect!r})"


def _mutations(
    field: str, expect: Expect, values: st.SearchStrategy[Any]
) -> st.SearchStrategy[Mutation]:
    return st.builds(Mutation, st.just(field), values, st.just(expect))


_finite_floats = st.floats(allow_nan=False, allow_infinity=False)
_not_a_string = st.one_of(
    st.integers(),
    _finite_floats,
    st.booleans(),
    st.none(),
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)
_not_a_number = st.one_of(
    st.text(max_size=20),
    st.sampled_from(ODD_STRINGS),
    st.booleans(),
    st.none(),
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)
# Valid JSON only: values Python's json module writes as they are.
_plain_scalars = st.none() | st.booleans() | st.integers() | _finite_floats | st.text(max_size=20)
_nested_object = st.recursive(
    st.dictionaries(st.text(max_size=8), _plain_scalars, max_size=4),
    lambda children: st.dictionaries(
        st.text(max_size=8), children | st.lists(children | _plain_scalars, max_size=3), max_size=4
    ),
    max_leaves=30,
)
_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def _iso(moment: datetime, zulu: bool) -> str:
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if zulu else text


def _iso_times(low: datetime, high: datetime) -> st.SearchStrategy[str]:
    naive = st.datetimes(min_value=low, max_value=high)
    aware = st.datetimes(min_value=low, max_value=high, timezones=_offsets)
    return st.builds(_iso, naive | aware, st.booleans())


def _x_times(counts: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    return counts.map(lambda n: "x" * n)


def _deep(depth: int) -> RawJSON:
    return RawJSON('{"a":' * depth + "1" + "}" * depth)


# Identifiers: 1-256 characters, none of them a control character (C0, C1) or an
# invisible formatting character (bidi overrides and isolates, U+2028/9, U+FEFF) (README).
_CONTROL = (
    "".join(map(chr, range(32)))
    + "".join(map(chr, range(0x7F, 0xA0)))
    + "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
)
_identifiers = st.text(
    alphabet=st.characters(codec="utf-8", blacklist_characters=_CONTROL),
    min_size=1,
    max_size=256,
)
_with_control = st.tuples(_identifiers, st.sampled_from(_CONTROL)).map("".join)

customer_id_mutations = st.one_of(
    _mutations("customerId", "accept", _identifiers),
    _mutations("customerId", "invalid", _with_control),
    _mutations("customerId", "invalid", st.just("") | st.text(min_size=257, max_size=400)),
    _mutations("customerId", "invalid", _not_a_string | st.just(Missing.FIELD)),
    _mutations("customerId", "accept", _x_times(st.just(256))),
    _mutations("customerId", "invalid", _x_times(st.sampled_from([257, 100_000]))),
)
value_mutations = st.one_of(
    _mutations("value", "accept", _finite_floats),
    _mutations("value", "accept", st.integers() | _finite_floats.map(int)),
    _mutations("value", "either", st.integers(min_value=309, max_value=400).map(lambda e: 10**e)),
    _mutations("value", "invalid", _not_a_number | st.just(Missing.FIELD)),
    _mutations("value", "invalid", st.sampled_from(["1e999", "-1e999", "1E+400"]).map(RawJSON)),
    _mutations(
        "value",
        "malformed",
        st.sampled_from(["NaN", "Infinity", "-Infinity", "01", "1."]).map(RawJSON),
    ),
    _mutations("value", "accept", st.sampled_from(["-0", "0.5e-400", "5e-324"]).map(RawJSON)),
)
metadata_mutations = st.one_of(
    _mutations("metadata", "accept", _nested_object | st.just(Missing.FIELD)),
    _mutations("metadata", "accept", st.integers(min_value=1, max_value=200).map(_deep)),
    _mutations("metadata", "either", st.none()),
    _mutations("metadata", "deep", st.just(5_000).map(_deep)),
    # A list holding a raw token such as NaN is malformed JSON (400), not an invalid event.
    _mutations(
        "metadata",
        "invalid",
        st.lists(scalars, max_size=3).filter(lambda v: not _has_raw_token(v))
        | st.text(max_size=10),
    ),
    _mutations("metadata", "invalid", st.integers() | _finite_floats | st.booleans()),
    _mutations("metadata", "accept", _x_times(st.just(100_000)).map(lambda big: {"big": big})),
)
timestamp_mutations = st.one_of(
    _mutations(
        "timestamp", "accept", st.integers(min_value=MIN_EPOCH_MS, max_value=1_600_000_000_000)
    ),
    _mutations("timestamp", "accept", st.just(Missing.FIELD) | st.none()),
    _mutations("timestamp", "accept", _iso_times(datetime(1975, 1, 1), datetime(2020, 12, 31))),
    _mutations("timestamp", "invalid", st.integers(max_value=MIN_EPOCH_MS - 1)),
    _mutations("timestamp", "invalid", st.integers(min_value=FAR_FUTURE_MS)),
    _mutations("timestamp", "invalid", _iso_times(datetime(2100, 1, 1), datetime(9999, 12, 31))),
    _mutations("timestamp", "invalid", st.booleans() | st.lists(scalars, max_size=2)),
    _mutations(
        "timestamp",
        "invalid",
        st.sampled_from(
            [
                "",
                "now",
                "yesterday",
                "2025-13-01T00:00:00Z",
                "2025-02-30T00:00:00Z",
                "2025-01-15T25:00:00Z",
                "2025-01-15T10:00:00+25:00",
                "1e12",
            ]
        ),
    ),
    # ISO-8601 allows these, RFC 3339 does not; the docs say only "ISO-8601".
    _mutations(
        "timestamp",
        "either",
        st.sampled_from(
            [
                "2025-01-15",
                "2025-01-15 10:00:00Z",
                "20250115T100000Z",
                "2025-01-15T10:00Z",
                "2025-01-15T10:00:00.123456789Z",
                "2025-W03-3T10:00:00Z",
                "1736935200000",
                "2025-01-15t10:00:00z",
            ]
        ),
    ),
    _mutations("timestamp", "either", st.floats(min_value=1e11, max_value=1.6e12)),
    # Far in the past: the docs set no lower bound for ISO times.
    _mutations("timestamp", "either", _iso_times(datetime(1, 1, 1), datetime(1972, 12, 31))),
    _mutations(
        "timestamp",
        "either",
        st.sampled_from(
            [
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:00:00+14:00",
                "0001-01-01T23:59:59-14:00",
                "1900-01-01T00:00:00Z",
                "1969-12-31T23:59:59.999Z",
                "1970-01-01T00:00:00Z",
            ]
        ),
    ),
)
id_mutations = st.one_of(
    _mutations("id", "accept", _identifiers),
    _mutations("id", "invalid", _with_control),
    _mutations("id", "accept", st.just(Missing.FIELD) | st.none()),
    _mutations("id", "invalid", st.just("") | st.text(min_size=257, max_size=300)),
    _mutations("id", "invalid", st.integers() | st.booleans() | st.lists(scalars, max_size=2)),
)
extra_field_mutations = _mutations(
    "extraField", "either", json_values.filter(lambda v: not _has_raw_token(v))
)
# The batch's own eventType field; on the single route the type is in the path.
event_type_mutations = st.one_of(
    _mutations("eventType", "accept", st.sampled_from(EVENT_TYPES)),
    _mutations("eventType", "invalid", st.text(max_size=30).filter(lambda t: t not in EVENT_TYPES)),
    _mutations("eventType", "invalid", _not_a_string | st.just(Missing.FIELD)),
    _mutations("eventType", "invalid", st.sampled_from(["API.CALLS", "api.calls "])),
    _mutations("eventType", "invalid", _x_times(st.just(300))),
)
event_mutations = st.one_of(
    customer_id_mutations,
    value_mutations,
    metadata_mutations,
    timestamp_mutations,
    id_mutations,
    extra_field_mutations,
)


def _has_raw_token(value: object) -> bool:
    if isinstance(value, RawJSON):
        return True
    if isinstance(value, dict):
        return any(_has_raw_token(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_raw_token(v) for v in value)
    return False


_unique = itertools.count()


def valid_event(
    *, event_type: str | None = None, optional: Iterable[str] = ()
) -> dict[str, object]:
    """A valid event with a customer and an id used by no other event in this process."""
    n = next(_unique)
    event: dict[str, object] = {"customerId": f"fuzz-{n}", "value": 2.5}
    if event_type is not None:
        event["eventType"] = event_type
    extras: dict[str, object] = {
        "metadata": {"endpoint": "/v1/search", "n": n},
        "timestamp": "2025-01-15T10:00:00.250Z",
        "id": f"fuzz-event-{n}",
    }
    event.update((name, extras[name]) for name in optional)
    return event


def mutated(event: dict[str, object], mutation: Mutation) -> dict[str, object]:
    result = dict(event)
    if mutation.value is Missing.FIELD:
        result.pop(mutation.field, None)
    else:
        result[mutation.field] = mutation.value
    return result


optional_fields = st.lists(st.sampled_from(["metadata", "timestamp", "id"]), unique=True)


# --- what the server stored -----------------------------------------------------------


class StoredRow(NamedTuple):
    seq: int
    id: str
    event_type: str
    customer_id: str
    value: float
    ts_ms: int
    received_ms: int


class StoredEvents:
    """The events table of a running server's SQLite database, read-only."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self._last_seq = self._max_seq()

    def _max_seq(self) -> int:
        (seq,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(seq)

    def new_rows(self) -> list[StoredRow]:
        """The events committed since the previous call, in arrival order."""
        rows = [
            StoredRow(int(seq), id, event_type, customer_id, float(value), int(ts), int(received))
            for seq, id, event_type, customer_id, value, ts, received in self._db.execute(
                "SELECT seq, id, event_type, customer_id, value, ts, received_at"
                " FROM events WHERE seq > ? ORDER BY seq",
                (self._last_seq,),
            )
        ]
        if rows:
            self._last_seq = rows[-1].seq
        return rows

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._db.execute(f"SELECT id FROM events WHERE id IN ({marks})", chunk)
            )
        return found

    def close(self) -> None:
        self._db.close()


def stored_time_range(timestamp: object, arrival: tuple[int, int]) -> tuple[int, int] | None:
    """The event times (epoch ms, inclusive) the server may store for an accepted `timestamp`.

    An absent or null timestamp means the arrival time, within `arrival`; None when
    the server accepted a format this test cannot interpret.
    """
    if timestamp is None or timestamp is Missing.FIELD:
        return arrival
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        return timestamp, timestamp
    try:
        moment = msgspec.json.decode(encode(timestamp), type=datetime)
    except msgspec.DecodeError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    return ms, ms


def expected_value(value: object) -> float:
    """The float the server must store for a `value` it accepted."""
    return msgspec.json.decode(encode(value), type=float)


# --- the server ------------------------------------------------------------------------


class DrainedMeterd(MeterdProcess):
    """A MeterdProcess that can show what the server logged since a mark.

    Fuzzing makes a buggy server log one traceback per 500; the log goes to a file,
    so it never blocks the server.
    """

    def log_mark(self) -> int:
        """A position in the output, for `logged_error_since`."""
        return len(self.read_output())

    def logged_error_since(self, mark: int) -> str:
        """The first unexpected error the server logged after `mark`, for failure messages.

        The server writes its log after it answers, so wait a little for it.
        """
        deadline = time.monotonic() + 2.0
        while True:
            text = self.read_output()[mark:]
            start = text.find("unexpected error on ")
            if start >= 0 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if start < 0:
            return "(the server logged no unexpected error)"
        text = text[start:]
        end = text.find("Exception in ASGI application")
        return text[: end if end > 0 else 6000].strip()
