"""OpenMeter meter queries over raw HTTP against a naive reference over the raw events.

`advancedMeterGroupByFilters` with `$ne`/`$nin` (alone and nested in `$and`/`$or`
with `$eq`/`$in`) and `windowSize=MINUTE`, with voided events left out, on both
backends (SQL on the meter's covering index, SQL without one, and the Python fold).
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

import httpx
import pytest

from meterd.config.model import EventTypeConfig, SystemConfig
from meterd.timeutil import format_ms
from tests.conftest import API_KEY, make_config
from tests.integration.openmeter_reference import RawEvent, RowKey, reference_rows

T0 = 1_736_935_207_250  # 2025-01-15T10:00:07.250Z: not on a minute
SPAN_MS = 3 * 3_600_000
MODELS: list[Any] = ["a", "b", "c", None, 1, "missing"]  # "missing": no model key

EVENTS = {
    "llm.tokens": EventTypeConfig("sum", group_by=("model", "region")),
    "api.calls": EventTypeConfig("count"),
    "users": EventTypeConfig("unique_count", property_key="user", group_by=("model",)),
}
SLUGS = {"llm.tokens": "llm_tokens", "api.calls": "api_calls", "users": "users"}


@pytest.fixture
def config() -> SystemConfig:
    return make_config(events=EVENTS, max_batch_size=1000)


@pytest.fixture(autouse=True)
def bearer_only(client: httpx.AsyncClient) -> None:
    client.headers.pop("x-apikey")
    client.headers["Authorization"] = f"Bearer {API_KEY}"


def raw_events(event_type: str, count: int, seed: int) -> list[RawEvent]:
    rng = random.Random(seed)
    events = []
    for index in range(count):
        metadata: dict[str, Any] = {"region": rng.choice(["eu", "us"]), "user": f"u{index % 7}"}
        model = rng.choice(MODELS)
        if model != "missing":
            metadata["model"] = model
        events.append(
            RawEvent(
                id=f"{event_type}-{index}",
                customer_id=rng.choice(["c1", "c2", "c3"]),
                ts_ms=T0 + rng.randrange(SPAN_MS),
                value=rng.randrange(1, 50),
                metadata=metadata,
            )
        )
    return events


@pytest.fixture
async def stored(client: httpx.AsyncClient) -> dict[str, list[RawEvent]]:
    """Events of each meter, sent natively; every tenth voided (and left out here)."""
    kept: dict[str, list[RawEvent]] = {}
    for seed, event_type in enumerate(EVENTS):
        events = raw_events(event_type, 400, seed)
        body = [
            {
                "id": e.id,
                "eventType": event_type,
                "customerId": e.customer_id,
                "value": e.value,
                "timestamp": format_ms(e.ts_ms),
                "metadata": dict(e.metadata),
            }
            for e in events
        ]
        sent = await client.post("/usagebatch", json=body, headers={"x-apikey": API_KEY})
        assert sent.status_code == 201, sent.text
        for event in events[::10]:
            voided = await client.post(
                f"/events/{event.id}/void",
                json={"reason": "test"},
                headers={"x-apikey": API_KEY},
            )
            assert voided.status_code in (200, 201), voided.text
        kept[event_type] = [e for i, e in enumerate(events) if i % 10]
    return kept


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


async def answer(client: httpx.AsyncClient, event_type: str, **params: Any) -> dict[RowKey, float]:
    response = await client.get(f"/api/v1/meters/{SLUGS[event_type]}/query", params=params)
    assert response.status_code == 200, response.text
    rows: dict[RowKey, float] = {}
    keys = [k for k in params.get("groupBy", []) if k != "subject"]
    for row in response.json()["data"]:
        key: RowKey = (
            ms(row["windowStart"]),
            ms(row["windowEnd"]),
            row["subject"],
            tuple(row["groupBy"][k] for k in keys),
        )
        assert key not in rows
        rows[key] = row["value"]
    return rows


FILTERS: list[dict[str, Any]] = [
    {"model": {"$ne": "a"}},
    {"model": {"$nin": ["a", "b"]}},
    {"model": {"$nin": []}},
    {"model": {"$and": [{"$ne": "a"}, {"$in": ["a", "b", "1"]}]}},
    {"model": {"$or": [{"$eq": "a"}, {"$nin": ["a", "b", "c"]}]}},
    {"model": {"$and": [{"$nin": ["a"]}, {"$or": [{"$ne": "b"}, {"$eq": "c"}]}]}},
    {"model": {"$ne": "c", "$nin": ["1"]}},
    {"model": {"$ne": "b"}, "region": {"$nin": ["eu"]}},
    {"model": {"$in": ["a", "c"]}, "region": {"$ne": "us"}},
]


@pytest.mark.parametrize("filters", FILTERS, ids=[str(f) for f in FILTERS])
async def test_group_filters_match_the_reference(
    client: httpx.AsyncClient, stored: dict[str, list[RawEvent]], filters: dict[str, Any]
) -> None:
    start, end = T0 - 7_250, T0 + SPAN_MS + 60_000
    for window_size, group_by in ((None, ["model"]), ("HOUR", ["model", "region"])):
        params: dict[str, Any] = {
            "from": format_ms(start),
            "to": format_ms(end),
            "groupBy": group_by,
            "advancedMeterGroupByFilters": json.dumps(filters),
        }
        if window_size:
            params["windowSize"] = window_size
        got = await answer(client, "llm.tokens", **params)
        if window_size is None:
            expected = reference_rows(
                stored["llm.tokens"],
                op="sum",
                from_ms=start,
                to_ms=end,
                minute_windows=False,
                group_by=group_by,
                filters=filters,
            )
            assert got == expected
            assert got  # every case keeps something
        else:
            # Hour windows: the reference's minute rows added up per hour.
            hourly: dict[RowKey, float] = {}
            for (w_start, _, subject, groups), value in reference_rows(
                stored["llm.tokens"],
                op="sum",
                from_ms=start,
                to_ms=end,
                minute_windows=True,
                group_by=group_by,
                filters=filters,
            ).items():
                hour = w_start - w_start % 3_600_000
                key = (max(hour, start), min(hour + 3_600_000, end), subject, groups)
                hourly[key] = hourly.get(key, 0) + value
            assert got == hourly


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu", "America/St_Johns"])
async def test_minute_windows_match_the_reference(
    client: httpx.AsyncClient, stored: dict[str, list[RawEvent]], zone: str
) -> None:
    start, end = T0 + 1_000, T0 + 2 * 3_600_000 + 30_500  # cut first and last minutes
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("llm.tokens", "sum", {"groupBy": ["model"]}),
        ("llm.tokens", "sum", {"groupBy": ["subject"], "subject": ["c1", "c3"]}),
        (
            "llm.tokens",
            "sum",
            {"groupBy": ["model"], "advancedMeterGroupByFilters": '{"model": {"$ne": "a"}}'},
        ),
        ("llm.tokens", "sum", {}),
        ("api.calls", "count", {}),
        ("api.calls", "count", {"subject": ["c2"]}),
        ("users", "unique_count", {"groupBy": ["model"]}),
    ]
    for event_type, op, extra in cases:
        params = {
            "from": format_ms(start),
            "to": format_ms(end),
            "windowSize": "MINUTE",
            "windowTimeZone": zone,
            **extra,
        }
        got = await answer(client, event_type, **params)
        filters = extra.get("advancedMeterGroupByFilters")
        expected = reference_rows(
            stored[event_type],
            op=op,
            from_ms=start,
            to_ms=end,
            minute_windows=True,
            group_by=[k for k in extra.get("groupBy", []) if k != "subject"],
            subjects=extra.get("subject", []),
            filters=json.loads(filters) if filters else None,
            unique_property="user",
        )
        assert got == expected, (event_type, extra)
        assert len(got) > 30
        assert all(start <= w_start < w_end <= end for w_start, w_end, _, _ in got)
        assert all(w_end - w_start <= 60_000 for w_start, w_end, _, _ in got)


async def test_minute_windows_are_csv_too(
    client: httpx.AsyncClient, stored: dict[str, list[RawEvent]]
) -> None:
    start = T0 - 7_250
    params = {"from": format_ms(start), "to": format_ms(start + 600_000), "windowSize": "MINUTE"}
    response = await client.get(
        "/api/v1/meters/api_calls/query", params=params, headers={"Accept": "text/csv"}
    )
    assert response.status_code == 200
    lines = response.text.splitlines()
    expected = reference_rows(
        stored["api.calls"], op="count", from_ms=start, to_ms=start + 600_000, minute_windows=True
    )
    assert lines[0] == "window_start,window_end,subject,value"
    assert len(lines) == 1 + len(expected)
    assert sum(float(line.rsplit(",", 1)[1]) for line in lines[1:]) == sum(expected.values())


async def test_minute_windows_stop_at_ten_thousand(client: httpx.AsyncClient) -> None:
    start = T0 - 7_250
    url = "/api/v1/meters/api_calls/query"
    most = {"from": format_ms(start), "to": format_ms(start + 10_000 * 60_000)}
    allowed = await client.get(url, params={**most, "windowSize": "MINUTE"})
    assert allowed.status_code == 200
    too_many = {"from": format_ms(start), "to": format_ms(start + 10_000 * 60_000 + 1)}
    refused = await client.get(url, params={**too_many, "windowSize": "MINUTE"})
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["field"] == "windowSize"
    assert "10000" in refused.json()["detail"]


async def test_a_filter_that_keeps_nothing_answers_no_rows(
    client: httpx.AsyncClient, stored: dict[str, list[RawEvent]]
) -> None:
    contradiction = {"model": {"$and": [{"$eq": "a"}, {"$ne": "a"}]}}
    params = {
        "from": format_ms(T0 - 7_250),
        "to": format_ms(T0 + SPAN_MS),
        "windowSize": "MINUTE",
        "advancedMeterGroupByFilters": json.dumps(contradiction),
    }
    assert await answer(client, "llm.tokens", **params) == {}
