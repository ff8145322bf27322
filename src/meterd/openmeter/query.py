"""OpenMeter's meter query, mapped onto meterd's usage query (DESIGN §7) and back.

`GET /api/v1/meters/{idOrSlug}/query?from=&to=&windowSize=&windowTimeZone=&subject=
&groupBy=&filterGroupBy[k]=&advancedMeterGroupByFilters=` becomes a `UsageQuery`;
the usage query service answers `UsageRow`s; they go back out in OpenMeter's
MeterQueryResult shape (JSON) or as CSV. No aggregation happens here: this module
only translates names, times and filters.

`UsageQuery`/`UsageRow` are what this layer expects of the usage query service of
meters v2 (§7): windows `minute|hour|day|month` in an IANA zone, from inclusive and
to exclusive, customers (none: all), group-by keys (meter keys and `customerId`),
and per key a `GroupFilter` ("in S" or "not in S").
"""

from __future__ import annotations

import ast
import csv
import io
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from meterd.errors import InvalidRequest
from meterd.meters.groups import GroupFilter
from meterd.openmeter.filters import parse_group_filters
from meterd.timeutil import format_ms, parse_iso_ms

WindowSize = Literal["minute", "hour", "day", "month"]
WINDOW_SIZES: tuple[str, ...] = tuple(size.upper() for size in get_args(WindowSize))
CUSTOMER = "customerId"
SUBJECT = "subject"
_MAX_FILTER_TEXT = 10_000


class UsageQuery(msgspec.Struct, frozen=True):
    """One meter's usage over [from_ms, to_ms), in windows or as one total."""

    meter: str
    from_ms: int
    to_ms: int
    window_size: WindowSize | None = None
    window_time_zone: str = "UTC"
    customer_ids: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    filters: Mapping[str, GroupFilter] = msgspec.field(default_factory=dict)


class UsageRow(msgspec.Struct, frozen=True):
    """One window (and customer and group, where grouped); empty windows are left out."""

    window_start_ms: int
    window_end_ms: int
    value: float
    count: int
    customer_id: str | None = None
    group_by: Mapping[str, str | None] = msgspec.field(default_factory=dict)


QueryUsage = Callable[[UsageQuery], Awaitable[Sequence[UsageRow]]]


class MeterQueryRow(msgspec.Struct, rename="camel"):
    value: float
    window_start: str
    window_end: str
    subject: str | None
    group_by: dict[str, str | None]
    customer_id: str | None = None


class MeterQueryResult(msgspec.Struct, rename={"from_": "from", "window_size": "windowSize"}):
    """OpenMeter's MeterQueryResult."""

    from_: str
    to: str
    window_size: str | None
    data: list[MeterQueryRow]


def usage_query(
    params: Sequence[tuple[str, str]],
    *,
    meter: str,
    group_keys: tuple[str, ...],
    now_ms: int,
    first_data_ms: int | None,
    subject: str | None = None,
) -> UsageQuery:
    """The usage query for OpenMeter's query parameters (repeated ones as repeated pairs).

    `first_data_ms` stands in for an absent `from` ("since the beginning"); `subject`,
    when given (a portal token's customer), replaces any subject in the parameters.
    """
    single = _single_values(params)
    to_ms = _time(single, "to", now_ms)
    from_ms = _time(
        single, "from", min(first_data_ms if first_data_ms is not None else to_ms, to_ms)
    )
    if from_ms > to_ms:
        raise InvalidRequest("from: must not be after to", field="from")
    window_size = _window_size(single.get("windowSize"))
    zone = _zone(single.get("windowTimeZone") or "UTC")
    repeated = _repeated(params)
    customers = repeated.get(SUBJECT, []) + repeated.get("filterCustomerId", [])
    if subject is not None:
        customers = [subject]
    group_by = [_group_key(key, group_keys) for key in repeated.get("groupBy", [])]
    if customers and CUSTOMER not in group_by:
        group_by.insert(0, CUSTOMER)  # OpenMeter names the subject on every row then
    filters = _simple_filters(params, group_keys)
    advanced = single.get("advancedMeterGroupByFilters")
    if advanced:
        for key, found in parse_group_filters(advanced, keys=group_keys).items():
            filters[key] = filters[key].both(found) if key in filters else found
    return UsageQuery(
        meter=meter,
        from_ms=from_ms,
        to_ms=to_ms,
        window_size=window_size,
        window_time_zone=zone,
        customer_ids=tuple(dict.fromkeys(customers)),
        group_by=tuple(dict.fromkeys(group_by)),
        filters=filters,
    )


