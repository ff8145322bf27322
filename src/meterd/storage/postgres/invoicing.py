"""Customers, plan assignments and invoices in PostgreSQL.

Several processes may send invoices: a claim takes due rows with `FOR UPDATE SKIP
LOCKED` and a lease, and an invoice already `sent` is never changed again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg

from meterd.aggregation import AggregationRow
from meterd.invoices import InvoiceRecord, PeriodInvoicing
from meterd.messages import invoice_outgoing
from meterd.periods import PeriodBounds
from meterd.storage.base import CustomerRecord, InvoiceAttempt, InvoiceQuery, PlanAssignment
from meterd.storage.postgres.migrate import PACKAGE
from meterd.storage.rows import (
    PERIOD_INVOICES,
    SELECT_INVOICES,
    customer_from_rows,
    invoice_from_row,
    invoice_values,
    latest_plans,
)
from meterd.storage.sqlbuild import select_where
from meterd.storage.sqlfiles import read_queries
from meterd.timeutil import now_ms

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


@functools.cache
def queries() -> dict[str, str]:
    return read_queries(PACKAGE, "invoicing.sql")


async def write_invoices(
    conn: Connection,
    *,
    invoicing: PeriodInvoicing,
    period: str,
    bounds: PeriodBounds,
    rows: Sequence[AggregationRow],
    delivery_sql: str,
    now_ms: int,
) -> int:
    """In the close's transaction: the period's invoices and their `invoice.created` rows."""
    wanted = invoicing.plans_for(period)
    if not wanted:
        return 0
    cursor = await conn.execute(queries()["plans_in_force"].encode(), (bounds.start_ms,))
    plan_of = latest_plans(await cursor.fetchall(), wanted)
    drafts = invoicing.drafts(
        period=period,
        bounds=bounds,
        totals={row.customer_id: row.totals for row in rows},
        plan_of=plan_of,
        now_ms=now_ms,
    )
    written = 0
    for invoice in drafts:
        # False: invoiced by an earlier close of this period.
        written += await _insert_invoice(conn, invoice, invoicing, delivery_sql, now_ms)
    return written


async def write_adjustments(
    conn: Connection,
    *,
    invoicing: PeriodInvoicing,
    rows: Sequence[AggregationRow],
    delivery_sql: str,
    now_ms: int,
) -> int:
    """The hook for revisions (corrections): in the transaction that writes revised records
    of closed periods, an adjustment invoice (and its `invoice.created` rows) for each
    customer period already invoiced whose price changed. Returns how many were written."""
    written = 0
    for row in rows:
        cursor = await conn.execute(
            (SELECT_INVOICES + PERIOD_INVOICES).replace("?", "%s").encode(),
            (row.customer_id, row.period, row.period_start),
        )
        previous = [invoice_from_row(found) for found in await cursor.fetchall()]
        adjustment = invoicing.adjustment(previous, totals=row.totals, now_ms=now_ms)
        if adjustment is None:
            continue
        if await _insert_invoice(conn, adjustment, invoicing, delivery_sql, now_ms):
            written += 1
    return written


async def _insert_invoice(
    conn: Connection,
    invoice: InvoiceRecord,
    invoicing: PeriodInvoicing,
    delivery_sql: str,
    now_ms: int,
) -> bool:
    """Insert a new invoice and its outbox rows; False if it was already there."""
    cursor = await conn.execute(queries()["insert_invoice"].encode(), invoice_values(invoice))
    if await cursor.fetchone() is None:
        return False
    outgoing = invoice_outgoing(invoice, invoicing.webhooks)
    if outgoing:
        await conn.execute(
            delivery_sql.encode(),
            (
                now_ms,
                now_ms,
                now_ms,
                [o.message_id for o in outgoing],
                [o.aggregation_id for o in outgoing],
                [o.url for o in outgoing],
                [o.payload for o in outgoing],
            ),
        )
    return True


class PostgresInvoicing:
    """The customer and invoice methods of `PostgresStore`."""

    if TYPE_CHECKING:

        def _connection(self) -> AbstractAsyncContextManager[Connection]: ...

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def put_customer(
        self, customer: CustomerRecord, *, assignment: PlanAssignment | None
    ) -> CustomerRecord:
        q = queries()
        limits = None if customer.limits is None else customer.limits.decode()
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                q["upsert_customer"].encode(),
                (
                    customer.id,
                    customer.stripe_customer,
                    limits,
                    customer.created_ms,
                    customer.updated_ms,
                ),
            )
            if assignment is not None:
                await conn.execute(
                    q["delete_plans_from"].encode(), (customer.id, assignment.effective_from_ms)
                )
                await conn.execute(
                    q["insert_plan"].encode(),
                    (customer.id, assignment.effective_from_ms, assignment.plan),
                )
        found = await self.get_customer(customer.id)
        assert found is not None
        return found

    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        rows = await self._fetch(queries()["get_customer"], (customer_id,))
        if not rows:
            return None
        plans = await self._fetch(queries()["customer_plans"], (customer_id,))
        return customer_from_rows(rows[0], plans)

    async def list_customers(self, *, limit: int, after_id: str | None) -> list[CustomerRecord]:
        rows = await self._fetch(queries()["list_customers"], (after_id or "", limit))
        if not rows:
            return []
        plans: dict[str, list[tuple[str | None, int]]] = {}
        for customer_id, plan, start in await self._fetch(
            queries()["plans_between"], (rows[0][0], rows[-1][0])
        ):
            plans.setdefault(customer_id, []).append((plan, start))
        return [customer_from_rows(row, plans.get(row[0], [])) for row in rows]

    async def list_invoices(self, query: InvoiceQuery) -> list[InvoiceRecord]:
        sql, params = select_where(
            SELECT_INVOICES,
            [
                ("customer_id = ?", query.customer_id),
                ("status = ?", query.status),
                ("(period_start, id) < (?, ?)", query.before),
            ],
            order_by="period_start DESC, id DESC",
            limit=query.limit,
        )
        rows = await self._fetch(sql.replace("?", "%s"), params)
        return [invoice_from_row(row) for row in rows]

    async def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        rows = await self._fetch(SELECT_INVOICES + " WHERE id = %s", (invoice_id,))
        return invoice_from_row(rows[0]) if rows else None

    async def claim_invoices(
        self, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[InvoiceRecord]:
        params = (now_ms + lease_ms, now_ms, now_ms, limit)
        ids = [row[0] for row in await self._fetch(queries()["claim_invoices"], params)]
        if not ids:
            return []
        rows = await self._fetch(SELECT_INVOICES + " WHERE id = ANY(%s)", (ids,))
        return sorted(
            (invoice_from_row(row) for row in rows),
            key=lambda invoice: (invoice.next_attempt_ms or 0, invoice.id),
        )

    async def save_invoice_progress(
        self, invoice_id: str, *, provider_customer: str | None, provider_items: dict[str, str]
    ) -> None:
        items = msgspec.json.encode(provider_items).decode()
        await self._execute(
            queries()["save_invoice_progress"], (provider_customer, items, now_ms(), invoice_id)
        )

    async def finish_invoice_attempt(self, attempt: InvoiceAttempt) -> None:
        await self._execute(
            queries()["finish_invoice_attempt"],
            (
                attempt.status,
                attempt.next_attempt_ms,
                attempt.last_error,
                attempt.provider_invoice,
                attempt.now_ms,
                attempt.status,
                attempt.now_ms,
                attempt.invoice_id,
            ),
        )

    async def resend_invoice(
        self, invoice_id: str, *, provider: str, now_ms: int
    ) -> InvoiceRecord | None:
        await self._execute(queries()["resend_invoice"], (now_ms, provider, now_ms, invoice_id))
        return await self.get_invoice(invoice_id)

    async def _execute(self, sql: str, params: Sequence[Any]) -> None:
        async with self._connection() as conn:
            await conn.execute(sql.encode(), params)
