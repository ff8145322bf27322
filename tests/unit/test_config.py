"""Loading and validating systemconfig.json."""

from __future__ import annotations

import base64
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest

from meterd.config.loader import (
    SAMPLE_SOURCE,
    ConfigError,
    ConfigProblem,
    load_config,
    parse_config,
    sample_config,
)
from meterd.config.model import (
    DEFAULT_RETRY_SCHEDULE_MS,
    EventTypeConfig,
    PeriodConfig,
    WebhookConfig,
)
from meterd.errors import MeterdError

SOURCE = "systemconfig.json"
SECRET = "whsec_" + base64.b64encode(bytes(range(24))).decode()
OPS_LIST = (
    "sum, avg, min, max, count, first, last, unique_count, percentile, time_weighted_avg, latest"
)
CALENDAR_LIST = "hourly, daily, weekly, monthly, yearly"


def document(**sections: Any) -> dict[str, Any]:
    """A valid config, with top-level `sections` replaced (None removes one)."""
    doc: dict[str, Any] = {
        "periods": ["hourly", "daily"],
        "events": {"api.calls": {"op": "sum"}},
        "webhooks": [{"url": "https://billing.example.com/hooks", "secret": SECRET}],
    }
    doc.update(sections)
    return {key: value for key, value in doc.items() if value is not None}


def webhook(**fields: Any) -> dict[str, Any]:
    """One valid webhook, with `fields` replaced (None removes one)."""
    hook: dict[str, Any] = {"url": "https://billing.example.com/hooks", "secret": SECRET}
    hook.update(fields)
    return {key: value for key, value in hook.items() if value is not None}


def custom(**fields: Any) -> dict[str, Any]:
    """A custom-period config whose only period is `fields`."""
    return document(periods=[fields], webhooks=None)


def parse(doc: object) -> Any:
    return parse_config(msgspec.json.encode(doc), SOURCE)


