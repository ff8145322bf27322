"""The package's static files, served under names that carry a hash of their content.

A changed file gets a new name, so browsers may cache every asset for a year.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
PREFIX = "/static/"


class StaticFiles:
    """Reads `meterd/html/static/` once, when the app is built."""

    def __init__(self) -> None:
        self._by_served_name: dict[str, tuple[bytes, str]] = {}
        self._served_name: dict[str, str] = {}
        for entry in (resources.files("meterd.html") / "static").iterdir():
            stem, dot, suffix = entry.name.rpartition(".")
            if not dot or "." + suffix not in MEDIA_TYPES:
                continue
            content = entry.read_bytes()
            digest = hashlib.sha256(content).hexdigest()[:12]
            served = f"{stem}.{digest}.{suffix}"
            self._by_served_name[served] = (content, MEDIA_TYPES["." + suffix])
            self._served_name[entry.name] = served

    def url(self, name: str) -> str:
        """The URL of the package file `name`, e.g. `/static/meterd.3f2a9c0b11de.css`."""
        return PREFIX + self._served_name[name]

    def routes(self) -> list[Route]:
        async def serve(request: Request) -> Response:
            found = self._by_served_name.get(request.path_params["name"])
            if found is None:
                return Response("not found", status_code=404, media_type="text/plain")
            content, media_type = found
            return Response(
                content,
                media_type=media_type,
                headers={
                    "Cache-Control": "public, max-age=31536000, immutable",
                    "X-Content-Type-Options": "nosniff",
                },
            )

        return [Route("/{name}", serve, methods=["GET", "HEAD"])]
