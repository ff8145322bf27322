"""The `portal` section of systemconfig.json: who may embed the customer portal.

```json
"portal": {"frameAncestors": ["https://app.example.com", "https://*.example.com"]}
```

Each entry becomes a CSP `frame-ancestors` source; without the section the portal can
be framed only by meterd's own pages (`'self'`). The schema checks the entries' form
(no spaces or `;`, so nothing can be smuggled into the header); this module builds the
struct.
"""

from __future__ import annotations

import msgspec


class PortalConfig(msgspec.Struct, frozen=True):
    frame_ancestors: tuple[str, ...] = ("'self'",)


def read_portal(value: object) -> PortalConfig:
    """The portal section (`value` is the document's "portal"), once the schema accepted it."""
    if not isinstance(value, dict):
        return PortalConfig()
    ancestors = value.get("frameAncestors")
    if not isinstance(ancestors, list) or not ancestors:
        return PortalConfig()
    return PortalConfig(tuple(source for source in ancestors if isinstance(source, str)))
