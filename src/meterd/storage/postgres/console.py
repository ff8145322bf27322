"""Console sessions, portal tokens, the customer list and the overview's counts (PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from meterd.periods import BUCKET_MS
from meterd.storage.base import ConsoleSessionRecord, DeliveryStatus, PortalTokenRecord

Fetch = Callable[[str, Sequence[Any] | Mapping[str, Any]], Awaitable[list[tuple[Any, ...]]]]
Execute = Callable[[str, Sequence[Any]], Awaitable[int]]


class PostgresConsole:
    """The console's queries, run through the store's `fetch` (rows) and `execute` (rowcount)."""

    def __init__(self, queries: Mapping[str, str], fetch: Fetch, execute: Execute) -> None:
        self._q = queries
        self._fetch = fetch
        self._execute = execute

    async def add_session(self, session: ConsoleSessionRecord, now_ms: int) -> None:
        await self._execute(self._q["delete_expired_sessions"], (now_ms,))
        await self._execute(
            self._q["insert_session"],
            (session.session_hash, session.key_hash, session.created_ms, session.expires_ms),
        )

    async def get_session(self, session_hash: str) -> ConsoleSessionRecord | None:
        rows = await self._fetch(self._q["get_session"], (session_hash,))
        return ConsoleSessionRecord(*rows[0]) if rows else None

    async def delete_session(self, session_hash: str) -> None:
        await self._execute(self._q["delete_session"], (session_hash,))

    async def add_portal_token(self, token: PortalTokenRecord) -> None:
        meters = None if token.meters is None else json.dumps(list(token.meters))
        await self._execute(
            self._q["insert_portal_token"],
            (
                token.token_hash,
                token.customer_id,
                meters,
                token.created_ms,
                token.expires_ms,
                token.revoked_ms,
            ),
        )

    async def get_portal_token(self, token_hash: str) -> PortalTokenRecord | None:
        rows = await self._fetch(self._q["get_portal_token"], (token_hash,))
        if not rows:
            return None
        token, customer_id, meters, created, expires, revoked = rows[0]
        return PortalTokenRecord(
            token_hash=token,
            customer_id=customer_id,
            meters=None if meters is None else tuple(json.loads(meters)),
            created_ms=int(created),
            expires_ms=int(expires),
            revoked_ms=None if revoked is None else int(revoked),
        )

    async def revoke_portal_tokens(
        self, *, now_ms: int, token_hash: str | None, customer_id: str | None
    ) -> int:
        revoked = 0
        if token_hash is not None:
            revoked += await self._execute(self._q["revoke_portal_token"], (now_ms, token_hash))
        if customer_id is not None:
            revoked += await self._execute(
                self._q["revoke_customer_portal_tokens"], (now_ms, customer_id)
            )
        return revoked

    async def customer_ids(self, *, search: str | None, after: str, limit: int) -> list[str]:
        params = {"after": after, "search": search, "limit": limit}
        return [row[0] for row in await self._fetch(self._q["customer_ids"], params)]

    async def event_counts(self, *, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        rows = await self._fetch(
            self._q["event_counts_by_bucket"], (from_ms // BUCKET_MS, -(-to_ms // BUCKET_MS))
        )
        return [(int(bucket) * BUCKET_MS, int(count)) for bucket, count in rows]

    async def count_deliveries(self, status: DeliveryStatus) -> int:
        [(count,)] = await self._fetch(self._q["delivery_count"], (status,))
        return int(count)