def problems(doc: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(doc)
    return [str(problem) for problem in caught.value.problems]


def text_problems(text: bytes) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    return [str(problem) for problem in caught.value.problems]


# --- valid configs ----------------------------------------------------------------


def test_the_design_example_loads_with_defaults() -> None:
    config = parse(
        {
            "periods": ["hourly", "daily", "weekly", "monthly"],
            "events": {
                "api.calls": {"op": "sum"},
                "storage.bytes": {"op": "max"},
                "response.time.ms": {"op": "avg"},
            },
            "webhooks": [
                {
                    "url": "https://billing.example.com/hooks/usage",
                    "secret": SECRET,
                    "enabled": True,
                }
            ],
        }
    )
    assert config.periods == tuple(
        PeriodConfig(name) for name in ("hourly", "daily", "weekly", "monthly")
    )
    assert all(period.is_calendar for period in config.periods)
    assert config.events == {
        "api.calls": EventTypeConfig("sum"),
        "storage.bytes": EventTypeConfig("max"),
        "response.time.ms": EventTypeConfig("avg"),
    }
    assert config.webhooks == (
        WebhookConfig(
            url="https://billing.example.com/hooks/usage",
            secrets=(SECRET,),
            enabled=True,
            periods=None,
            retry_schedule_ms=DEFAULT_RETRY_SCHEDULE_MS,
        ),
    )
    assert config.timezone == "UTC"
    assert config.grace_period_ms == 0
    assert config.max_batch_size == 1000
    assert config.source == SOURCE


def test_every_extension_is_read() -> None:
    config = parse(
        {
            "periods": [
                "monthly",
                "yearly",
                {"name": "30d", "every": "30d", "anchor": "2025-01-15T00:00:00Z"},
            ],
            "events": {"api.calls": {"op": "count"}, "seats": {"op": "last"}},
            "webhooks": [
                {
                    "url": "http://127.0.0.1:8000/hook",
                    "secrets": ["new-secret", "old-secret"],
                    "enabled": False,
                    "periods": ["30d", "monthly"],
                    "retrySchedule": ["1s", "1m", "1h"],
                }
            ],
            "timezone": "Europe/Oslo",
            "gracePeriod": "1h",
            "maxBatchSize": 5000,
        }
    )
    assert config.periods[2] == PeriodConfig(
        "30d", every_ms=2_592_000_000, anchor_ms=1_736_899_200_000
    )
    assert config.period("30d") is config.periods[2]
    hook = config.webhooks[0]
    assert hook.secrets == ("new-secret", "old-secret")
    assert hook.enabled is False
    assert hook.periods == ("30d", "monthly")
    assert hook.retry_schedule_ms == (1_000, 60_000, 3_600_000)
    assert config.timezone == "Europe/Oslo"
    assert config.grace_period_ms == 3_600_000
    assert config.max_batch_size == 5000


def test_webhooks_are_optional() -> None:
    assert parse(document(webhooks=None)).webhooks == ()
    assert parse(document(webhooks=[])).webhooks == ()


def test_top_level_keys_starting_with_dollar_or_underscore_are_comments() -> None:
    config = parse(document(**{"$comment": "x", "_comment": ["any", {"json": 1}], "$schema": 1}))
    assert config.events == {"api.calls": EventTypeConfig("sum")}


def test_the_codehooks_template_config_loads() -> None:
    # The saas-metering-webhook example: a "_comment" and "description" fields.
    config = parse(
        {
            "_comment": "Configuration is file-based only.",
            "periods": ["hourly", "daily", "weekly", "monthly"],
            "events": {
                "api.calls": {"op": "sum", "description": "Total API calls"},
                "users.active": {"op": "count", "description": "Active sessions"},
            },
            "webhooks": [
                {
                    "url": "https://your-billing-system.com/webhooks/metering",
                    "secret": "any codehooks secret",
                    "enabled": True,
                    "description": "Billing system webhook",
                }
            ],
        }
    )
    assert config.events["users.active"] == EventTypeConfig("count")
    assert config.webhooks[0].secrets == ("any codehooks secret",)


def test_secret_comes_before_secrets_and_duplicates_are_dropped() -> None:
    config = parse(document(webhooks=[webhook(secret="a", secrets=["b", "a", "c", "b"])]))
    assert config.webhooks[0].secrets == ("a", "b", "c")


def test_a_custom_period_anchor_defaults_to_the_epoch() -> None:
    config = parse(custom(name="fortnight", every="2w"))
    assert config.periods == (PeriodConfig("fortnight", every_ms=1_209_600_000, anchor_ms=0),)
    assert not config.periods[0].is_calendar


@pytest.mark.parametrize(
    ("anchor", "anchor_ms"),
    [
        ("2025-01-15T00:00:00Z", 1_736_899_200_000),
        ("2025-01-15T00:00:00", 1_736_899_200_000),
        ("2025-01-15", 1_736_899_200_000),
        ("2025-01-15T05:45:00+05:45", 1_736_899_200_000),
        ("2025-01-15T00:15:00.000Z", 1_736_900_100_000),
        ("1969-12-31T23:45:00Z", -900_000),
    ],
)
def test_custom_period_anchors_are_iso_instants(anchor: str, anchor_ms: int) -> None:
    config = parse(custom(name="p", every="15m", anchor=anchor))
    assert config.periods[0].anchor_ms == anchor_ms


@pytest.mark.parametrize("name", ["a", "30d", "A-z_0.9", "x" * 32])
def test_custom_period_names(name: str) -> None:
    assert parse(custom(name=name, every="1h")).periods[0].name == name


@pytest.mark.parametrize("name", ["a", "api.calls", "svc:requests", "A-Z_0.9:x", "x" * 64, "_x"])
def test_event_type_names(name: str) -> None:
    assert name in parse(document(events={name: {"op": "max"}})).events


@pytest.mark.parametrize("size", [1, 100_000])
def test_max_batch_size_bounds_are_inclusive(size: int) -> None:
    assert parse(document(maxBatchSize=size)).max_batch_size == size


@pytest.mark.parametrize(
    "secret",
    [
        SECRET,
        "whsec_c2VjcmV0LXRlc3Qta2V5",
        "plain codehooks secret",
        "whsec",
        # The codehooks template's own placeholder: any string is an HMAC key there.
        "whsec_your_webhook_secret",
    ],
)
def test_accepted_secrets(secret: str) -> None:
    assert parse(document(webhooks=[webhook(secret=secret)])).webhooks[0].secrets == (secret,)


# --- the packaged sample ----------------------------------------------------------


def test_the_packaged_sample_loads() -> None:
    config = sample_config()
    assert config.source == SAMPLE_SOURCE == "<built-in sample>"
    assert [period.name for period in config.periods] == ["hourly", "daily", "weekly", "monthly"]
    assert config.events == {
        "api.calls": EventTypeConfig("sum"),
        "storage.bytes": EventTypeConfig("max"),
        "response.time.ms": EventTypeConfig("avg"),
    }
    (hook,) = config.webhooks
    assert hook.url == "http://127.0.0.1:9999/hooks/usage"
    assert hook.enabled is False
    (secret,) = hook.secrets
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24


def test_the_sample_file_gives_the_same_config_through_load_config() -> None:
    with resources.as_file(resources.files("meterd.config").joinpath("sample.json")) as path:
        loaded = load_config(path)
    assert loaded.source == str(path)
    assert msgspec.structs.replace(loaded, source=SAMPLE_SOURCE) == sample_config()


# --- files ------------------------------------------------------------------------


def test_load_config_reads_a_file_and_records_its_path(tmp_path: Path) -> None:
    path = tmp_path / "systemconfig.json"
    path.write_bytes(msgspec.json.encode(document()))
    assert load_config(path).source == str(path)
    assert load_config(str(path)).source == str(path)


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.source == str(path)
    assert str(error).splitlines() == [
        f"{path}: cannot load config (1 problem)",
        "cannot read the file: No such file or directory",
    ]


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path)


