"""Closing periods and keeping aggregation records in SQLite (runs on the writer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from meterd.aggregation import Status, build_rows, with_meter_values
from meterd.config.model import EventTypeConfig, Op, WebhookConfig
from meterd.invoices import PeriodInvoicing
from meterd.messages import outgoing_for
from meterd.periods import BUCKET_MS, PeriodBounds
from meterd.storage.rows import aggregation_values
from meterd.storage.sqlite.invoicing import write_invoices
from meterd.storage.sqlite.meters import period_meter_values
from meterd.storage.sqlite.rollups import partial_rows


def write_period(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    period: str,
    bounds: PeriodBounds,
    ops: Mapping[str, Op],
    status: Status,
    now_ms: int,
    webhooks: Sequence[WebhookConfig],
    invoicing: PeriodInvoicing | None = None,
    meters: Mapping[str, EventTypeConfig] | None = None,
) -> int:
    """Write one period's aggregation records from its rollups; closed records never change.

    Closing also moves the period's watermark past `bounds`, in the same transaction.
    Returns how many records were written (newly closed, or refreshed while open).
    """
    rollups = conn.execute(
        queries["period_rollups"], (bounds.start_ms // BUCKET_MS, bounds.end_ms // BUCKET_MS)
    )
    rows = build_rows(
        partial_rows(rollups), period=period, bounds=bounds, ops=ops, status=status, now_ms=now_ms
    )
    if meters:
        values = period_meter_values(conn, queries, meters=meters, bounds=bounds)
        rows = with_meter_values(
            rows, values, period=period, bounds=bounds, status=status, now_ms=now_ms
        )
    already_closed = {
        row[0] for row in conn.execute(queries["closed_aggregation_ids"], (period, bounds.start_ms))
    }
    fresh = [row for row in rows if row.id not in already_closed]
    conn.executemany(queries["upsert_aggregation"], [aggregation_values(row) for row in fresh])
    if status == "closed":
        conn.executemany(
            queries["insert_delivery"],
            [
                (out.message_id, out.aggregation_id, out.url, out.payload, now_ms, now_ms, now_ms)
                for row in fresh
                for out in outgoing_for(row, webhooks)
            ],
        )
        if invoicing is not None:
            write_invoices(
                conn,
                invoicing=invoicing,
                period=period,
                bounds=bounds,
                rows=rows,
                delivery_sql=queries["insert_delivery"],
                now_ms=now_ms,
            )
        conn.execute(queries["advance_watermark"], (period, bounds.end_ms))
    return len(fresh)
