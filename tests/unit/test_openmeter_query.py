"""OpenMeter meter queries: what the SDK sends becomes a UsageQuery; rows go back out.

The query strings are built by OpenMeter's own SDK request builders, so these tests
read exactly what the SDK sends.
"""

from __future__ import annotations

import datetime
import itertools
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
from openmeter._generated.operations._operations import (
    build_meters_query_json_request,
    build_portal_portal_meters_query_json_request,
)

from meterd.errors import InvalidRequest
from meterd.meters.groups import GroupFilter
from meterd.openmeter.filters import parse_group_filters
from meterd.openmeter.query import (
    UsageQuery,
    UsageRow,
    meter_query_csv,
    meter_query_result,
    usage_query,
)
from meterd.timeutil import parse_iso_ms

KEYS = ("model", "direction")
NOW = parse_iso_ms("2025-01-20T12:00:00Z")
UTC = datetime.UTC


def sent_params(**kwargs: Any) -> list[tuple[str, str]]:
    request = build_meters_query_json_request("tokens", **kwargs)
    return parse_qsl(urlsplit(request.url).query, keep_blank_values=True)


def query_of(params: list[tuple[str, str]], **kwargs: Any) -> UsageQuery:
    options: dict[str, Any] = {
        "meter": "llm.tokens",
        "group_keys": KEYS,
        "now_ms": NOW,
        "first_data_ms": parse_iso_ms("2025-01-01T00:00:00Z"),
    }
    options.update(kwargs)
    return usage_query(params, **options)


def test_everything_the_sdk_sends_is_read() -> None:
    params = sent_params(
        from_parameter=datetime.datetime(2025, 1, 10, tzinfo=UTC),
        to=datetime.datetime(2025, 1, 12, tzinfo=UTC),
        window_size="HOUR",
        window_time_zone="Europe/Oslo",
        subject=["cus_1", "cus_2"],
        group_by=["subject", "model"],
        advanced_meter_group_by_filters={"model": {"$in": ["gpt-4o", "o1"]}},
        filter_group_by={"direction": "in"},
    )
    query = query_of(params)
    assert query == UsageQuery(
        meter="llm.tokens",
        from_ms=parse_iso_ms("2025-01-10T00:00:00Z"),
        to_ms=parse_iso_ms("2025-01-12T00:00:00Z"),
        window_size="hour",
        window_time_zone="Europe/Oslo",
        customer_ids=("cus_1", "cus_2"),
        group_by=("customerId", "model"),
        filters={
            "model": GroupFilter(frozenset({"gpt-4o", "o1"})),
            "direction": GroupFilter(frozenset({"in"})),
        },
    )


def test_defaults_from_first_data_to_now_in_utc_as_one_window() -> None:
    query = query_of([])
    assert query.from_ms == parse_iso_ms("2025-01-01T00:00:00Z")
    assert query.to_ms == NOW
    assert query.window_size is None
    assert query.window_time_zone == "UTC"
    assert query.customer_ids == () and query.group_by == () and query.filters == {}
    empty = query_of([], first_data_ms=None)
    assert empty.from_ms == empty.to_ms == NOW


def test_a_subject_filter_names_the_subject_on_each_row() -> None:
    query = query_of(sent_params(subject=["cus_1"]))
    assert query.group_by == ("customerId",)


def test_the_portal_token_fixes_the_subject() -> None:
    request = build_portal_portal_meters_query_json_request("tokens", group_by=["model"])
    params = parse_qsl(urlsplit(request.url).query) + [("subject", "someone-else")]
    query = query_of(params, subject="cus_9")
    assert query.customer_ids == ("cus_9",)
    assert query.group_by == ("customerId", "model")


