"""OpenMeter's own Python SDK against meterd: ingest and meters, unchanged client code.

The app runs in uvicorn on 127.0.0.1 in the test's event loop (the SDK speaks real
HTTP through aiohttp), on a real database, both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from corehttp.exceptions import ClientAuthenticationError, HttpResponseError
from openmeter.aio import Client
from openmeter.models import Event
from starlette.applications import Starlette

from meterd.config.loader import parse_config
from meterd.config.model import EventTypeConfig, SystemConfig
from meterd.openmeter.cloudevents import event_id
from meterd.storage.base import EventQuery, KeyIdentity, Store
from meterd.timeutil import now_ms
from tests.conftest import API_KEY, make_config
from tests.integration.openmeter_reference import RawEvent, reference_rows

T0 = datetime.datetime(2025, 1, 15, 10, 0, tzinfo=datetime.UTC)


@pytest.fixture
def config() -> SystemConfig:
    return make_config(
        events={
            "api.calls": EventTypeConfig("sum"),
            "llm.tokens": EventTypeConfig(
                "sum", group_by=("model",), value_property="$.tokens", slug="tokens_total"
            ),
            "page.views": EventTypeConfig("count"),
            "storage.bytes": EventTypeConfig("max"),
            "seats": EventTypeConfig("last"),
        }
    )


@pytest.fixture
async def base_url(app: Starlette) -> AsyncIterator[str]:
    """The app (its lifespan already running) served over HTTP on a free local port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def sdk(base_url: str) -> AsyncIterator[Client]:
    client = Client(endpoint=base_url, token=API_KEY)
    async with client:
        yield client


def event(**fields: Any) -> Event:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "sdk-test",
        "type": "llm.tokens",
        "subject": "cus_1",
        "time": T0,
        "data": {"tokens": 120, "model": "gpt-4o"},
    }
    body.update(fields)
    return Event(body)


async def stored(store: Store) -> list[Any]:
    return await store.list_events(EventQuery(limit=1000))


async def test_ingest_one_event(sdk: Client, store: Store) -> None:
    # The SDK raises unless the answer is 204.
    await sdk.events.ingest_event(event())
    [stored_event] = await stored(store)
    assert stored_event.event_type == "llm.tokens"
    assert stored_event.customer_id == "cus_1"
    assert stored_event.value == 120
    assert stored_event.ts_ms == int(T0.timestamp() * 1000)


async def test_ingest_a_batch_and_retry_it(sdk: Client, store: Store) -> None:
    batch = [event(id=f"evt-{i}", data={"tokens": i, "model": "m"}) for i in range(50)]
    await sdk.events.ingest_events(batch)
    await sdk.events.ingest_events(batch)
    events = await stored(store)
    assert len(events) == 50
    assert sum(e.value for e in events) == sum(range(50))


async def test_ingest_json_one_or_many(sdk: Client, store: Store) -> None:
    await sdk.events.ingest_events_json(event(id="one"))
    await sdk.events.ingest_events_json([event(id="two"), event(id="three")])
    assert len(await stored(store)) == 3


async def test_an_invalid_event_raises_with_the_problem(sdk: Client, store: Store) -> None:
    with pytest.raises(HttpResponseError) as raised:
        await sdk.events.ingest_event(event(type="unknown.type"))
    assert raised.value.status_code == 400
    assert raised.value.model is not None
    assert "type: 'unknown.type' is not a configured" in raised.value.model["detail"]
    assert await stored(store) == []


async def test_a_wrong_key_is_an_authentication_error(base_url: str, store: Store) -> None:
    async with Client(endpoint=base_url, token="not-a-key") as wrong:
        with pytest.raises(ClientAuthenticationError):
            await wrong.events.ingest_event(event())
    assert await stored(store) == []


