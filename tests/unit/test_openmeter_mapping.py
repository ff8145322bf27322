"""The OpenMeter mappings that need no server: config keys, JSONPaths, slugs, ids."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from meterd.config.loader import ConfigError, parse_config
from meterd.config.model import EventTypeConfig
from meterd.openmeter.cloudevents import event_id
from meterd.openmeter.jsonpath import parse_path, path_of
from meterd.openmeter.meters import find_meter, meter_slug

SOURCE = "systemconfig.json"


def parse(events: dict[str, Any]) -> Any:
    document = {"periods": ["daily"], "events": events}
    return parse_config(msgspec.json.encode(document), SOURCE)


def problems(events: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse(events)
    return [str(problem) for problem in raised.value.problems]


def test_value_property_and_slug_are_read() -> None:
    config = parse(
        {
            "llm.tokens": {"op": "sum", "valueProperty": "$.usage['out-put']", "slug": "tok"},
            "api.calls": {"op": "sum"},
        }
    )
    assert config.events["llm.tokens"] == EventTypeConfig(
        "sum", value_property="$.usage['out-put']", slug="tok"
    )
    assert config.events["api.calls"] == EventTypeConfig("sum")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"op": "sum", "valueProperty": "tokens"}, 'events."llm.tokens".valueProperty: '),
        ({"op": "sum", "valueProperty": "$.items[0]"}, "is not supported at character 8"),
        ({"op": "sum", "valueProperty": "$..a"}, "is not supported"),
        ({"op": "sum", "valueProperty": "$"}, "names no key"),
        ({"op": "sum", "valueProperty": 5}, "expected a string"),
        ({"op": "count", "valueProperty": "$.a"}, "a count meter reads no value"),
        ({"op": "sum", "slug": "Tokens!"}, 'events."llm.tokens".slug: "Tokens!" is not a slug'),
        ({"op": "sum", "slug": ""}, "is not a slug"),
    ],
)
def test_bad_keys_are_named_with_their_path(entry: dict[str, Any], expected: str) -> None:
    [problem] = problems({"llm.tokens": entry})
    assert expected in problem


def test_slugs_must_be_unique() -> None:
    [problem] = problems({"api.calls": {"op": "sum"}, "api-calls": {"op": "max"}})
    assert problem == (
        'events."api-calls": slug "api_calls" is also the slug of "api.calls";'
        ' set "slug" on one of them'
    )
    [clash] = problems({"a": {"op": "sum", "slug": "b"}, "b": {"op": "sum", "slug": "c"}})
    assert clash == 'events.a.slug: slug "b" is the event type of another meter'


@pytest.mark.parametrize(
    ("event_type", "slug"),
    [("api.calls", "api_calls"), ("response.time.ms", "response_time_ms"), ("A::b--c", "a_b_c")],
)
def test_derived_slugs(event_type: str, slug: str) -> None:
    assert meter_slug(event_type, EventTypeConfig("sum")) == slug


def test_find_meter_by_slug_or_event_type() -> None:
    events = {
        "llm.tokens": EventTypeConfig("sum", slug="tokens"),
        "api.calls": EventTypeConfig("sum"),
    }
    assert find_meter(events, "tokens") == ("llm.tokens", events["llm.tokens"])
    assert find_meter(events, "llm.tokens") == ("llm.tokens", events["llm.tokens"])
    assert find_meter(events, "api_calls") == ("api.calls", events["api.calls"])
    assert find_meter(events, "llm_tokens") is None


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("$.value", ("value",)),
        ("$.a.b", ("a", "b")),
        ("$['a-b']", ("a-b",)),
        ("$[\"x.y\"]['it\\'s']", ("x.y", "it's")),
    ],
)
def test_jsonpath_subset(text: str, keys: tuple[str, ...]) -> None:
    assert parse_path(text) == keys
    assert parse_path(path_of(keys)) == keys


def test_event_ids_are_deterministic_and_distinct() -> None:
    assert event_id("src", "1") == event_id("src", "1") == "ce:3:src1"
    assert event_id("ab", "c") != event_id("a", "bc")
    long = event_id("s" * 300, "1")
    assert long.startswith("ce#") and len(long) == 67
    assert long != event_id("s" * 300, "2")