def test_deep_object_filter_group_by() -> None:
    query = query_of([("filterGroupBy[model]", "o1")])
    assert query.filters == {"model": GroupFilter(frozenset({"o1"}))}


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ([("windowSize", "WEEK")], "windowSize", "not one of MINUTE, HOUR, DAY, MONTH"),
        ([("windowTimeZone", "Mars/Base")], "windowTimeZone", "not an IANA time zone"),
        ([("from", "yesterday")], "from", "not an RFC 3339 time"),
        ([("to", "2025-01-01T00:00:00Z"), ("from", "2025-01-02T00:00:00Z")], "from", "after"),
        ([("from", "2025-01-01"), ("from", "2025-01-02")], "from", "more than once"),
        ([("groupBy", "region")], "groupBy", "'region' is not one of subject, model, direction"),
        ([("filterGroupBy[region]", "eu")], "filterGroupBy", "not a groupBy key"),
        ([("filterGroupBy", "[1]")], "filterGroupBy", "an object of strings"),
        ([("advancedMeterGroupByFilters", "{")], "advancedMeterGroupByFilters", "not JSON"),
        (
            [("advancedMeterGroupByFilters", '{"region": {"$eq": "eu"}}')],
            "advancedMeterGroupByFilters",
            "'region' is not a groupBy key",
        ),
        (
            [("advancedMeterGroupByFilters", '{"model": {"$like": "gpt%"}}')],
            "advancedMeterGroupByFilters",
            "model.$like: not supported",
        ),
        (
            [("advancedMeterGroupByFilters", '{"model": {"$in": "gpt"}}')],
            "advancedMeterGroupByFilters",
            "model.$in: expected an array of strings",
        ),
    ],
)
def test_bad_parameters_name_the_field(
    params: list[tuple[str, str]], field: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        query_of(params)
    assert raised.value.details["field"] == field
    assert fragment in raised.value.message


VALUES = ["a", "b", "c", "d", None]
ATOMS: list[tuple[dict[str, Any], set[str | None]]] = [
    ({"$eq": "a"}, {"a"}),
    ({"$ne": "a"}, {"b", "c", "d", None}),
    ({"$in": ["a", "b"]}, {"a", "b"}),
    ({"$nin": ["a", "b"]}, {"c", "d", None}),
    ({"$in": ["c"], "$ne": "c"}, set()),
]


@pytest.mark.parametrize(("left", "right"), list(itertools.product(range(len(ATOMS)), repeat=2)))
def test_and_or_reduce_to_the_right_set(left: int, right: int) -> None:
    (a, a_set), (b, b_set) = ATOMS[left], ATOMS[right]
    for operator, expected in (("$and", a_set & b_set), ("$or", a_set | b_set)):
        text = msgspec.json.encode({"model": {operator: [a, {"$or": [b]}]}}).decode()
        found = parse_group_filters(text, keys=KEYS)["model"]
        assert {v for v in VALUES if found.matches(v)} == expected, (operator, a, b)


def test_rows_in_openmeter_shape_and_csv() -> None:
    query = query_of(
        [("windowSize", "DAY"), ("groupBy", "subject"), ("groupBy", "model")],
    )
    day = 86_400_000
    start = parse_iso_ms("2025-01-10T00:00:00Z")
    rows = [
        UsageRow(start, start + day, 12.5, 3, customer_id="cus_1", group_by={"model": "o1"}),
        UsageRow(start, start + day, 4.0, 1, customer_id="cus,2", group_by={"model": None}),
    ]
    result = meter_query_result(query, rows)
    body = msgspec.json.decode(msgspec.json.encode(result))
    assert body["from"] == "2025-01-01T00:00:00.000Z"
    assert body["to"] == "2025-01-20T12:00:00.000Z"
    assert body["windowSize"] == "DAY"
    assert body["data"][0] == {
        "value": 12.5,
        "windowStart": "2025-01-10T00:00:00.000Z",
        "windowEnd": "2025-01-11T00:00:00.000Z",
        "subject": "cus_1",
        "customerId": "cus_1",
        "groupBy": {"model": "o1"},
    }
    assert meter_query_csv(result, query).splitlines() == [
        "window_start,window_end,subject,model,value",
        "2025-01-10T00:00:00.000Z,2025-01-11T00:00:00.000Z,cus_1,o1,12.5",
        '2025-01-10T00:00:00.000Z,2025-01-11T00:00:00.000Z,"cus,2",,4.0',
    ]
