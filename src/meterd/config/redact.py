"""What of the config may be shown: secrets hidden, and credentials in webhook URLs too.

One place for every surface that shows config or webhook URLs (GET /config,
GET /deliveries, the CLI, the logs), so none of them can forget a secret.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from meterd.config.model import SystemConfig
from meterd.config.plans import plans_document, redacted_invoicing
from meterd.durations import format_duration
from meterd.timeutil import format_ms

REDACTED = "********"


def redact_url(url: str) -> str:
    """`url` with its user-info, query values and fragment hidden.

    `http://user:pass@host/h?token=abc&v=1` becomes
    `http://********@host/h?token=********&v=********`. A URL that cannot be read is
    hidden whole rather than shown.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if "@" in parts.netloc:
        netloc = f"{REDACTED}@{netloc}"
    # A name=value pair keeps its name; a bare item (`?s3cr3t`) may be the token itself.
    query = "&".join(
        f"{pair.partition('=')[0]}={REDACTED}" if "=" in pair else REDACTED
        for pair in parts.query.split("&")
        if pair
    )
    if "://" not in url:
        return urlunsplit(
            (parts.scheme, netloc, parts.path, query, REDACTED * bool(parts.fragment))
        )
    # Built by hand: urlunsplit drops the "//" of sqlite:///path.
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{REDACTED}" if parts.fragment else "")
    )


def redacted_config(config: SystemConfig) -> dict[str, Any]:
    """The loaded config in its file format, with every secret and URL credential hidden."""
    return {
        "periods": [
            period.name
            if period.is_calendar
            else {
                "name": period.name,
                "every": format_duration(period.every_ms or 0),
                "anchor": format_ms(period.anchor_ms or 0),
            }
            for period in config.periods
        ],
        "events": {name: {"op": event.op} for name, event in config.events.items()},
        "webhooks": [
            {
                "url": redact_url(hook.url),
                "enabled": hook.enabled,
                "secrets": [REDACTED for _ in hook.secrets],
                "periods": list(hook.periods) if hook.periods is not None else None,
                "retrySchedule": [format_duration(ms) for ms in hook.retry_schedule_ms],
            }
            for hook in config.webhooks
        ],
        "timezone": config.timezone,
        "gracePeriod": format_duration(config.grace_period_ms),
        "maxEventAge": (
            None if config.max_event_age_ms is None else format_duration(config.max_event_age_ms)
        ),
        "maxBatchSize": config.max_batch_size,
        "unknownFields": config.unknown_fields,
        "source": config.source,
        "plans": plans_document(config.plans),
        "invoicing": redacted_invoicing(config.invoicing, REDACTED),
        "portal": {"frameAncestors": list(config.portal.frame_ancestors)},
        "alertThresholds": [_number(t) for t in config.alert_thresholds],
    }


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value