async def test_list_and_get_meters(sdk: Client) -> None:
    meters = await sdk.meters.list()
    by_slug = {meter.slug: meter for meter in meters}
    assert set(by_slug) == {"api_calls", "tokens_total", "page_views", "storage_bytes", "seats"}
    tokens = by_slug["tokens_total"]
    assert tokens.event_type == "llm.tokens"
    assert tokens.aggregation == "SUM"
    assert tokens.value_property == "$.tokens"
    assert tokens.group_by == {"model": "$.model"}
    assert isinstance(tokens.created_at, datetime.datetime)
    assert by_slug["page_views"].aggregation == "COUNT"
    assert by_slug["page_views"].value_property is None
    assert by_slug["seats"].aggregation == "LATEST"
    assert by_slug["api_calls"].value_property == "$.value"
    for id_or_slug in ("tokens_total", "llm.tokens"):
        meter = await sdk.meters.get(id_or_slug)
        assert meter.id == "llm.tokens"
        assert meter.slug == "tokens_total"


async def test_an_unknown_meter_is_not_found(sdk: Client) -> None:
    with pytest.raises(HttpResponseError) as raised:
        await sdk.meters.get("no_such_meter")
    assert raised.value.status_code == 404


def readme_section() -> str:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    return readme.split("## Coming from OpenMeter", 1)[1].split("\n## ", 1)[0]


def test_the_readme_meters_are_the_ones_these_tests_run(config: SystemConfig) -> None:
    fragment = readme_section().split("```json\n", 1)[1].split("```", 1)[0]
    document = b'{"periods": ["monthly"], ' + fragment.encode() + b"}"
    readme_events = parse_config(document, "README.md").events
    for event_type, meter in readme_events.items():
        assert config.events[event_type] == meter


async def test_the_readme_snippet_runs_as_written(base_url: str, store: Store) -> None:
    snippet = readme_section().split("```python\n", 1)[1].split("```", 1)[0]
    assert 'endpoint="http://127.0.0.1:8080", token="mk_..."' in snippet
    code = snippet.replace("http://127.0.0.1:8080", base_url).replace('"mk_..."', repr(API_KEY))
    namespace: dict[str, Any] = {}
    printed = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md", "exec"), namespace)

    await asyncio.to_thread(run)
    [line] = [x for x in printed.getvalue().splitlines() if x.startswith("tokens_total ")]
    assert line.split() == ["tokens_total", "llm.tokens", "MeterAggregation.SUM", "$.tokens"]
    rows = [(row.group_by["model"], row.value) for row in namespace["usage"].data]
    assert sorted(rows) == [("gpt-4o", 1200), ("o1", 300)]
    assert all(
        row.window_end - row.window_start <= datetime.timedelta(minutes=1)
        for row in namespace["usage"].data
    )
    assert namespace["token"].subject == "sub_ABC123" and namespace["token"].token
    events = await stored(store)
    assert sorted(e.value for e in events) == [300, 300, 1200]
    assert {e.customer_id for e in events} == {"sub_ABC123"}


async def test_portal_token_through_the_sdk(sdk: Client, base_url: str) -> None:
    token = await sdk.portal.portal_tokens.create(
        {"subject": "cus_1", "allowedMeterSlugs": ["tokens_total"]}
    )
    assert token.subject == "cus_1"
    assert token.allowed_meter_slugs == ["tokens_total"]
    assert token.token
    async with Client(endpoint=base_url, token="pt_not-a-token") as wrong:
        with pytest.raises(ClientAuthenticationError):
            await wrong.portal.portal_meters.query_json("tokens_total")
    await sdk.portal.portal_tokens.invalidate({"subject": "cus_1"})
    async with Client(endpoint=base_url, token=token.token) as revoked:
        with pytest.raises(ClientAuthenticationError):
            await revoked.portal.portal_meters.query_json("tokens_total")


async def test_query_windows_groups_and_filters_through_the_sdk(sdk: Client) -> None:
    day = datetime.timedelta(days=1)
    batch = [
        event(id="q1", time=T0, data={"tokens": 10, "model": "gpt-4o"}),
        event(id="q2", time=T0, data={"tokens": 5, "model": "o1"}),
        event(id="q3", time=T0 + day, data={"tokens": 7, "model": "gpt-4o"}),
        event(id="q4", subject="cus_2", time=T0, data={"tokens": 100, "model": "gpt-4o"}),
    ]
    await sdk.events.ingest_events(batch)
    start = T0.replace(hour=0)
    result = await sdk.meters.query_json(
        "tokens_total",
        from_parameter=start,
        to=start + 3 * day,
        window_size="DAY",
        subject=["cus_1"],
        group_by=["model"],
        advanced_meter_group_by_filters={"model": {"$in": ["gpt-4o"]}},  # type: ignore[dict-item]
    )
    rows = [(row.window_start, row.subject, row.group_by, row.value) for row in result.data]
    assert rows == [
        (start, "cus_1", {"model": "gpt-4o"}, 10),
        (start + day, "cus_1", {"model": "gpt-4o"}, 7),
    ]
    total = await sdk.meters.query_json("tokens_total", from_parameter=start, to=start + 3 * day)
    assert [row.value for row in total.data] == [122]


