"""Meters in the config (DESIGN §6): groupBy, the new ops and their options."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from meterd.config.loader import ConfigError, parse_config
from meterd.config.model import EventTypeConfig

SOURCE = "meters.json"


def parse_events(events: dict[str, Any]) -> dict[str, EventTypeConfig]:
    doc = {"periods": ["daily"], "events": events}
    return parse_config(msgspec.json.encode(doc), SOURCE).events


def problems(events: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_events(events)
    return [str(problem) for problem in caught.value.problems]


def test_the_design_example_meters_load() -> None:
    events = parse_events(
        {
            "api.calls": {"op": "sum"},
            "llm.tokens": {"op": "sum", "groupBy": ["model", "direction"]},
            "active.users": {"op": "unique_count", "property": "userId"},
            "seats": {"op": "time_weighted_avg"},
            "latency.ms": {"op": "percentile", "percentile": 95},
            "gauge": {"op": "latest"},
        }
    )
    assert events["api.calls"] == EventTypeConfig("sum")
    assert events["llm.tokens"].group_by == ("model", "direction")
    assert events["active.users"] == EventTypeConfig("unique_count", property_key="userId")
    assert events["seats"].op == "time_weighted_avg"
    assert events["latency.ms"] == EventTypeConfig("percentile", percentile=95.0)
    assert events["gauge"].op == "last"
    assert events["llm.tokens"].reads_events and not events["api.calls"].reads_events


@pytest.mark.parametrize(
    ("meter", "problem"),
    [
        ({"op": "median"}, '.op: "median" is not one of'),
        ({"op": "unique_count"}, '.property: missing (required for op "unique_count")'),
        ({"op": "unique_count", "property": 3}, ".property: expected a non-empty string (a"),
        ({"op": "sum", "property": "userId"}, '.property: only allowed with op "unique_count"'),
        ({"op": "percentile"}, '.percentile: missing (required for op "percentile"'),
        ({"op": "percentile", "percentile": 0}, ".percentile: 0 is outside (0, 100]"),
        ({"op": "percentile", "percentile": 100.5}, ".percentile: 100.5 is outside (0, 100]"),
        ({"op": "percentile", "percentile": "95"}, ".percentile: expected a number in (0, 100]"),
        ({"op": "max", "percentile": 95}, '.percentile: only allowed with op "percentile"'),
        ({"op": "sum", "groupBy": "model"}, ".groupBy: expected an array of metadata keys"),
        ({"op": "sum", "groupBy": ["a", "b", "c", "d", "e", "f"]}, ".groupBy: at most 5 keys"),
        ({"op": "sum", "groupBy": [1]}, ".groupBy[0]: expected a non-empty string"),
        ({"op": "sum", "groupBy": ["m", "m"]}, ".groupBy: lists the same key twice"),
        ({"op": "sum", "groupBy": ["customerId"]}, '.groupBy[0]: "customerId" is always'),
    ],
)
def test_invalid_meters_fail_naming_the_json_path(meter: dict[str, Any], problem: str) -> None:
    [message] = problems({"m": meter})
    assert message.startswith("events.m" + problem.split(":")[0] + ":"), message
    assert problem in message


def test_percentile_100_and_small_values_are_allowed() -> None:
    events = parse_events(
        {"a": {"op": "percentile", "percentile": 100}, "b": {"op": "percentile", "percentile": 0.1}}
    )
    assert events["a"].percentile == 100.0
    assert events["b"].percentile == 0.1