def test_a_utf8_byte_order_mark_is_allowed() -> None:
    assert parse_config(b"\xef\xbb\xbf" + msgspec.json.encode(document()), SOURCE).events


# --- invalid JSON -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            b'{\n  "periods": ["daily"],\n}',
            "invalid JSON at line 3, column 1: trailing comma in object",
        ),
        (b'{\n  "periods": [daily]\n}', "invalid JSON at line 2, column 15: invalid character"),
        (
            b'{"periods": ["daily"]',
            "invalid JSON at line 1, column 22: the text ends before the JSON does",
        ),
        (b"", "the file is empty"),
        (b" \n\t\n", "the file is empty"),
        (b'{"\xc3\xa9": "\xff"}', "not UTF-8 text at line 1, column 8"),
        (b"[]", "the top level must be a JSON object, got an array"),
        (b'"periods"', 'the top level must be a JSON object, got "periods"'),
        (b"null", "the top level must be a JSON object, got null"),
    ],
)
def test_unusable_text_is_reported_with_its_line_and_column(text: bytes, problem: str) -> None:
    assert text_problems(text) == [problem]


def test_text_after_the_object_is_reported_on_its_line() -> None:
    (problem,) = text_problems(b'{"periods": ["daily"]}\n\n{"events": {}}')
    assert problem.startswith("invalid JSON at line 3, ")
    assert problem.endswith(": trailing characters")


def test_a_number_json_cannot_hold_is_reported() -> None:
    (problem,) = text_problems(b'{"maxBatchSize": 1e999}')
    assert problem.startswith("invalid JSON: ")


# --- the error itself -------------------------------------------------------------


def test_the_message_names_the_file_then_one_line_per_problem() -> None:
    doc = document(events={"api.calls": {"op": "median"}}, maxBatchSize="abc")
    with pytest.raises(ConfigError) as caught:
        parse(doc)
    error = caught.value
    assert isinstance(error, MeterdError)
    assert error.source == SOURCE
    assert error.problems == [
        ConfigProblem('events."api.calls".op', f'"median" is not one of {OPS_LIST}'),
        ConfigProblem("maxBatchSize", 'expected an integer, got "abc"'),
    ]
    assert str(error) == "\n".join(
        [
            "systemconfig.json: cannot load config (2 problems)",
            f'events."api.calls".op: "median" is not one of {OPS_LIST}',
            'maxBatchSize: expected an integer, got "abc"',
        ]
    )


