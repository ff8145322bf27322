"""GET /api/v1/meters/{idOrSlug}/query: a thin skin over the usage query service (§7).

The portal's `GET /api/v1/portal/meters/{slug}/query` answers through `answer_query`
too, with the subject fixed to its token's customer.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from meterd.config.model import EventTypeConfig, SystemConfig
from meterd.errors import NotAvailable
from meterd.http.responses import JSONResponse
from meterd.meters.query import run_usage_query
from meterd.meters.query import usage_query as checked_usage_query
from meterd.openmeter.meters import group_keys
from meterd.openmeter.query import (
    QueryUsage,
    UsageQuery,
    UsageRow,
    meter_query_csv,
    meter_query_result,
    usage_query,
)
from meterd.storage.base import Store
from meterd.timeutil import now_ms, parse_iso_ms

NO_QUERY_SERVICE = (
    "meter queries need the usage query service of meters v2 (DESIGN §7), which this build"
    " of meterd does not have yet"
)


async def answer_query(
    request: Request,
    *,
    store: Store,
    query_usage: QueryUsage | None,
    event_type: str,
    meter: EventTypeConfig,
    subject: str | None = None,
) -> Response:
    if query_usage is None:
        raise NotAvailable(NO_QUERY_SERVICE)
    query = usage_query(
        request.query_params.multi_items(),
        meter=event_type,
        group_keys=group_keys(meter),
        now_ms=now_ms(),
        first_data_ms=await store.first_data_ms(None),
        subject=subject,
    )
    result = meter_query_result(query, await query_usage(query))
    if "text/csv" in request.headers.get("accept", ""):
        return Response(meter_query_csv(result, query), media_type="text/csv")
    return JSONResponse(result)


def meterd_query_usage(store: Store, config: SystemConfig) -> QueryUsage:
    """`QueryUsage` on meterd's usage query service (meterd/meters/query.py, §7)."""

    async def query_usage(asked: UsageQuery) -> list[UsageRow]:
        query = checked_usage_query(
            config,
            meter=asked.meter,
            from_ms=asked.from_ms,
            to_ms=max(asked.to_ms, asked.from_ms + 1),
            now_ms=now_ms(),
            window_size=asked.window_size,
            window_time_zone=asked.window_time_zone,
            customer_ids=asked.customer_ids,
            group_by=asked.group_by,
        )
        filters = {key: kept for key, kept in asked.filters.items() if not kept.keeps_all}
        result = await run_usage_query(
            store, config, msgspec.structs.replace(query, filters=filters)
        )
        return [
            UsageRow(
                window_start_ms=parse_iso_ms(row.window_start),
                window_end_ms=parse_iso_ms(row.window_end),
                value=float(row.value),
                count=row.count,
                customer_id=row.customer_id,
                group_by=row.group_by,
            )
            for row in result.data
        ]

    return query_usage
