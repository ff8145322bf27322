"""The loaded configuration, secrets redacted, and the API keys (never the keys themselves)."""

from __future__ import annotations

import json

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.redact import redacted_config
from meterd.html.console.deps import ConsoleDeps
from meterd.storage.base import ApiKeyRecord


class ConfigurationPage(msgspec.Struct, frozen=True):
    source: str
    meters: list[tuple[str, str]]
    api_keys: list[ApiKeyRecord]
    config_json: str


def configuration_routes(deps: ConsoleDeps) -> list[Route]:
    async def show(request: Request) -> Response:
        config = deps.config
        page = ConfigurationPage(
            source=config.source,
            meters=[(name, event.op) for name, event in config.events.items()],
            api_keys=await deps.store.list_api_keys(),
            config_json=json.dumps(redacted_config(config), indent=2, ensure_ascii=False),
        )
        return deps.page(request, "configuration.html", page, section="Configuration")

    return [Route("/configuration", show, methods=["GET"])]