def meter_query_result(query: UsageQuery, rows: Sequence[UsageRow]) -> MeterQueryResult:
    keys = [key for key in query.group_by if key != CUSTOMER]
    return MeterQueryResult(
        from_=format_ms(query.from_ms),
        to=format_ms(query.to_ms),
        window_size=None if query.window_size is None else query.window_size.upper(),
        data=[
            MeterQueryRow(
                value=row.value,
                window_start=format_ms(row.window_start_ms),
                window_end=format_ms(row.window_end_ms),
                subject=row.customer_id,
                group_by={key: row.group_by.get(key) for key in keys},
                customer_id=row.customer_id,
            )
            for row in rows
        ],
    )


def meter_query_csv(result: MeterQueryResult, query: UsageQuery) -> str:
    """The rows as CSV: window_start, window_end, subject, one column per group key, value."""
    keys = [key for key in query.group_by if key != CUSTOMER]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["window_start", "window_end", "subject", *keys, "value"])
    for row in result.data:
        groups = [row.group_by.get(key) or "" for key in keys]
        writer.writerow([row.window_start, row.window_end, row.subject or "", *groups, row.value])
    return out.getvalue()


def _single_values(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    single: dict[str, str] = {}
    for name, value in params:
        if name in single and name in ("from", "to", "windowSize", "windowTimeZone"):
            raise InvalidRequest(f"{name}: given more than once", field=name)
        single[name] = value
    return single


def _repeated(params: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    repeated: dict[str, list[str]] = {}
    for name, value in params:
        repeated.setdefault(name, []).append(value)
    return repeated


def _time(single: Mapping[str, str], name: str, default: int) -> int:
    text = single.get(name)
    if not text:
        return default
    try:
        return parse_iso_ms(text.replace(" ", "+"))  # a '+' that came through unescaped
    except ValueError:
        raise InvalidRequest(
            f"{name}: {text[:40]!r} is not an RFC 3339 time such as 2025-01-01T00:00:00Z",
            field=name,
        ) from None


def _window_size(text: str | None) -> WindowSize | None:
    if not text:
        return None
    for size in get_args(WindowSize):
        if text.upper() == size.upper():
            found: WindowSize = size
            return found
    raise InvalidRequest(
        f"windowSize: {text[:20]!r} is not one of {', '.join(WINDOW_SIZES)}", field="windowSize"
    )


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRequest(
            f"windowTimeZone: {name[:40]!r} is not an IANA time zone such as Europe/Oslo",
            field="windowTimeZone",
        ) from None
    return name


def _group_key(key: str, group_keys: tuple[str, ...]) -> str:
    if key == SUBJECT:
        return CUSTOMER
    if key not in group_keys:
        shown = ", ".join((SUBJECT, *group_keys))
        raise InvalidRequest(f"groupBy: {key!r} is not one of {shown}", field="groupBy")
    return key


def _simple_filters(
    params: Sequence[tuple[str, str]], group_keys: tuple[str, ...]
) -> dict[str, GroupFilter]:
    """OpenMeter's older exact-match filter: `filterGroupBy[model]=gpt-4o`.

    The Python SDK sends it as one parameter holding the dict's Python text
    (`filterGroupBy={'model': 'gpt-4o'}`); that form, or JSON, is read too.
    """
    pairs: list[tuple[str, str]] = []
    for name, value in params:
        if name.startswith("filterGroupBy[") and name.endswith("]"):
            pairs.append((name[len("filterGroupBy[") : -1], value))
        elif name == "filterGroupBy":
            pairs.extend(_filter_object(value))
    filters: dict[str, GroupFilter] = {}
    for key, value in pairs:
        if key not in group_keys:
            raise InvalidRequest(
                f"filterGroupBy: {key!r} is not a groupBy key of this meter", field="filterGroupBy"
            )
        found = GroupFilter(frozenset([value]))
        filters[key] = filters[key].both(found) if key in filters else found
    return filters


def _filter_object(text: str) -> list[tuple[str, str]]:
    document: object = None
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError:
        if len(text) <= _MAX_FILTER_TEXT:
            try:
                document = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                document = None
    if not isinstance(document, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in document.items()
    ):
        raise InvalidRequest(
            "filterGroupBy: expected filterGroupBy[key]=value or an object of strings",
            field="filterGroupBy",
        )
    return list(document.items())