def test_all_problems_are_reported_together_in_document_order() -> None:
    doc = {
        "periods": ["hourly", "fortnightly"],
        "events": {"api.calls": {"op": "median"}, "bad name": {"op": "sum"}},
        "webhooks": [{"url": "ftp://example.com", "secret": ""}],
        "timezone": "Mars/Olympus",
        "gracePeriod": "soon",
        "maxBatchSize": 0,
        "retries": 3,
    }
    assert problems(doc) == [
        "retries: unknown key (expected one of periods, events, webhooks, timezone,"
        " gracePeriod, maxBatchSize, plans, invoicing, portal, unknownFields, maxEventAge,"
        " alertThresholds)",
        f'periods[1]: "fortnightly" is not one of {CALENDAR_LIST}'
        ' (a custom period is an object: {"name", "every", "anchor"})',
        f'events."api.calls".op: "median" is not one of {OPS_LIST}',
        'events."bad name": not a valid event type name:'
        " use 1-64 characters from A-Z a-z 0-9 _ . : -",
        'webhooks[0].url: "ftp://example.com" is not an http:// or https:// URL with a host',
        "webhooks[0].secret: must not be empty",
        'timezone: "Mars/Olympus" is not an IANA time zone like "Europe/Oslo"',
        'gracePeriod: "soon" is not a duration like "500ms", "30s", "5m", "2h" or "30d"',
        "maxBatchSize: 0 is out of range: it must be 1 to 100000",
    ]


def test_keys_that_are_not_identifiers_are_quoted_in_paths() -> None:
    assert problems(document(events={'say "hi"': {"op": 1}})) == [
        'events."say \\"hi\\"": not a valid event type name:'
        " use 1-64 characters from A-Z a-z 0-9 _ . : -",
        'events."say \\"hi\\"".op: expected a string, got 1',
    ]


def test_secrets_never_appear_in_messages() -> None:
    leaked = "whsec_TOP-SECRET!"
    [problem] = problems(document(webhooks=[webhook(url="ftp://billing", secret=leaked)]))
    assert problem.startswith("webhooks[0].url")
    assert "TOP-SECRET" not in problem


def test_a_webhook_naming_a_broken_period_does_not_repeat_its_problem() -> None:
    doc = document(
        periods=["daily", {"name": "sprint", "every": "7m"}],
        webhooks=[webhook(periods=["sprint"])],
    )
    assert problems(doc) == ['periods[1].every: "7m" is not a positive multiple of 15 minutes']