async def test_minute_windows_and_refused_values_through_the_sdk(
    sdk: Client, store: Store, base_url: str
) -> None:
    """MINUTE windows with `$ne`/`$nin` nested in `$and`/`$or`, voids left out, as the
    naive reference over the raw events computes them."""
    second = datetime.timedelta(seconds=1)
    models: list[str | None] = ["gpt-4o", "o1", None, "mini", "o1", None, "gpt-4o"]
    raw: list[RawEvent] = []
    batch = []
    for index in range(70):
        model = models[index % len(models)]
        data: dict[str, Any] = {"tokens": index + 1}
        if model is not None:
            data["model"] = model
        at = T0 + index * 7 * second + datetime.timedelta(milliseconds=index)
        subject = "cus_1" if index % 3 else "cus_2"
        batch.append(event(id=f"m{index}", time=at, subject=subject, data=data))
        raw.append(
            RawEvent(f"m{index}", subject, int(at.timestamp() * 1000), index + 1, {"model": model})
        )
    await sdk.events.ingest_events(batch)
    key = KeyIdentity(name="test", prefix="mk_test")
    for voided in (3, 40):
        await store.void_event(
            event_id=event_id("sdk-test", f"m{voided}"), reason="test", key=key, now_ms=now_ms()
        )
    kept = [e for e in raw if e.id not in ("m3", "m40")]
    start, end = T0 + 2 * second, T0 + 9 * 60 * second
    filters: list[dict[str, Any]] = [
        {"model": {"$ne": "o1"}},
        {"model": {"$nin": ["o1", "gpt-4o"]}},
        {"model": {"$and": [{"$ne": "mini"}, {"$or": [{"$in": ["o1"]}, {"$nin": ["gpt-4o"]}]}]}},
        {"model": {"$or": [{"$eq": "mini"}, {"$and": [{"$nin": ["o1"]}, {"$ne": "gpt-4o"}]}]}},
    ]
    for found in filters:
        result = await sdk.meters.query_json(
            "tokens_total",
            from_parameter=start,
            to=end,
            window_size="MINUTE",
            window_time_zone="Europe/Budapest",
            group_by=["model", "subject"],
            advanced_meter_group_by_filters=found,
        )
        got = {
            (
                int(row.window_start.timestamp() * 1000),
                int(row.window_end.timestamp() * 1000),
                row.subject,
                (row.group_by.get("model"),),
            ): row.value
            for row in result.data
        }
        expected = reference_rows(
            kept,
            op="sum",
            from_ms=int(start.timestamp() * 1000),
            to_ms=int(end.timestamp() * 1000),
            minute_windows=True,
            group_by=["model"],
            subjects=["cus_1", "cus_2"],
            filters=found,
        )
        assert got == expected, found
        assert len(got) > 5
    token = await sdk.portal.portal_tokens.create(
        {"subject": "cus_1", "allowedMeterSlugs": ["tokens_total"]}
    )
    async with Client(endpoint=base_url, token=token.token) as portal:
        mine = await portal.portal.portal_meters.query_json(
            "tokens_total", from_parameter=start, to=end, window_size="MINUTE"
        )
    expected_mine = reference_rows(
        kept,
        op="sum",
        from_ms=int(start.timestamp() * 1000),
        to_ms=int(end.timestamp() * 1000),
        minute_windows=True,
        subjects=["cus_1"],
    )
    assert {
        (int(r.window_start.timestamp() * 1000), int(r.window_end.timestamp() * 1000)): r.value
        for r in mine.data
    } == {(w_start, w_end): value for (w_start, w_end, _, _), value in expected_mine.items()}
