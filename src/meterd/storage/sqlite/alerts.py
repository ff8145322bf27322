"""Watched customers, ingest touches and usage alerts in SQLite (writes on the single writer)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import msgspec

from meterd.limits import UsageAlert
from meterd.messages import Outgoing
from meterd.storage.base import TouchedMeter
from meterd.storage.rows import alert_from_row, alert_values
from meterd.storage.sqlfiles import read_queries
from meterd.storage.sqlite.migrate import PACKAGE

if TYPE_CHECKING:
    from meterd.storage.sqlite.writer import Writer

T = TypeVar("T")


@functools.cache
def queries() -> dict[str, str]:
    return read_queries(PACKAGE, "alerts.sql")


def touch_watched(conn: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """In the events' transaction: mark the (customer, meter) pairs of watched customers.

    No customer with a limit at all: one constant-time query. Otherwise one lookup of
    the transaction's customers, and a write only for those with limits.
    """
    if not conn.execute(queries()["any_watched"]).fetchone()[0]:
        return
    distinct = set(pairs)
    if not distinct:
        return
    customers = list({customer for customer, _ in distinct})
    found = conn.execute(queries()["watched_among"], (msgspec.json.encode(customers).decode(),))
    watched = {row[0] for row in found}
    if watched:
        touched = sorted(pair for pair in distinct if pair[0] in watched)
        conn.executemany(queries()["touch"], touched)


class SQLiteAlerts:
    """The entitlement and alert methods of `SQLiteStore`."""

    if TYPE_CHECKING:

        @property
        def writer(self) -> Writer: ...

        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def set_watched(self, customer_id: str, *, watched: bool, meters: Sequence[str]) -> None:
        q = queries()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(q["watch" if watched else "unwatch"], (customer_id,))
            if watched:
                conn.executemany(q["touch"], [(customer_id, meter) for meter in sorted(meters)])

        await self.writer.call(write)

    async def sync_watched(self, *, plans_with_allowances: Sequence[str]) -> int:
        q = queries()
        plans = msgspec.json.encode(sorted(plans_with_allowances)).decode()

        def write(conn: sqlite3.Connection) -> int:
            conn.execute(q["unwatch_customers_without_limits"], (plans,))
            conn.execute(q["watch_customers_with_limits"], (plans,))
            return int(conn.execute(q["count_watched"]).fetchone()[0])

        return await self.writer.call(write)

    async def touched_meters(
        self, *, after: tuple[str, str] | None, limit: int
    ) -> list[TouchedMeter]:
        sql = queries()["touched_meters"]
        params = (*(after or ("", "")), limit)
        return await self._read(
            lambda conn: [TouchedMeter(*row) for row in conn.execute(sql, params)]
        )

    async def record_alerts(
        self,
        alerts: Sequence[tuple[UsageAlert, Sequence[Outgoing]]],
        *,
        checked: Sequence[TouchedMeter],
    ) -> int:
        q = queries()
        delivery_sql = _delivery_sql()

        def write(conn: sqlite3.Connection) -> int:
            written = 0
            for alert, outgoing in alerts:
                if conn.execute(q["insert_alert"], alert_values(alert)).rowcount != 1:
                    continue  # crossed and recorded before: once per period and threshold
                written += 1
                now = alert.created_ms
                conn.executemany(
                    delivery_sql,
                    [
                        (out.message_id, out.aggregation_id, out.url, out.payload, now, now, now)
                        for out in outgoing
                    ],
                )
            conn.executemany(
                q["forget_touch"], [(t.customer_id, t.meter, t.version) for t in checked]
            )
            return written

        return await self.writer.call(write)

    async def list_alerts(self, *, customer_id: str | None, limit: int) -> list[UsageAlert]:
        sql = queries()["list_alerts"]
        return await self._read(
            lambda conn: [alert_from_row(row) for row in conn.execute(sql, (customer_id, limit))]
        )


@functools.cache
def _delivery_sql() -> str:
    return read_queries(PACKAGE)["insert_delivery"]