# --- one problem at a time --------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], str]] = [
    # top level
    (
        "top-level typo",
        document(timezon="UTC"),
        'timezon: unknown key (did you mean "timezone"?)',
    ),
    ("periods missing", document(periods=None), "periods: missing (required)"),
    ("periods not array", document(periods="daily"), 'periods: expected an array, got "daily"'),
    ("periods empty", document(periods=[]), "periods: must list at least one period"),
    # calendar periods
    (
        "period item number",
        document(periods=["daily", 7]),
        "periods[1]: expected a period name or an object, got 7",
    ),
    (
        "calendar name case",
        document(periods=["Daily"]),
        f'periods[0]: "Daily" is not one of {CALENDAR_LIST}'
        ' (a custom period is an object: {"name", "every", "anchor"})',
    ),
    (
        "period listed twice",
        document(periods=["daily", "hourly", "daily"]),
        'periods[2]: "daily" is already used by periods[0]',
    ),
    # custom periods
    (
        "custom name reused",
        document(periods=[{"name": "p", "every": "1h"}, {"name": "p", "every": "2h"}]),
        'periods[1].name: "p" is already used by periods[0].name',
    ),
    ("custom name missing", custom(every="1h"), "periods[0].name: missing (required)"),
    ("custom every missing", custom(name="p"), "periods[0].every: missing (required)"),
    (
        "custom name not a string",
        custom(name=30, every="1h"),
        "periods[0].name: expected a string, got 30",
    ),
    (
        "custom name characters",
        custom(name="30 days", every="30d"),
        'periods[0].name: "30 days" is not a valid period name:'
        " use 1-32 characters from A-Z a-z 0-9 _ . -",
    ),
    (
        "custom name too long",
        custom(name="x" * 33, every="30d"),
        f'periods[0].name: "{"x" * 33}" is not a valid period name:'
        " use 1-32 characters from A-Z a-z 0-9 _ . -",
    ),
    (
        "custom name empty",
        custom(name="", every="30d"),
        'periods[0].name: "" is not a valid period name:'
        " use 1-32 characters from A-Z a-z 0-9 _ . -",
    ),
    (
        "custom name is a calendar name",
        custom(name="monthly", every="30d"),
        'periods[0].name: "monthly" is a calendar period; give the custom one another name',
    ),
    (
        "custom every not on buckets",
        custom(name="p", every="7m"),
        'periods[0].every: "7m" is not a positive multiple of 15 minutes',
    ),
    (
        "custom every zero",
        custom(name="p", every="0h"),
        'periods[0].every: "0h" is not a positive multiple of 15 minutes',
    ),
    (
        "custom every not a duration",
        custom(name="p", every="30 days"),
        'periods[0].every: "30 days" is not a duration like "500ms", "30s", "5m", "2h" or "30d"',
    ),
    (
        "custom every a number",
        custom(name="p", every=30),
        'periods[0].every: expected a duration like "30s" or "5m", got 30',
    ),
    (
        "custom anchor off buckets",
        custom(name="p", every="1h", anchor="2025-01-15T00:07:00Z"),
        'periods[0].anchor: "2025-01-15T00:07:00Z" is not on a 15-minute boundary'
        " (hh:00, :15, :30, :45)",
    ),
    (
        "custom anchor milliseconds off",
        custom(name="p", every="1h", anchor="2025-01-15T00:00:00.001Z"),
        'periods[0].anchor: "2025-01-15T00:00:00.001Z" is not on a 15-minute boundary'
        " (hh:00, :15, :30, :45)",
    ),
    (
        "custom anchor not a time",
        custom(name="p", every="1h", anchor="next monday"),
        'periods[0].anchor: "next monday" is not an ISO-8601 time like "2025-01-15T00:00:00Z"',
    ),
    (
        "custom anchor a number",
        custom(name="p", every="1h", anchor=0),
        "periods[0].anchor: expected a string, got 0",
    ),
    (
        "custom unknown key",
        custom(name="p", every="1h", start="2025-01-01"),
        "periods[0].start: unknown key (expected one of name, every, anchor)",
    ),
    # events
    ("events missing", document(events=None), "events: missing (required)"),
    (
        "events not object",
        document(events=["api.calls"]),
        "events: expected an object, got an array",
    ),
    (
        "events empty",
        document(events={}),
        'events: must define at least one event type, e.g. {"api.calls": {"op": "sum"}}',
    ),
    (
        "event name too long",
        document(events={"x" * 65: {"op": "sum"}}),
        f"events.{'x' * 65}: not a valid event type name:"
        " use 1-64 characters from A-Z a-z 0-9 _ . : -",
    ),
    (
        "event name empty",
        document(events={"": {"op": "sum"}}),
        'events."": not a valid event type name: use 1-64 characters from A-Z a-z 0-9 _ . : -',
    ),
    (
        "op not an op",
        document(events={"api.calls": {"op": "median"}}),
        f'events."api.calls".op: "median" is not one of {OPS_LIST}',
    ),
    (
        "op upper case",
        document(events={"api.calls": {"op": "SUM"}}),
        f'events."api.calls".op: "SUM" is not one of {OPS_LIST}',
    ),
    (
        "op missing",
        document(events={"api.calls": {}}),
        'events."api.calls".op: missing (required)',
    ),
    (
        "op not a string",
        document(events={"api.calls": {"op": None}}),
        'events."api.calls".op: expected a string, got null',
    ),
    (
        "event given as a bare op",
        document(events={"api.calls": "sum"}),
        'events."api.calls": expected an object like {"op": "sum"}, got "sum"',
    ),
    (
        "event not an object",
        document(events={"api.calls": True}),
        'events."api.calls": expected an object like {"op": "sum"}, got true',
    ),
    (
        "event unknown key",
        document(events={"api.calls": {"op": "sum", "unit": "calls"}}),
        'events."api.calls".unit: unknown key '
        "(expected one of op, groupBy, property, percentile, description, valueProperty, slug)",
    ),
    (
        "event description not a string",
        document(events={"api.calls": {"op": "sum", "description": 1}}),
        'events."api.calls".description: expected a string, got 1',
    ),
    (
        "identifier event names are not quoted",
        document(events={"calls": {"op": "mean"}}),
        f'events.calls.op: "mean" is not one of {OPS_LIST}',
    ),
    # webhooks
    (
        "webhooks not array",
        document(webhooks={"url": "https://x.example"}),
        "webhooks: expected an array, got an object",
    ),
    ("webhooks null", document(webhooks=[None]), "webhooks[0]: expected an object, got null"),
    (
        "webhook url missing",
        document(webhooks=[webhook(url=None)]),
        "webhooks[0].url: missing (required)",
    ),
    (
        "webhook url not http",
        document(webhooks=[webhook(), webhook(url="ftp://x.example/hook")]),
        'webhooks[1].url: "ftp://x.example/hook" is not an http:// or https:// URL with a host',
    ),
    (
        "webhook url no host",
        document(webhooks=[webhook(url="https:///hook")]),
        'webhooks[0].url: "https:///hook" is not an http:// or https:// URL with a host',
    ),
    (
        "webhook url relative",
        document(webhooks=[webhook(url="/hooks/usage")]),
        'webhooks[0].url: "/hooks/usage" is not an http:// or https:// URL with a host',
    ),
    (
        "webhook url spaces",
        document(webhooks=[webhook(url="https://x.example/a b")]),
        'webhooks[0].url: "https://x.example/a b" is not an http:// or https:// URL with a host',
    ),
    (
        "webhook url bad port",
        document(webhooks=[webhook(url="http://x.example:99999/")]),
        'webhooks[0].url: "http://x.example:99999/" is not an http:// or https:// URL with a host',
    ),
    (
        "webhook url not a string",
        document(webhooks=[webhook(url=["https://x.example"])]),
        "webhooks[0].url: expected a string, got an array",
    ),
    (
        "webhook without secret",
        document(webhooks=[webhook(secret=None)]),
        'webhooks[0]: needs a "secret" (or "secrets", a list of them)',
    ),
    (
        "webhook secret empty",
        document(webhooks=[webhook(secret="")]),
        "webhooks[0].secret: must not be empty",
    ),
    (
        "webhook secret number",
        document(webhooks=[webhook(secret=12345)]),
        "webhooks[0].secret: expected a string, got 12345",
    ),
    (
        "webhook secrets empty",
        document(webhooks=[webhook(secret=None, secrets=[])]),
        "webhooks[0].secrets: must hold at least one secret",
    ),
    (
        "webhook secrets not an array",
        document(webhooks=[webhook(secret=None, secrets="s")]),
        'webhooks[0].secrets: expected an array, got "s"',
    ),
    (
        "webhook secrets item",
        document(webhooks=[webhook(secrets=["ok", None])]),
        "webhooks[0].secrets[1]: expected a string, got null",
    ),
    (
        "webhook enabled string",
        document(webhooks=[webhook(enabled="yes")]),
        'webhooks[0].enabled: expected true or false, got "yes"',
    ),
    (
        "webhook enabled number",
        document(webhooks=[webhook(enabled=1)]),
        "webhooks[0].enabled: expected true or false, got 1",
    ),
    (
        "webhook period unknown",
        document(webhooks=[webhook(periods=["daily", "monthly"])]),
        'webhooks[0].periods[1]: "monthly" is not a configured period (hourly, daily)',
    ),
    (
        "webhook periods empty",
        document(webhooks=[webhook(periods=[])]),
        "webhooks[0].periods: must name at least one period (leave it out to get every period)",
    ),
    (
        "webhook periods string",
        document(webhooks=[webhook(periods="daily")]),
        'webhooks[0].periods: expected an array, got "daily"',
    ),
    (
        "webhook period twice",
        document(webhooks=[webhook(periods=["daily", "daily"])]),
        'webhooks[0].periods[1]: "daily" is listed twice',
    ),
    (
        "webhook retry schedule empty",
        document(webhooks=[webhook(retrySchedule=[])]),
        "webhooks[0].retrySchedule: must hold at least one delay (leave it out for the default)",
    ),
    (
        "webhook retry delay invalid",
        document(webhooks=[webhook(retrySchedule=["5s", "2 hours"])]),
        'webhooks[0].retrySchedule[1]: "2 hours" is not a duration like'
        ' "500ms", "30s", "5m", "2h" or "30d"',
    ),
    (
        "webhook retry delay a number",
        document(webhooks=[webhook(retrySchedule=[5000])]),
        'webhooks[0].retrySchedule[0]: expected a duration like "30s" or "5m", got 5000',
    ),
    (
        "webhook retry schedule a string",
        document(webhooks=[webhook(retrySchedule="5s")]),
        'webhooks[0].retrySchedule: expected an array, got "5s"',
    ),
    (
        "webhook key typo",
        document(webhooks=[webhook(retry_schedule=["5s"])]),
        'webhooks[0].retry_schedule: unknown key (did you mean "retrySchedule"?)',
    ),
    (
        "webhook comment keys are not allowed",
        document(webhooks=[webhook(_comment="x")]),
        "webhooks[0]._comment: unknown key (expected one of url, secret, secrets, enabled,"
        " periods, retrySchedule, description)",
    ),
    # scalars
    (
        "timezone unknown",
        document(timezone="Europe/Atlantis"),
        'timezone: "Europe/Atlantis" is not an IANA time zone like "Europe/Oslo"',
    ),
    (
        "timezone a directory",
        document(timezone="Europe"),
        'timezone: "Europe" is not an IANA time zone like "Europe/Oslo"',
    ),
    (
        "timezone a path",
        document(timezone="../../etc/passwd"),
        'timezone: "../../etc/passwd" is not an IANA time zone like "Europe/Oslo"',
    ),
    (
        "timezone empty",
        document(timezone=""),
        'timezone: "" is not an IANA time zone like "Europe/Oslo"',
    ),
    ("timezone number", document(timezone=1), "timezone: expected a string, got 1"),
    (
        "grace period number",
        document(gracePeriod=3600),
        'gracePeriod: expected a duration like "30s" or "5m", got 3600',
    ),
    (
        "grace period fraction",
        document(gracePeriod="1.5h"),
        'gracePeriod: "1.5h" is not a duration like "500ms", "30s", "5m", "2h" or "30d"',
    ),
    (
        "grace period negative",
        document(gracePeriod="-5m"),
        'gracePeriod: "-5m" is not a duration like "500ms", "30s", "5m", "2h" or "30d"',
    ),
    (
        "max event age zero",
        document(maxEventAge="0s"),
        "maxEventAge: must be longer than 0s",
    ),
    (
        "max event age number",
        document(maxEventAge=35),
        'maxEventAge: expected a duration like "30s" or "5m", got 35',
    ),
    (
        "max batch size string",
        document(maxBatchSize="abc"),
        'maxBatchSize: expected an integer, got "abc"',
    ),
    (
        "max batch size bool",
        document(maxBatchSize=True),
        "maxBatchSize: expected an integer, got true",
    ),
    (
        "max batch size float",
        document(maxBatchSize=1000.0),
        "maxBatchSize: expected an integer, got 1000.0",
    ),
    (
        "max batch size zero",
        document(maxBatchSize=0),
        "maxBatchSize: 0 is out of range: it must be 1 to 100000",
    ),
    (
        "max batch size too big",
        document(maxBatchSize=100_001),
        "maxBatchSize: 100001 is out of range: it must be 1 to 100000",
    ),
]


