"""Watched customers, ingest touches and usage alerts in PostgreSQL.

Several processes may check alerts at once: the unique key of `usage_alerts` lets one
of them record an alert (and its outbox rows); the others find it there and write
nothing. Touches are locked in (customer, meter) order by ingest and by the check
alike, so the two never wait on each other in a cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import psycopg

from meterd.limits import UsageAlert
from meterd.messages import Outgoing
from meterd.storage.base import TouchedMeter
from meterd.storage.postgres.migrate import PACKAGE
from meterd.storage.rows import alert_from_row, alert_values
from meterd.storage.sqlfiles import read_queries

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


@functools.cache
def queries() -> dict[str, str]:
    return read_queries(PACKAGE, "alerts.sql")


async def touch_watched(conn: Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """In the events' transaction: mark the (customer, meter) pairs of watched customers.

    No customer with a limit at all: one constant-time query. Otherwise one lookup of
    the transaction's customers, and a write only for those with limits.
    """
    cursor = await conn.execute(queries()["any_watched"].encode())
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return
    distinct = set(pairs)
    if not distinct:
        return
    customers = list({customer for customer, _ in distinct})
    cursor = await conn.execute(queries()["watched_among"].encode(), (customers,))
    watched = {row[0] for row in await cursor.fetchall()}
    # Sorted: concurrent transactions lock the same touch rows in the same order.
    touched = sorted(pair for pair in distinct if pair[0] in watched)
    if touched:
        await conn.execute(
            queries()["touch"].encode(),
            ([customer for customer, _ in touched], [meter for _, meter in touched]),
        )


class PostgresAlerts:
    """The entitlement and alert methods of `PostgresStore`."""

    if TYPE_CHECKING:

        def _connection(self) -> AbstractAsyncContextManager[Connection]: ...

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def set_watched(self, customer_id: str, *, watched: bool, meters: Sequence[str]) -> None:
        q = queries()
        async with self._connection() as conn, conn.transaction():
            await conn.execute(q["watch" if watched else "unwatch"].encode(), (customer_id,))
            if watched and meters:
                await touch_watched(conn, [(customer_id, meter) for meter in meters])

    async def sync_watched(self, *, plans_with_allowances: Sequence[str]) -> int:
        q = queries()
        plans = sorted(plans_with_allowances)
        async with self._connection() as conn, conn.transaction():
            await conn.execute(q["unwatch_customers_without_limits"].encode(), (plans,))
            await conn.execute(q["watch_customers_with_limits"].encode(), (plans,))
            cursor = await conn.execute(q["count_watched"].encode())
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def touched_meters(
        self, *, after: tuple[str, str] | None, limit: int
    ) -> list[TouchedMeter]:
        rows = await self._fetch(queries()["touched_meters"], (*(after or ("", "")), limit))
        return [TouchedMeter(customer, meter, int(version)) for customer, meter, version in rows]

    async def record_alerts(
        self,
        alerts: Sequence[tuple[UsageAlert, Sequence[Outgoing]]],
        *,
        checked: Sequence[TouchedMeter],
    ) -> int:
        q = queries()
        delivery_sql = _delivery_sql().encode()
        written = 0
        async with self._connection() as conn, conn.transaction():
            for alert, outgoing in sorted(alerts, key=lambda item: item[0].id):
                cursor = await conn.execute(q["insert_alert"].encode(), alert_values(alert))
                if await cursor.fetchone() is None:
                    continue  # crossed and recorded before: once per period and threshold
                written += 1
                if outgoing:
                    now = alert.created_ms
                    await conn.execute(
                        delivery_sql,
                        (
                            now,
                            now,
                            now,
                            [o.message_id for o in outgoing],
                            [o.aggregation_id for o in outgoing],
                            [o.url for o in outgoing],
                            [o.payload for o in outgoing],
                        ),
                    )
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    q["forget_touch"].encode(),
                    [
                        (t.customer_id, t.meter, t.version)
                        for t in sorted(checked, key=lambda t: (t.customer_id, t.meter))
                    ],
                )
        return written

    async def list_alerts(self, *, customer_id: str | None, limit: int) -> list[UsageAlert]:
        rows = await self._fetch(queries()["list_alerts"], (customer_id, customer_id, limit))
        return [alert_from_row(row) for row in rows]


@functools.cache
def _delivery_sql() -> str:
    return read_queries(PACKAGE)["insert_deliveries"]
