"""The loaded config in its file format, with every secret hidden.

`GET /config`, the console's configuration page and the CLI show the config through here.
"""

from __future__ import annotations

from typing import Any

from meterd.config.model import SystemConfig
from meterd.config.plans import plans_document, redacted_invoicing
from meterd.durations import format_duration
from meterd.timeutil import format_ms

REDACTED = "********"


def redacted_config(config: SystemConfig) -> dict[str, Any]:
    """The loaded config in its file format, with every webhook secret hidden."""
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
                "url": hook.url,
                "enabled": hook.enabled,
                "secrets": [REDACTED for _ in hook.secrets],
                "periods": list(hook.periods) if hook.periods is not None else None,
                "retrySchedule": [format_duration(ms) for ms in hook.retry_schedule_ms],
            }
            for hook in config.webhooks
        ],
        "timezone": config.timezone,
        "gracePeriod": format_duration(config.grace_period_ms),
        "maxBatchSize": config.max_batch_size,
        "source": config.source,
        "plans": plans_document(config.plans),
        "invoicing": redacted_invoicing(config.invoicing, REDACTED),
        "portal": {"frameAncestors": list(config.portal.frame_ancestors)},
    }