@pytest.mark.parametrize(
    ("doc", "problem"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_each_problem_is_reported_at_its_path(doc: dict[str, Any], problem: str) -> None:
    assert problems(doc) == [problem]


def test_long_quoted_keys_are_shown_whole_in_paths() -> None:
    name = "api calls " * 10
    [problem] = problems(document(events={"api.calls": {"op": "sum"}, name: {"op": "sum"}}))
    assert problem.startswith(f'events."{name}": ')


def test_portal_frame_ancestors_are_origins() -> None:
    config = parse_config(
        b'{"periods": ["daily"], "events": {"a": {"op": "sum"}},'
        b' "portal": {"frameAncestors": ["https://app.example.com", "https://*.example.com:8443"]}}',
        "c.json",
    )
    assert config.portal.frame_ancestors == (
        "https://app.example.com",
        "https://*.example.com:8443",
    )
    assert parse_config(
        b'{"periods": ["daily"], "events": {"a": {"op": "sum"}}}', "c.json"
    ).portal.frame_ancestors == ("'self'",)
    with pytest.raises(ConfigError) as raised:
        parse_config(
            b'{"periods": ["daily"], "events": {"a": {"op": "sum"}},'
            b' "portal": {"frameAncestors": ["https://a.com; script-src *"], "x": 1}}',
            "c.json",
        )
    message = str(raised.value)
    assert "portal.frameAncestors[0]" in message and "portal.x: unknown key" in message


def test_unknown_fields_is_reject_unless_set_to_ignore() -> None:
    assert parse(document()).unknown_fields == "reject"
    assert parse(document(unknownFields="ignore")).unknown_fields == "ignore"
    assert parse(document(unknownFields="reject")).unknown_fields == "reject"
    assert problems(document(unknownFields="allow")) == [
        'unknownFields: "allow" is not one of reject, ignore'
    ]


def test_max_event_age_is_a_duration_and_absent_means_any_age() -> None:
    assert parse(document(maxEventAge="35d")).max_event_age_ms == 35 * 86_400_000
    assert parse(document()).max_event_age_ms is None
