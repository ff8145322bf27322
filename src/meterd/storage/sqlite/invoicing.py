"""Customers, plan assignments and invoices in SQLite (writes run on the single writer)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import msgspec

from meterd.aggregation import AggregationRow
from meterd.invoices import InvoiceRecord, PeriodInvoicing
from meterd.messages import invoice_outgoing
from meterd.periods import PeriodBounds
from meterd.storage.base import (
    CustomerRecord,
    InvoiceAttempt,
    InvoiceQuery,
    PlanAssignment,
)
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
from meterd.storage.sqlite.migrate import PACKAGE
from meterd.timeutil import now_ms

if TYPE_CHECKING:
    from meterd.storage.sqlite.writer import Writer

T = TypeVar("T")


@functools.cache
def queries() -> dict[str, str]:
    return read_queries(PACKAGE, "invoicing.sql")


def write_invoices(
    conn: sqlite3.Connection,
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
    plan_of = latest_plans(conn.execute(queries()["plans_in_force"], (bounds.start_ms,)), wanted)
    drafts = invoicing.drafts(
        period=period,
        bounds=bounds,
        totals={row.customer_id: row.totals for row in rows},
        plan_of=plan_of,
        now_ms=now_ms,
    )
    written = 0
    for invoice in drafts:
        if conn.execute(queries()["insert_invoice"], invoice_values(invoice)).rowcount != 1:
            continue  # invoiced by an earlier close of this period
        written += 1
        conn.executemany(
            delivery_sql,
            [
                (out.message_id, out.aggregation_id, out.url, out.payload, now_ms, now_ms, now_ms)
                for out in invoice_outgoing(invoice, invoicing.webhooks)
            ],
        )
    return written


def write_adjustments(
    conn: sqlite3.Connection,
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
        previous = [
            invoice_from_row(found)
            for found in conn.execute(
                SELECT_INVOICES + PERIOD_INVOICES, (row.customer_id, row.period, row.period_start)
            )
        ]
        adjustment = invoicing.adjustment(previous, totals=row.totals, now_ms=now_ms)
        if adjustment is None:
            continue
        if conn.execute(queries()["insert_invoice"], invoice_values(adjustment)).rowcount != 1:
            continue
        written += 1
        conn.executemany(
            delivery_sql,
            [
                (out.message_id, out.aggregation_id, out.url, out.payload, now_ms, now_ms, now_ms)
                for out in invoice_outgoing(adjustment, invoicing.webhooks)
            ],
        )
    return written


class SQLiteInvoicing:
    """The customer and invoice methods of `SQLiteStore`."""

    if TYPE_CHECKING:

        @property
        def writer(self) -> Writer: ...

        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def put_customer(
        self, customer: CustomerRecord, *, assignment: PlanAssignment | None
    ) -> CustomerRecord:
        q = queries()

        def put(conn: sqlite3.Connection) -> CustomerRecord:
            limits = None if customer.limits is None else customer.limits.decode()
            conn.execute(
                q["upsert_customer"],
                (
                    customer.id,
                    customer.stripe_customer,
                    limits,
                    customer.created_ms,
                    customer.updated_ms,
                ),
            )
            if assignment is not None:
                conn.execute(q["delete_plans_from"], (customer.id, assignment.effective_from_ms))
                conn.execute(
                    q["insert_plan"], (customer.id, assignment.effective_from_ms, assignment.plan)
                )
            found = _customer(conn, customer.id)
            assert found is not None
            return found

        return await self.writer.call(put)

    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        return await self._read(lambda conn: _customer(conn, customer_id))

    async def list_customers(self, *, limit: int, after_id: str | None) -> list[CustomerRecord]:
        q = queries()

        def read(conn: sqlite3.Connection) -> list[CustomerRecord]:
            rows = conn.execute(q["list_customers"], (after_id or "", limit)).fetchall()
            if not rows:
                return []
            plans: dict[str, list[tuple[str | None, int]]] = {}
            for customer_id, plan, start in conn.execute(
                q["plans_between"], (rows[0][0], rows[-1][0])
            ):
                plans.setdefault(customer_id, []).append((plan, start))
            return [customer_from_rows(row, plans.get(row[0], [])) for row in rows]

        return await self._read(read)

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
        return await self._read(
            lambda conn: [invoice_from_row(row) for row in conn.execute(sql, params)]
        )

    async def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        return await self._read(lambda conn: _invoice(conn, invoice_id))

    async def claim_invoices(
        self, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[InvoiceRecord]:
        def claim(conn: sqlite3.Connection) -> list[InvoiceRecord]:
            params = (now_ms + lease_ms, now_ms, now_ms, limit)
            ids = [row[0] for row in conn.execute(queries()["claim_invoices"], params)]
            found = (_invoice(conn, invoice_id) for invoice_id in ids)
            return sorted(
                (invoice for invoice in found if invoice is not None),
                key=lambda invoice: (invoice.next_attempt_ms or 0, invoice.id),
            )

        return await self.writer.call(claim)

    async def save_invoice_progress(
        self, invoice_id: str, *, provider_customer: str | None, provider_items: dict[str, str]
    ) -> None:
        params = (
            provider_customer,
            msgspec.json.encode(provider_items).decode(),
            now_ms(),
            invoice_id,
        )
        await self.writer.call(
            lambda conn: conn.execute(queries()["save_invoice_progress"], params)
        )

    async def finish_invoice_attempt(self, attempt: InvoiceAttempt) -> None:
        params = finish_params(attempt)
        await self.writer.call(
            lambda conn: conn.execute(queries()["finish_invoice_attempt"], params)
        )

    async def resend_invoice(
        self, invoice_id: str, *, provider: str, now_ms: int
    ) -> InvoiceRecord | None:
        def resend(conn: sqlite3.Connection) -> InvoiceRecord | None:
            conn.execute(queries()["resend_invoice"], (now_ms, provider, now_ms, invoice_id))
            return _invoice(conn, invoice_id)

        return await self.writer.call(resend)


def finish_params(attempt: InvoiceAttempt) -> tuple[object, ...]:
    return (
        attempt.status,
        attempt.next_attempt_ms,
        attempt.last_error,
        attempt.provider_invoice,
        attempt.now_ms,
        attempt.status,
        attempt.now_ms,
        attempt.invoice_id,
    )


def _customer(conn: sqlite3.Connection, customer_id: str) -> CustomerRecord | None:
    q: Mapping[str, str] = queries()
    row = conn.execute(q["get_customer"], (customer_id,)).fetchone()
    if row is None:
        return None
    return customer_from_rows(row, conn.execute(q["customer_plans"], (customer_id,)).fetchall())


def _invoice(conn: sqlite3.Connection, invoice_id: str) -> InvoiceRecord | None:
    row = conn.execute(SELECT_INVOICES + " WHERE id = ?", (invoice_id,)).fetchone()
    return None if row is None else invoice_from_row(row)
