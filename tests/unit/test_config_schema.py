"""The published JSON Schema of systemconfig.json, and how its errors read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jsonschema
import msgspec
import pytest
from click.testing import CliRunner

from meterd.cli import main
from meterd.config.loader import ConfigError, parse_config
from meterd.config.schema import schema

SOURCE = "systemconfig.json"
VALID: dict[str, Any] = {
    "periods": ["daily", {"name": "30d", "every": "30d"}],
    "events": {"api.calls": {"op": "sum"}},
    "webhooks": [{"url": "https://billing.example.com/hooks", "secret": "s"}],
}


def problems(doc: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(msgspec.json.encode(doc), SOURCE)
    return [str(problem) for problem in caught.value.problems]


def nodes(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in ("messages", "properties"):
                yield from nodes(value)
            elif key == "properties":
                for child in value.values():
                    yield from nodes(child)
    elif isinstance(node, list):
        for value in node:
            yield from nodes(value)


def test_meterd_config_schema_prints_a_valid_draft_2020_12_schema() -> None:
    result = CliRunner().invoke(main, ["config", "schema"], catch_exceptions=False)
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed == schema()


def test_the_shipped_sample_config_validates_against_the_schema() -> None:
    sample = json.loads(resources.files("meterd.config").joinpath("sample.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(sample)
    jsonschema.Draft202012Validator(schema()).validate(VALID)


def test_a_schema_line_in_the_config_is_accepted() -> None:
    config = parse_config(
        msgspec.json.encode({"$schema": "./systemconfig.schema.json", **VALID}), SOURCE
    )
    assert [period.name for period in config.periods] == ["daily", "30d"]


def test_objects_refuse_unknown_keys() -> None:
    # Every object with named properties says what else it takes; a typo is never ignored.
    for node in nodes(schema()):
        if "properties" in node:
            assert node.get("additionalProperties") is False, node


def test_every_pattern_has_plain_words() -> None:
    # A failing pattern is explained in words; the regex itself is never shown.
    for node in nodes(schema()):
        if "pattern" in node:
            assert "pattern" in node.get("messages", {}), node


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            {**VALID, "events": {"api.calls\n": {"op": "sum"}}},
            'events."api.calls\\n": not a valid event type name:'
            " use 1-64 characters from A-Z a-z 0-9 _ . : -",
        ),
        (
            {**VALID, "gracePeriod": "5m\n"},
            'gracePeriod: "5m\\n" is not a duration like "500ms", "30s", "5m", "2h" or "30d"',
        ),
        (
            {**VALID, "periods": [{"name": "p\n", "every": "1h"}]},
            'periods[0].name: "p\\n" is not a valid period name:'
            " use 1-32 characters from A-Z a-z 0-9 _ . -",
        ),
    ],
)
def test_a_value_ending_in_a_newline_does_not_match_a_pattern(doc: object, problem: str) -> None:
    # JSON Schema regexes are ECMA-262: "$" is the end of the text, not "before a last \n".
    assert problems(doc) == [problem]


def test_a_duration_beyond_a_century_is_refused() -> None:
    assert problems({**VALID, "gracePeriod": "36501d"}) == [
        'gracePeriod: "36501d" is too long: durations are at most 36500d (100 years)'
    ]


def test_several_missing_keys_are_each_named() -> None:
    assert problems({"$comment": "empty"}) == [
        "periods: missing (required)",
        "events: missing (required)",
    ]


def test_a_webhook_missing_url_and_secret_gets_both_problems() -> None:
    assert problems({**VALID, "webhooks": [{"enabled": True}]}) == [
        'webhooks[0]: needs a "secret" (or "secrets", a list of them)',
        "webhooks[0].url: missing (required)",
    ]


BAD_VALUES: list[object] = [None, True, 0, -1, 1.5, "", "x" * 300, [], [1], {}, {"a": 1}]
SCHEMA_WORDS = ("$defs", "^", "does not match", "is not valid under", "'type'", "properties")


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_messages_never_show_schema_internals(bad: object) -> None:
    # Put one wrong value at every place the config has, and read every message.
    docs: list[object] = [
        bad,
        {**VALID, "periods": bad},
        {**VALID, "periods": [bad]},
        {**VALID, "periods": [{"name": bad, "every": bad, "anchor": bad}]},
        {**VALID, "events": bad},
        {**VALID, "events": {"api.calls": bad}},
        {**VALID, "events": {"api.calls": {"op": bad, "description": bad}}},
        {**VALID, "webhooks": bad},
        {**VALID, "webhooks": [bad]},
        {
            **VALID,
            "webhooks": [
                {key: bad for key in ("url", "secret", "secrets", "enabled", "periods")}
                | {"retrySchedule": bad, "description": bad}
            ],
        },
        {**VALID, "timezone": bad, "gracePeriod": bad, "maxBatchSize": bad},
    ]
    for doc in docs:
        try:
            parse_config(msgspec.json.encode(doc), SOURCE)
        except ConfigError as error:
            for problem in error.problems:
                assert problem.message, problem
                assert not any(word in problem.message for word in SCHEMA_WORDS), problem
                assert len(problem.message) < 200, problem
