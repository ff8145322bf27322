"""Load `systemconfig.json` and validate it into a `SystemConfig`.

The JSON Schema (`systemconfig.schema.json`, see `config/schema.py`) checks the shape;
each section's module checks what a schema cannot and builds its structs. One run
reports every problem, each at its JSON path (`events."api.calls".op`, `webhooks[0].url`).
"""

from __future__ import annotations

import os
from importlib import resources

from meterd.config.alerts import read_alert_thresholds
from meterd.config.corrections import max_event_age_ms
from meterd.config.invoicing import with_plans
from meterd.config.jsontext import decode_json
from meterd.config.meters import read_meters
from meterd.config.model import SystemConfig
from meterd.config.openmeter import with_api_keys
from meterd.config.periods import declared_period_names, read_periods
from meterd.config.portal import read_portal
from meterd.config.problems import ConfigError, ConfigProblem, Problems
from meterd.config.schema import check_document
from meterd.config.values import duration_ms, timezone
from meterd.config.webhooks import read_webhooks

__all__ = ["SAMPLE_SOURCE", "ConfigError", "ConfigProblem", "load_config", "parse_config"]

SAMPLE_SOURCE = "<built-in sample>"


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
    document = decode_json(data, source)
    problems = Problems(document)
    check_document(document, problems)
    if not isinstance(document, dict):
        raise ConfigError(source, problems.listed())
    get = document.get
    config = SystemConfig(
        periods=read_periods(get("periods"), problems),
        events=with_api_keys(read_meters(get("events"), problems), get("events"), problems),
        webhooks=read_webhooks(get("webhooks"), declared_period_names(get("periods")), problems),
        timezone=timezone(get("timezone", "UTC"), ("timezone",), problems) or "UTC",
        grace_period_ms=duration_ms(get("gracePeriod", "0s"), ("gracePeriod",), problems) or 0,
        max_batch_size=get("maxBatchSize", 1000),
        unknown_fields="ignore" if get("unknownFields") == "ignore" else "reject",
        max_event_age_ms=max_event_age_ms(get("maxEventAge"), problems),
        source=source,
        portal=read_portal(get("portal")),
        alert_thresholds=read_alert_thresholds(get("alertThresholds")),
    )
    config = with_plans(config, document, problems)
    if problems:
        raise ConfigError(source, problems.listed())
    return config


def sample_config() -> SystemConfig:
    """The config packaged with meterd (`meterd/config/sample.json`), for a first start."""
    data = resources.files("meterd.config").joinpath("sample.json").read_bytes()
    return parse_config(data, SAMPLE_SOURCE)
