"""Load `systemconfig.json` and validate it into a `SystemConfig`.

The file is decoded without a schema and checked by hand, so that one run reports
every problem, each with the JSON path it sits at (`events."api.calls".op`,
`webhooks[0].url`), instead of stopping at the first.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from meterd.config.model import (
    CALENDAR_PERIODS,
    DEFAULT_RETRY_SCHEDULE_MS,
    OPS,
    EventTypeConfig,
    Op,
    PeriodConfig,
    SystemConfig,
    WebhookConfig,
)
from meterd.durations import parse_duration
from meterd.errors import MeterdError
from meterd.timeutil import parse_iso_ms

T = TypeVar("T")

SAMPLE_SOURCE = "<built-in sample>"
MAX_BATCH_SIZE_LIMIT = 100_000

# Period bounds must fall on the 15-minute buckets that partial aggregates use.
_BUCKET_MS = 15 * 60 * 1000
_TOP_LEVEL_KEYS = ("periods", "events", "webhooks", "timezone", "gracePeriod", "maxBatchSize")
# "description" is not used, but the codehooks template's example config has it.
_EVENT_KEYS = ("op", "description")
_CUSTOM_PERIOD_KEYS = ("name", "every", "anchor")
_WEBHOOK_KEYS = (
    "url",
    "secret",
    "secrets",
    "enabled",
    "periods",
    "retrySchedule",
    "description",
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_PERIOD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}", re.ASCII)
_EVENT_TYPE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
_MALFORMED_JSON = re.compile(r"JSON is malformed: (.*) \(byte ([0-9]+)\)")
_TYPE_NAMES: dict[type[object], str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    list: "an array",
    dict: "an object",
}


class ConfigProblem(NamedTuple):
    """One thing wrong with a config file, at a JSON path ("" for the file as a whole)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(MeterdError):
    """The configuration cannot be used."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{source}: cannot load config ({count} problem{'' if count == 1 else 's'})"
        super().__init__("\n".join([header, *map(str, self.problems)]), source=source)


def load_config(path: str | os.PathLike[str]) -> SystemConfig:
    """Read and validate the config file at `path`.

    Raises ConfigError, naming the file, if it cannot be read or is not valid.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = file.read()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(source, [ConfigProblem("", f"cannot read the file: {reason}")]) from None
    return parse_config(data, source)


def parse_config(data: bytes, source: str) -> SystemConfig:
    """Validate the JSON text `data`; `source` names it in messages and in the result.

    Raises ConfigError listing every problem found.
    """
    document = _decode_json(data, source)
    checker = _Checker()
    if not isinstance(document, dict):
        checker.report("", f"the top level must be a JSON object, got {_describe(document)}")
        raise ConfigError(source, checker.problems)
    config = _system_config(checker, document, source)
    if checker.problems:
        raise ConfigError(source, checker.problems)
    return config


def sample_config() -> SystemConfig:
    """The config packaged with meterd (`meterd/config/sample.json`), for a first start."""
    data = resources.files("meterd.config").joinpath("sample.json").read_bytes()
    return parse_config(data, SAMPLE_SOURCE)


# --- JSON text --------------------------------------------------------------------


def _decode_json(data: bytes, source: str) -> object:
    # Windows editors like to start UTF-8 files with a byte order mark.
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        where = _line_column(data, error.start)
        raise ConfigError(source, [ConfigProblem("", f"not UTF-8 text at {where}")]) from None
    if not data.strip():
        raise ConfigError(source, [ConfigProblem("", "the file is empty")])
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        raise ConfigError(source, [_json_problem(data, str(error))]) from None


def _json_problem(data: bytes, message: str) -> ConfigProblem:
    malformed = _MALFORMED_JSON.fullmatch(message)
    if malformed:
        where = _line_column(data, int(malformed.group(2)))
        return ConfigProblem("", f"invalid JSON at {where}: {malformed.group(1)}")
    if message == "Input data was truncated":
        where = _line_column(data, len(data))
        return ConfigProblem("", f"invalid JSON at {where}: the text ends before the JSON does")
    return ConfigProblem("", f"invalid JSON: {message}")


def _line_column(data: bytes, offset: int) -> str:
    before = data[:offset]
    line_start = before.rfind(b"\n") + 1
    line = before.count(b"\n") + 1
    column = len(before[line_start:].decode("utf-8", errors="replace")) + 1
    return f"line {line}, column {column}"


# --- paths and messages -----------------------------------------------------------


def _key_path(parent: str, key: str) -> str:
    # Never shortened: a path must lead the reader to the exact key.
    part = key if _IDENTIFIER.fullmatch(key) else msgspec.json.encode(key).decode()
    return f"{parent}.{part}" if parent else part


