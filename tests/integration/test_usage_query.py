"""GET /usage/query (DESIGN §7): windows, zones, customers, groups, filters, CSV, bad input."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig
from tests.conftest import make_config

EVENTS = {
    "llm.tokens": EventTypeConfig("sum", group_by=("model", "direction")),
    "seats": EventTypeConfig("time_weighted_avg", group_by=("plan",)),
    "api.calls": EventTypeConfig("sum"),
}


@pytest.fixture
def config() -> SystemConfig:
    return make_config(periods=(PeriodConfig("daily"),), events=EVENTS, max_batch_size=1000)


def ev(kind: str, value: float, at: str, customer: str, **meta: Any) -> dict[str, Any]:
    return {
        "eventType": kind,
        "customerId": customer,
        "value": value,
        "timestamp": at,
        "metadata": meta,
    }


@pytest.fixture
async def loaded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    events = [
        ev("llm.tokens", 10, "2025-03-29T22:30:00Z", "a", model="m1", direction="in"),
        ev("llm.tokens", 20, "2025-03-30T10:00:00Z", "a", model="m1", direction="out"),
        ev("llm.tokens", 5, "2025-03-30T23:30:00Z", "b", model="m2", direction="in"),
        ev("llm.tokens", 1, "2025-03-31T12:00:00Z", "b"),
        ev("api.calls", 3, "2025-03-30T01:00:00Z", "a"),
        ev("api.calls", 4, "2025-03-30T02:00:00Z", "b"),
        ev("seats", 2, "2025-03-30T00:00:00Z", "a", plan="pro"),
        ev("seats", 4, "2025-03-30T00:00:00Z", "b", plan="pro"),
    ]
    response = await client.post("/usagebatch", json=events)
    assert response.status_code == 201, response.text
    return client


async def query(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/usage/query", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_daily_windows_in_a_dst_zone_by_customer(loaded: httpx.AsyncClient) -> None:
    # Europe/Oslo moves to summer time on 2025-03-30: that day has 23 hours.
    body = await query(
        loaded,
        meter="llm.tokens",
        **{"from": "2025-03-29T23:00:00Z", "to": "2025-04-01T22:00:00Z"},
        windowSize="day",
        windowTimeZone="Europe/Oslo",
        groupBy="customerId",
    )
    assert body["windowSize"] == "day" and body["windowTimeZone"] == "Europe/Oslo"
    assert [
        (r["windowStart"], r["windowEnd"], r["customerId"], r["value"]) for r in body["data"]
    ] == [
        ("2025-03-29T23:00:00.000Z", "2025-03-30T22:00:00.000Z", "a", 20),
        ("2025-03-30T22:00:00.000Z", "2025-03-31T22:00:00.000Z", "b", 6),
    ]
    assert all(r["groupBy"] == {} for r in body["data"])


async def test_group_by_dimension_with_filter_or_and_csv(loaded: httpx.AsyncClient) -> None:
    params = {
        "meter": "llm.tokens",
        "from": "2025-03-29T00:00:00Z",
        "to": "2025-04-01T00:00:00Z",
        "groupBy": ["model"],
        "filter": ["model:m1", "model:m2"],
    }
    body = await query(loaded, **params)
    assert [(r["groupBy"], r["value"], r["count"]) for r in body["data"]] == [
        ({"model": "m1"}, 30, 2),
        ({"model": "m2"}, 5, 1),
    ]
    response = await loaded.get("/usage/query", params=params, headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["windowStart", "windowEnd", "model", "value", "count"]
    assert [row[2:] for row in rows[1:]] == [["m1", "30", "2"], ["m2", "5", "1"]]


async def test_plain_meter_hourly_across_customers(loaded: httpx.AsyncClient) -> None:
    body = await query(
        loaded,
        meter="api.calls",
        **{"from": "2025-03-30T00:00:00Z", "to": "2025-03-30T03:00:00Z"},
        windowSize="hour",
    )
    assert [(r["windowStart"], r["value"]) for r in body["data"]] == [
        ("2025-03-30T01:00:00.000Z", 3),
        ("2025-03-30T02:00:00.000Z", 4),
    ]


async def test_time_weighted_levels_add_up_across_customers(loaded: httpx.AsyncClient) -> None:
    body = await query(
        loaded,
        meter="seats",
        **{"from": "2025-03-29T12:00:00Z", "to": "2025-03-30T12:00:00Z"},
        groupBy="plan",
    )
    # 6 seats held for the second half of the range.
    assert [(r["groupBy"], r["value"], r["count"]) for r in body["data"]] == [
        ({"plan": "pro"}, 3, 2)
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "meter"),
        ({"meter": "nope"}, "meter"),
        ({"meter": "llm.tokens", "groupBy": "region"}, "groupBy"),
        ({"meter": "llm.tokens", "filter": "region:eu"}, "filter"),
        ({"meter": "llm.tokens", "filter": "model"}, "filter"),
        ({"meter": "api.calls", "filter": "model:m1"}, "filter"),
        ({"meter": "llm.tokens", "windowSize": "fortnight"}, "windowSize"),
        ({"meter": "llm.tokens", "windowTimeZone": "Mars/Olympus"}, "windowTimeZone"),
        (
            {
                "meter": "llm.tokens",
                "windowSize": "hour",
                "from": "2020-01-01T00:00:00Z",
                "to": "2025-01-01T00:00:00Z",
            },
            "windowSize",
        ),
        ({"meter": "llm.tokens", "from": "yesterday"}, "from"),
        (
            {"meter": "llm.tokens", "from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"},
            "from",
        ),
    ],
)
async def test_bad_queries_are_4xx_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/usage/query", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == field
    assert body["error"].startswith(field + ":")


async def test_minute_windows_from_raw_events(loaded: httpx.AsyncClient) -> None:
    body = await query(
        loaded,
        meter="llm.tokens",
        windowSize="minute",
        **{"from": "2025-03-30T09:59:30Z", "to": "2025-03-30T10:02:00Z"},
    )
    assert body["windowSize"] == "minute"
    assert [(r["windowStart"], r["windowEnd"], r["value"]) for r in body["data"]] == [
        ("2025-03-30T10:00:00.000Z", "2025-03-30T10:01:00.000Z", 20)
    ]
