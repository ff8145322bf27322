"""The `webhooks` section: receivers, their signing keys, periods and retry schedule."""

from __future__ import annotations

from urllib.parse import urlsplit

from meterd.config.model import DEFAULT_RETRY_SCHEDULE_MS, WebhookConfig
from meterd.config.problems import Location, Problems, one_of, quote
from meterd.config.values import duration_ms


def read_webhooks(
    value: object, known_periods: tuple[str, ...] | None, problems: Problems
) -> tuple[WebhookConfig, ...]:
    """The webhooks in `value` (the document's "webhooks"); their periods must be declared."""
    if not isinstance(value, list):
        return ()
    hooks = (
        _webhook(item, ("webhooks", index), known_periods, problems)
        for index, item in enumerate(value)
    )
    return tuple(hook for hook in hooks if hook is not None)


def _webhook(
    item: object, location: Location, known: tuple[str, ...] | None, problems: Problems
) -> WebhookConfig | None:
    if not isinstance(item, dict):
        return None
    url = item.get("url")
    if isinstance(url, str) and not _is_http_url(url):
        problems.report(
            (*location, "url"), f"{quote(url)} is not an http:// or https:// URL with a host"
        )
    periods = _periods(item.get("periods"), (*location, "periods"), known, problems)
    retry = item.get("retrySchedule")
    delays = [
        duration_ms(delay, (*location, "retrySchedule", index), problems)
        for index, delay in enumerate(retry if isinstance(retry, list) else ())
    ]
    if not isinstance(url, str):
        return None
    return WebhookConfig(
        url,
        _secrets(item),
        enabled=item.get("enabled") is not False,
        periods=periods,
        retry_schedule_ms=tuple(d for d in delays if d is not None) or DEFAULT_RETRY_SCHEDULE_MS,
    )


def _is_http_url(url: str) -> bool:
    if any(char.isspace() for char in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _secrets(item: dict[str, object]) -> tuple[str, ...]:
    """`secret` then `secrets`, duplicates dropped: the order signing keys are tried in."""
    secret = item.get("secret")
    listed = item.get("secrets")
    secrets = [secret] if isinstance(secret, str) else []
    secrets.extend(s for s in (listed if isinstance(listed, list) else ()) if isinstance(s, str))
    return tuple(dict.fromkeys(secrets))


def _periods(
    value: object, location: Location, known: tuple[str, ...] | None, problems: Problems
) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    names: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str):
            continue
        if known is not None and name not in known:
            problems.report(
                (*location, index), f"{quote(name)} is not a configured period ({one_of(known)})"
            )
        elif name in names:
            problems.report((*location, index), f"{quote(name)} is listed twice")
        else:
            names.append(name)
    return tuple(names)
