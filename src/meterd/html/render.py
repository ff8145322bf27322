"""Rendering a page: one Jinja2 environment (autoescaped), one typed context per page."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import jinja2
import msgspec
from starlette.responses import HTMLResponse

from meterd import __version__
from meterd.html.static import StaticFiles
from meterd.timeutil import format_ms


def _urlpart(value: str) -> str:
    """A value inside a URL path segment or query: every reserved character escaped."""
    return quote(str(value), safe="")


def _time(ms: int | None) -> str:
    return "" if ms is None else format_ms(ms)


def _number(value: float | int) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{int(value):,}"


def _money(amount: Decimal, currency: str) -> str:
    """An exact amount with its currency: `1,234.50 USD`."""
    return f"{amount:,} {currency.upper()}"


def _dimensions(dimensions: dict[str, str | None]) -> str:
    """A group's dimensions as `model=gpt-4o, direction=in` (a missing value is null)."""
    return ", ".join(
        f"{key}={'null' if value is None else value}" for key, value in dimensions.items()
    )


class Renderer:
    """Templates from the package, with the filters every page shares."""

    def __init__(self, static: StaticFiles) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("meterd.html", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["urlpart"] = _urlpart
        self.env.filters["time"] = _time
        self.env.filters["number"] = _number
        self.env.filters["money"] = _money
        self.env.filters["dimensions"] = _dimensions
        self.env.globals["static"] = static.url
        self.env.globals["version"] = __version__

    def html(self, template: str, page: msgspec.Struct, **extra: Any) -> str:
        return self.env.get_template(template).render(page=page, **extra)

    def response(
        self,
        template: str,
        page: msgspec.Struct,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> HTMLResponse:
        return HTMLResponse(
            self.html(template, page, **extra), status_code=status_code, headers=headers
        )