def _index_path(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def _quote(text: str, limit: int = 60) -> str:
    shown = text if len(text) <= limit else text[:limit] + "…"
    return msgspec.json.encode(shown).decode()


def _describe(value: object) -> str:
    """A JSON value as a message shows it: strings quoted, containers by kind."""
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return msgspec.json.encode(value).decode()


def _one_of(names: Iterable[str]) -> str:
    return ", ".join(names)


class _Checker:
    """Collects problems while the document is read, so all of them can be reported."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    def expect(self, value: object, kind: type[T], path: str) -> T | None:
        """`value` if it has JSON type `kind`, else None and a problem."""
        # bool is a subclass of int in Python, but true is not a number in JSON.
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        self.report(path, f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}")
        return None

    def check_keys(
        self, obj: dict[str, object], path: str, allowed: Sequence[str], *, comments: bool = False
    ) -> None:
        for key in obj:
            if key in allowed or (comments and key.startswith(("$", "_"))):
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"expected one of {_one_of(allowed)}"
            self.report(_key_path(path, key), f"unknown key ({hint})")

    def required(
        self,
        obj: dict[str, object],
        key: str,
        parent: str,
        parse: Callable[[_Checker, object, str], T | None],
    ) -> T | None:
        path = _key_path(parent, key)
        if key not in obj:
            self.report(path, "missing (required)")
            return None
        return parse(self, obj[key], path)

    def optional(
        self,
        obj: dict[str, object],
        key: str,
        parent: str,
        parse: Callable[[_Checker, object, str], T | None],
        default: T,
    ) -> T:
        """The parsed value, or `default` when the key is absent (or invalid, reported)."""
        if key not in obj:
            return default
        parsed = parse(self, obj[key], _key_path(parent, key))
        return default if parsed is None else parsed


# --- scalar values ----------------------------------------------------------------


def _string(checker: _Checker, value: object, path: str) -> str | None:
    return checker.expect(value, str, path)


def _boolean(checker: _Checker, value: object, path: str) -> bool | None:
    return checker.expect(value, bool, path)


def _duration(checker: _Checker, value: object, path: str) -> int | None:
    if not isinstance(value, str):
        checker.report(path, f'expected a duration like "30s" or "5m", got {_describe(value)}')
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        checker.report(path, str(error))
        return None


def _max_batch_size(checker: _Checker, value: object, path: str) -> int | None:
    size = checker.expect(value, int, path)
    if size is not None and not 1 <= size <= MAX_BATCH_SIZE_LIMIT:
        checker.report(path, f"{size} is out of range: it must be 1 to {MAX_BATCH_SIZE_LIMIT}")
        return None
    return size


def _timezone(checker: _Checker, value: object, path: str) -> str | None:
    name = checker.expect(value, str, path)
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name like "Europe" is a directory of the tz database, not a zone.
        checker.report(path, f'{_quote(name)} is not an IANA time zone like "Europe/Oslo"')
        return None
    return name


# --- the document -----------------------------------------------------------------


def _system_config(checker: _Checker, document: dict[str, object], source: str) -> SystemConfig:
    checker.check_keys(document, "", _TOP_LEVEL_KEYS, comments=True)
    periods = checker.required(document, "periods", "", _periods) or ()
    known_periods = _declared_period_names(document.get("periods"))
    return SystemConfig(
        periods=periods,
        events=checker.required(document, "events", "", _events) or {},
        webhooks=_webhooks(checker, document, known_periods),
        timezone=checker.optional(document, "timezone", "", _timezone, "UTC"),
        grace_period_ms=checker.optional(document, "gracePeriod", "", _duration, 0),
        max_batch_size=checker.optional(document, "maxBatchSize", "", _max_batch_size, 1000),
        source=source,
    )


# --- periods ----------------------------------------------------------------------


def _periods(checker: _Checker, value: object, path: str) -> tuple[PeriodConfig, ...] | None:
    items = checker.expect(value, list, path)
    if items is None:
        return None
    if not items:
        checker.report(path, "must list at least one period")
        return None
    periods: list[PeriodConfig] = []
    name_paths: dict[str, str] = {}
    for index, item in enumerate(items):
        item_path = _index_path(path, index)
        period = _period(checker, item, item_path)
        if period is None:
            continue
        name_path = item_path if period.is_calendar else _key_path(item_path, "name")
        if period.name in name_paths:
            first = name_paths[period.name]
            checker.report(name_path, f"{_quote(period.name)} is already used by {first}")
            continue
        name_paths[period.name] = name_path
        periods.append(period)
    return tuple(periods)


def _period(checker: _Checker, item: object, path: str) -> PeriodConfig | None:
    if isinstance(item, str):
        return _calendar_period(checker, item, path)
    if isinstance(item, dict):
        return _custom_period(checker, item, path)
    checker.report(path, f"expected a period name or an object, got {_describe(item)}")
    return None


def _calendar_period(checker: _Checker, name: str, path: str) -> PeriodConfig | None:
    if name not in CALENDAR_PERIODS:
        checker.report(
            path,
            f"{_quote(name)} is not one of {_one_of(CALENDAR_PERIODS)}"
            ' (a custom period is an object: {"name", "every", "anchor"})',
        )
        return None
    return PeriodConfig(name)


def _custom_period(checker: _Checker, item: dict[str, object], path: str) -> PeriodConfig | None:
    checker.check_keys(item, path, _CUSTOM_PERIOD_KEYS)
    name = checker.required(item, "name", path, _custom_period_name)
    every_ms = checker.required(item, "every", path, _period_length)
    anchor_ms = checker.optional(item, "anchor", path, _period_anchor, 0)
    if name is None or every_ms is None:
        return None
    return PeriodConfig(name, every_ms=every_ms, anchor_ms=anchor_ms)


def _custom_period_name(checker: _Checker, value: object, path: str) -> str | None:
    name = checker.expect(value, str, path)
    if name is None:
        return None
    if not _PERIOD_NAME.fullmatch(name):
        checker.report(
            path,
            f"{_quote(name)} is not a valid period name: use 1-32 characters"
            " from A-Z a-z 0-9 _ . -",
        )
        return None
    if name in CALENDAR_PERIODS:
        checker.report(
            path, f"{_quote(name)} is a calendar period; give the custom one another name"
        )
        return None
    return name


def _period_length(checker: _Checker, value: object, path: str) -> int | None:
    every_ms = _duration(checker, value, path)
    if every_ms is None:
        return None
    if every_ms == 0 or every_ms % _BUCKET_MS:
        checker.report(path, f"{_describe(value)} is not a positive multiple of 15 minutes")
        return None
    return every_ms


def _period_anchor(checker: _Checker, value: object, path: str) -> int | None:
    text = checker.expect(value, str, path)
    if text is None:
        return None
    try:
        anchor_ms = parse_iso_ms(text)
    except ValueError:
        checker.report(path, f'{_quote(text)} is not an ISO-8601 time like "2025-01-15T00:00:00Z"')
        return None
    if anchor_ms % _BUCKET_MS:
        checker.report(
            path, f"{_quote(text)} is not on a 15-minute boundary (hh:00, :15, :30, :45)"
        )
        return None
    return anchor_ms


def _declared_period_names(value: object) -> tuple[str, ...] | None:
    """Every period name the file declares, valid or not; None if `periods` is unusable.

    Webhooks are checked against these rather than against the valid periods alone,
    so one bad period is reported once, not again by every webhook that names it.
    """
    if not isinstance(value, list):
        return None
    names = (item.get("name") if isinstance(item, dict) else item for item in value)
    return tuple(dict.fromkeys(name for name in names if isinstance(name, str)))


# --- events -----------------------------------------------------------------------


def _events(checker: _Checker, value: object, path: str) -> dict[str, EventTypeConfig] | None:
    entries = checker.expect(value, dict, path)
    if entries is None:
        return None
    if not entries:
        checker.report(
            path, 'must define at least one event type, e.g. {"api.calls": {"op": "sum"}}'
        )
        return None
    events: dict[str, EventTypeConfig] = {}
    for name, entry in entries.items():
        event = _event(checker, name, entry, _key_path(path, name))
        if event is not None:
            events[name] = event
    return events


def _event(checker: _Checker, name: str, entry: object, path: str) -> EventTypeConfig | None:
    name_ok = bool(_EVENT_TYPE_NAME.fullmatch(name))
    if not name_ok:
        checker.report(
            path, "not a valid event type name: use 1-64 characters from A-Z a-z 0-9 _ . : -"
        )
    if isinstance(entry, str) and entry in OPS:
        checker.report(path, f'expected an object like {{"op": "{entry}"}}, got {_describe(entry)}')
        return None
    fields = checker.expect(entry, dict, path)
    if fields is None:
        return None
    checker.check_keys(fields, path, _EVENT_KEYS)
    checker.optional(fields, "description", path, _string, "")
    op: Op | None = checker.required(fields, "op", path, _op)
    return EventTypeConfig(op) if op is not None and name_ok else None


def _op(checker: _Checker, value: object, path: str) -> Op | None:
    name = checker.expect(value, str, path)
    for op in OPS:
        if name == op:
            return op
    if name is not None:
        checker.report(path, f"{_quote(name)} is not one of {_one_of(OPS)}")
    return None


# --- webhooks ---------------------------------------------------------------------


def _webhooks(
    checker: _Checker, document: dict[str, object], known_periods: tuple[str, ...] | None
) -> tuple[WebhookConfig, ...]:
    if "webhooks" not in document:
        return ()
    items = checker.expect(document["webhooks"], list, "webhooks")
    if items is None:
        return ()
    hooks = (
        _webhook(checker, item, _index_path("webhooks", index), known_periods)
        for index, item in enumerate(items)
    )
    return tuple(hook for hook in hooks if hook is not None)


def _webhook(
    checker: _Checker, item: object, path: str, known_periods: tuple[str, ...] | None
) -> WebhookConfig | None:
    fields = checker.expect(item, dict, path)
    if fields is None:
        return None
    checker.check_keys(fields, path, _WEBHOOK_KEYS)
    checker.optional(fields, "description", path, _string, "")
    url = checker.required(fields, "url", path, _url)
    secrets = _webhook_secrets(checker, fields, path)
    enabled = checker.optional(fields, "enabled", path, _boolean, True)
    periods = _webhook_periods(checker, fields, path, known_periods)
    retry = checker.optional(
        fields, "retrySchedule", path, _retry_schedule, DEFAULT_RETRY_SCHEDULE_MS
    )
    if url is None or not secrets:
        return None
    return WebhookConfig(url, secrets, enabled=enabled, periods=periods, retry_schedule_ms=retry)


def _url(checker: _Checker, value: object, path: str) -> str | None:
    url = checker.expect(value, str, path)
    if url is None:
        return None
    if not _is_http_url(url):
        checker.report(path, f"{_quote(url)} is not an http:// or https:// URL with a host")
        return None
    return url


def _is_http_url(url: str) -> bool:
    if any(char.isspace() for char in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _webhook_secrets(checker: _Checker, fields: dict[str, object], path: str) -> tuple[str, ...]:
    """`secret` then `secrets`, duplicates dropped: the order signing keys are tried in."""
    if "secret" not in fields and "secrets" not in fields:
        checker.report(path, 'needs a "secret" (or "secrets", a list of them)')
        return ()
    secrets: list[str] = []
    if "secret" in fields:
        secret = _secret(checker, fields["secret"], _key_path(path, "secret"))
        secrets.extend([secret] if secret is not None else [])
    if "secrets" in fields:
        secrets.extend(_secret_list(checker, fields["secrets"], _key_path(path, "secrets")))
    return tuple(dict.fromkeys(secrets))


def _secret_list(checker: _Checker, value: object, path: str) -> list[str]:
    items = checker.expect(value, list, path)
    if items is None:
        return []
    if not items:
        checker.report(path, "must hold at least one secret")
    secrets = (_secret(checker, item, _index_path(path, index)) for index, item in enumerate(items))
    return [secret for secret in secrets if secret is not None]


def _secret(checker: _Checker, value: object, path: str) -> str | None:
    # Never quote a secret in a message: config errors end up in logs.
    secret = checker.expect(value, str, path)
    if secret is None:
        return None
    if not secret:
        checker.report(path, "must not be empty")
        return None
    return secret


def _webhook_periods(
    checker: _Checker, fields: dict[str, object], path: str, known: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    if "periods" not in fields:
        return None
    path = _key_path(path, "periods")
    items = checker.expect(fields["periods"], list, path)
    if items is None:
        return None
    if not items:
        checker.report(path, "must name at least one period (leave it out to get every period)")
    names: list[str] = []
    for index, item in enumerate(items):
        name = _webhook_period_name(checker, item, _index_path(path, index), known, names)
        if name is not None:
            names.append(name)
    return tuple(names)


def _webhook_period_name(
    checker: _Checker, item: object, path: str, known: tuple[str, ...] | None, seen: list[str]
) -> str | None:
    name = checker.expect(item, str, path)
    if name is None:
        return None
    if known is not None and name not in known:
        checker.report(path, f"{_quote(name)} is not a configured period ({_one_of(known)})")
        return None
    if name in seen:
        checker.report(path, f"{_quote(name)} is listed twice")
        return None
    return name


def _retry_schedule(checker: _Checker, value: object, path: str) -> tuple[int, ...] | None:
    items = checker.expect(value, list, path)
    if items is None:
        return None
    if not items:
        checker.report(path, "must hold at least one delay (leave it out for the default)")
        return None
    delays = [
        _duration(checker, item, _index_path(path, index)) for index, item in enumerate(items)
    ]
    return tuple(delay for delay in delays if delay is not None)
