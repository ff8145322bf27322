"""The OpenAPI 3.1 document, generated from the msgspec types the handlers use, and /docs."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from meterd import __version__
from meterd.corrections import AmendIn, VoidIn
from meterd.customers import CustomerOut
from meterd.entitlements import EntitlementOut, EntitlementsOut
from meterd.http.aggregations import AggregationOut, TriggerOut
from meterd.http.corrections import AmendOut, EventDetailOut, RevisionOut, VoidOut
from meterd.http.deliveries import DeliveryOut
from meterd.http.events import NEXT_CURSOR_HEADER, EventOut
from meterd.http.ingest import BatchCaptured, UsageCaptured
from meterd.http.portal_tokens import RevokedOut, RevokeRequest, TokenOut, TokenRequest
from meterd.http.responses import JSONResponse
from meterd.ingest import BatchEventIn, UsageIn, ValidationProblem
from meterd.invoices import InvoiceOut
from meterd.meters.query import QueryResult
from meterd.openmeter.cloudevents import BATCH, JSON, SINGLE, CloudEventIn
from meterd.openmeter.meters import MeterOut
from meterd.openmeter.portal import InvalidateIn, PortalTokenIn, PortalTokenOut
from meterd.openmeter.query import MeterQueryResult
from meterd.preview import PreviewOut
from meterd.usage import UsageOut


class ErrorBody(msgspec.Struct):
    error: str


class InvalidBody(msgspec.Struct):
    error: str
    field: str | None = None


class IdConflictBody(msgspec.Struct):
    error: str
    id: str
    field: str


class ProblemBody(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details; an error's details come as more members (`field`, ...)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str


class BatchTooLargeBody(msgspec.Struct, rename="camel"):
    error: str
    received: int
    max_allowed: int


class ValidationFailedBody(msgspec.Struct, rename="camel"):
    error: str
    validation_errors: list[ValidationProblem]
    valid_count: int
    invalid_count: int


class LimitBody(msgspec.Struct):
    period: str
    limit: float


class CustomerBody(msgspec.Struct, rename="camel"):
    plan: str | None = None
    stripe_customer: str | None = None
    limits: dict[str, LimitBody] | None = None


class Param(NamedTuple):
    name: str
    where: str  # "path", "query" or "header"
    description: str
    schema: dict[str, Any]
    required: bool = False


class Operation(NamedTuple):
    method: str
    path: str
    summary: str
    responses: dict[int, tuple[str, Any]]
    request: Any = None
    params: tuple[Param, ...] = ()
    public: bool = False
    paged: bool = False
    # The OpenMeter-compatible surface: its own request types, Bearer auth, problem details.
    request_media: tuple[str, ...] = ("application/json",)
    error_media: str = "application/json"
    security: tuple[str, ...] = ()  # scheme names; () means the document's default
    csv: bool = False  # the 200 answer also comes as text/csv (Accept: text/csv)
    description: str = ""  # longer text; the OpenMeter routes say what differs there
    tags: tuple[str, ...] = ()


_STRING = {"type": "string"}
_TIME = {"type": "string", "description": "ISO-8601 time or epoch milliseconds"}
_LIMIT = Param("limit", "query", "Page size, 1 to 1000.", {"type": "integer", "default": 100})
_CURSOR = Param(
    "cursor", "query", f"The {NEXT_CURSOR_HEADER} header of the previous page.", _STRING
)
_EVENT_ID = Param("id", "path", "The event's id.", _STRING, required=True)
_AUTH_ERRORS: dict[int, tuple[str, Any]] = {401: ("No valid API key.", ErrorBody)}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/",
        "Service information",
        {200: ("Name, version, links.", dict[str, str])},
        public=True,
    ),
    Operation(
        "get", "/ping", "Liveness", {200: ("The process answers.", dict[str, str])}, public=True
    ),
    Operation(
        "get",
        "/health",
        "Readiness: the database answers",
        {200: ("Ready.", dict[str, str]), 503: ("The database is unreachable.", ErrorBody)},
        public=True,
    ),
    Operation(
        "post",
        "/usage/{eventType}",
        "Capture one usage event",
        {
            201: ("Committed (or a duplicate of a committed event).", UsageCaptured),
            400: ("Invalid event; nothing stored. `field` names the field at fault.", InvalidBody),
            409: ("The id was already used for a different event; nothing stored.", IdConflictBody),
            413: ("Body too large.", ErrorBody),
            503: ("Database unavailable; nothing stored, retry.", ErrorBody),
        },
        request=UsageIn,
        params=(
            Param("eventType", "path", "A configured event type.", _STRING, required=True),
            Param(
                "Idempotency-Key", "header", "Event id if the body has none (id rules).", _STRING
            ),
        ),
    ),
    Operation(
        "post",
        "/usagebatch",
        "Capture a batch of usage events, all or nothing",
        {
            201: ("All committed (duplicates acknowledged, not stored twice).", BatchCaptured),
            400: ("Not a non-empty JSON array.", ErrorBody),
            413: ("More events than maxBatchSize, or body too large.", BatchTooLargeBody),
            422: ("Some events invalid or reusing an id; nothing stored.", ValidationFailedBody),
            503: ("Database unavailable; nothing stored, retry.", ErrorBody),
        },
        request=list[BatchEventIn],
    ),
    Operation(
        "get",
        "/events",
        "Raw events, newest first",
        {200: ("One page of events.", list[EventOut]), 400: ("Invalid filter.", ErrorBody)},
        params=(
            Param("customerId", "query", "Only this customer.", _STRING),
            Param("eventType", "query", "Only this event type.", _STRING),
            Param("from", "query", "Event time at or after.", _TIME),
            Param("to", "query", "Event time at or before.", _TIME),
            Param("includeVoided", "query", "true: voided events too.", {"type": "boolean"}),
            _LIMIT,
            _CURSOR,
        ),
        paged=True,
    ),
    Operation(
        "get",
        "/events/{id}",
        "One event with its status and correction history",
        {200: ("The event.", EventDetailOut), 404: ("No such event.", ErrorBody)},
        params=(_EVENT_ID,),
    ),
    Operation(
        "post",
        "/events/{id}/void",
        "Void an event: it leaves every total; closed records get a revision",
        {
            200: ("Voided (or already voided: the first void).", VoidOut),
            400: ("No reason.", ErrorBody),
            404: ("No such event.", ErrorBody),
            409: ("The event was amended: void the replacement.", ErrorBody),
        },
        request=VoidIn,
        params=(_EVENT_ID,),
    ),
    Operation(
        "post",
        "/events/{id}/amend",
        "Replace an event: void it and store a corrected copy, in one transaction",
        {
            201: ("The replacement event.", AmendOut),
            400: ("No reason, a bad field, or nothing to change.", ErrorBody),
            404: ("No such event.", ErrorBody),
            409: ("The event is voided, or the Idempotency-Key was used elsewhere.", ErrorBody),
            422: ("The new timestamp is older than maxEventAge.", ErrorBody),
        },
        request=AmendIn,
        params=(
            _EVENT_ID,
            Param("Idempotency-Key", "header", "Makes a retried amend harmless.", _STRING),
        ),
    ),
    Operation(
        "get",
        "/aggregations",
        "Aggregation records, newest period first",
        {200: ("One page of records.", list[AggregationOut]), 400: ("Invalid filter.", ErrorBody)},
        params=(
            Param("customerId", "query", "Only this customer.", _STRING),
            Param("period", "query", "Only this configured period.", _STRING),
            Param("from", "query", "Period start at or after.", _TIME),
            Param("to", "query", "Period start at or before.", _TIME),
            _LIMIT,
            _CURSOR,
        ),
        paged=True,
    ),
    Operation(
        "post",
        "/aggregations/trigger",
        "Aggregate every period now: close completed ones, refresh open ones",
        {202: ("Records written.", TriggerOut)},
    ),
    Operation(
        "get",
        "/aggregations/{id}/events",
        "The raw events behind one aggregation record (for disputes)",
        {
            200: ("One page of events.", list[EventOut]),
            400: ("Invalid filter.", ErrorBody),
            404: ("No such period.", ErrorBody),
        },
        params=(
            Param("id", "path", "`{customerId}_{period}_{periodKey}`.", _STRING, required=True),
            Param("eventType", "query", "Only this event type.", _STRING),
            _LIMIT,
            _CURSOR,
        ),
        paged=True,
    ),
    Operation(
        "get",
        "/aggregations/{id}/revisions",
        "Every revision of a record, oldest first (revision 1 is the record as closed); "
        "an open record has none yet: []",
        {200: ("The revisions.", list[RevisionOut]), 404: ("No such record.", ErrorBody)},
        params=(
            Param("id", "path", "`{customerId}_{period}_{periodKey}`.", _STRING, required=True),
        ),
    ),
    Operation(
        "get",
        "/customers/{customerId}/usage",
        "Live usage of a customer's period",
        {
            200: ("Values as of now.", UsageOut),
            400: ("Unknown period or bad time.", ErrorBody),
            404: ("Not a customer id (control characters).", ErrorBody),
        },
        params=(
            Param("customerId", "path", "The customer.", _STRING, required=True),
            Param("period", "query", "A configured period (default monthly).", _STRING),
            Param("at", "query", "Any instant in the period (default now).", _TIME),
        ),
    ),
    Operation(
        "get",
        "/usage/query",
        "A meter's usage per window, customer and group (JSON, or CSV with Accept: text/csv)",
        {
            200: ("Rows; windows without events are left out.", QueryResult),
            400: ("Unknown meter, groupBy or filter key, bad windowSize or range.", ErrorBody),
        },
        params=(
            Param("meter", "query", "A configured meter.", _STRING, required=True),
            Param("from", "query", "Start, inclusive (default: 24 hours ago).", _TIME),
            Param("to", "query", "End, exclusive (default: now).", _TIME),
            Param(
                "windowSize", "query", "minute, hour, day, week or month (default: one).", _STRING
            ),
            Param("windowTimeZone", "query", "IANA zone (default: the config's).", _STRING),
            Param("customerId", "query", "Only these customers (repeatable).", _STRING),
            Param("groupBy", "query", "customerId or a groupBy key (repeatable).", _STRING),
            Param("filter", "query", "key:value, repeatable (OR per key).", _STRING),
        ),
    ),
    Operation(
        "get",
        "/deliveries",
        "Webhook deliveries, newest first",
        {200: ("One page of deliveries.", list[DeliveryOut]), 400: ("Invalid filter.", ErrorBody)},
        params=(
            Param("status", "query", "pending, delivered or failed.", _STRING),
            _LIMIT,
            _CURSOR,
        ),
        paged=True,
    ),
    Operation(
        "get",
        "/deliveries/{id}",
        "One delivery with its payload and every attempt",
        {200: ("The delivery.", DeliveryOut), 404: ("No such delivery.", ErrorBody)},
        params=(Param("id", "path", "Delivery id.", {"type": "integer"}, required=True),),
    ),
    Operation(
        "post",
        "/deliveries/{id}/redeliver",
        "Send a delivery again (due now, with a fresh retry schedule)",
        {202: ("Queued.", DeliveryOut), 404: ("No such delivery.", ErrorBody)},
        params=(Param("id", "path", "Delivery id.", {"type": "integer"}, required=True),),
    ),
    Operation(
        "get", "/config", "The loaded config, secrets redacted", {200: ("Config.", dict[str, Any])}
    ),
    # --- plans and invoices ---
    Operation(
        "get",
        "/customers",
        "Customers in id order",
        {200: ("One page of customers.", list[CustomerOut]), 400: ("Bad cursor.", ErrorBody)},
        params=(_LIMIT, _CURSOR),
        paged=True,
    ),
    Operation(
        "put",
        "/customers/{id}",
        "Create or replace a customer (a plan change applies from the next plan period)",
        {
            200: ("Replaced.", CustomerOut),
            201: ("Created.", CustomerOut),
            400: ("Not a JSON object, or not a customer id.", ErrorBody),
            413: ("Body too large.", ErrorBody),
            422: ("Unknown plan or invalid field (named in `field`).", ErrorBody),
        },
        request=CustomerBody,
        params=(Param("id", "path", "The customer id.", _STRING, required=True),),
    ),
    Operation(
        "get",
        "/customers/{id}",
        "One customer",
        {200: ("The customer.", CustomerOut), 404: ("No such customer.", ErrorBody)},
        params=(Param("id", "path", "The customer id.", _STRING, required=True),),
    ),
    Operation(
        "get",
        "/customers/{id}/entitlements",
        "Every configured meter's entitlement: usage, limit, remaining, hasAccess",
        {
            200: ("One entry per configured meter, by name.", EntitlementsOut),
            404: ("A customer id no event could carry.", ErrorBody),
        },
        params=(Param("id", "path", "The customer id.", _STRING, required=True),),
    ),
    Operation(
        "get",
        "/customers/{id}/entitlements/{meter}",
        "May the customer still use this meter: hasAccess is usage < limit (no limit: true)",
        {
            200: ("The meter's entitlement in its limit's period.", EntitlementOut),
            404: ("Not a configured meter, or a customer id no event could carry.", ErrorBody),
        },
        params=(
            Param("id", "path", "The customer id.", _STRING, required=True),
            Param("meter", "path", "A configured meter (event type).", _STRING, required=True),
        ),
    ),
    Operation(
        "get",
        "/customers/{id}/invoice-preview",
        "The current plan period's invoice from live usage, every line explained",
        {
            200: ("The priced lines.", PreviewOut),
            404: ("No such customer, or no plan.", ErrorBody),
        },
        params=(Param("id", "path", "The customer id.", _STRING, required=True),),
    ),
    Operation(
        "get",
        "/invoices",
        "Invoice records, newest period first",
        {200: ("One page of invoices.", list[InvoiceOut]), 400: ("Invalid filter.", ErrorBody)},
        params=(
            Param("customerId", "query", "Only this customer's invoices.", _STRING),
            Param("status", "query", "draft, sent or failed.", _STRING),
            _LIMIT,
            _CURSOR,
        ),
        paged=True,
    ),
    Operation(
        "get",
        "/invoices/{id}",
        "One invoice: lines, total, status and provider ids",
        {200: ("The invoice.", InvoiceOut), 404: ("No such invoice.", ErrorBody)},
        params=(Param("id", "path", "Invoice id (inv_...).", _STRING, required=True),),
    ),
    Operation(
        "post",
        "/invoices/{id}/resend",
        "Send a draft or failed invoice to Stripe again, now",
        {
            202: ("Queued.", InvoiceOut),
            404: ("No such invoice.", ErrorBody),
            409: ("Already sent, or no provider configured.", ErrorBody),
        },
        params=(Param("id", "path", "Invoice id (inv_...).", _STRING, required=True),),
    ),
    # --- customer portal ---
    Operation(
        "post",
        "/portal/tokens",
        "Issue a customer portal link (default 1h, at most 30d)",
        {
            201: ("The token, shown only now, and its portal URL.", TokenOut),
            400: ("Invalid request; `field` names the field.", ErrorBody),
        },
        request=TokenRequest,
    ),
    Operation(
        "post",
        "/portal/tokens/revoke",
        "Revoke one portal token, or every token of a customer",
        {
            200: ("How many tokens were revoked.", RevokedOut),
            400: ("Invalid request; `field` names the field.", ErrorBody),
        },
        request=RevokeRequest,
    ),
)


# --- the OpenMeter-compatible API (/api/v1, DESIGN §12) ----------------------------

PROBLEM = "application/problem+json"
_PROBLEM_AUTH_ERRORS: dict[int, tuple[str, Any]] = {401: ("No valid Bearer token.", ProblemBody)}
BEARER = ("bearer",)
_SLUG = Param("idOrSlug", "path", "The meter's slug or id (its event type).", _STRING, True)
_QUERY_PARAMS = (
    Param("from", "query", "Start, inclusive (RFC 3339); default: the first event.", _STRING),
    Param("to", "query", "End, exclusive (RFC 3339); default: now.", _STRING),
    Param(
        "windowSize",
        "query",
        "MINUTE, HOUR, DAY or MONTH; absent: one total.",
        {"type": "string", "enum": ["MINUTE", "HOUR", "DAY", "MONTH"]},
    ),
    Param("windowTimeZone", "query", "IANA time zone of the windows (default UTC).", _STRING),
    Param(
        "groupBy",
        "query",
        "Repeatable: `subject` or one of the meter's groupBy keys.",
        {"type": "array", "items": _STRING},
    ),
    Param(
        "advancedMeterGroupByFilters",
        "query",
        "JSON text: per groupBy key a filter of $eq $ne $in $nin $and $or,"
        ' e.g. {"model": {"$nin": ["gpt-4o"]}}. As in OpenMeter, $ne and $nin keep events'
        " without the key (or with null there); $eq and $in never match them. Other"
        " operators ($like, $gt, $exists, ...) are refused with 400.",
        _STRING,
    ),
    Param("filterGroupBy[key]", "query", "Deprecated exact match on a groupBy key.", _STRING),
)
_SUBJECT_PARAMS = (
    Param(
        "subject",
        "query",
        "Repeatable: only these customers; each row then names its subject.",
        {"type": "array", "items": _STRING},
    ),
    Param(
        "filterCustomerId",
        "query",
        "Repeatable: read as `subject` (meterd's customers are its subjects).",
        {"type": "array", "items": _STRING},
    ),
)
OPENMETER_TAG = "OpenMeter-compatible"
OPENMETER_TAG_DESCRIPTION = (
    "OpenMeter's API for producers and dashboards (DESIGN §12): OpenMeter's SDKs and"
    " CloudEvents producers work unchanged with a meterd API key as Bearer token. What"
    " differs: meters come from systemconfig.json (no create, update or delete); an"
    " event's type must be a configured meter's and its value must be at the meter's"
    " valueProperty, else 400; (source, id) deduplicates for ever; groupBy keys are"
    " top-level data keys; advancedMeterGroupByFilters takes $eq $ne $in $nin $and $or;"
    " `to` is exclusive. Other OpenMeter routes are 404. See the README, 'Coming from"
    " OpenMeter'."
)
_OPENMETER_INGEST = (
    "Differs from OpenMeter: `type` must be a configured meter's event type and `data`"
    " must hold a number at the meter's valueProperty (none for count meters), else 400"
    " naming the attribute; a repeated (source, id) is stored once, at any distance in"
    " time. Same durability, group commit and events as POST /usagebatch."
)
_OPENMETER_QUERY = (
    "The usage query of GET /usage/query, in OpenMeter's names: MINUTE windows come from"
    " raw events, the others from rollups or raw events, all exact; at most 10,000"
    " windows; voided events are left out. Differs from OpenMeter: `to` is exclusive and"
    " the first and last windows are cut to [from, to)."
)
_QUERY_ERRORS: dict[int, tuple[str, Any]] = {
    400: ("A parameter is invalid; `field` names it.", ProblemBody),
    404: ("No such meter.", ProblemBody),
}

OPENMETER_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/v1/events",
        "Ingest CloudEvents (one, or a batch, all or nothing)",
        {
            204: ("All committed (a repeated source + id is stored once).", None),
            400: ("An invalid event or body; nothing stored.", ProblemBody),
            413: ("More events than maxBatchSize, or body too large.", ProblemBody),
            415: ("Not a CloudEvents or JSON content type.", ProblemBody),
            503: ("Database unavailable; nothing stored, retry.", ProblemBody),
        },
        request=CloudEventIn | list[CloudEventIn],
        request_media=(SINGLE, BATCH, JSON),
        error_media=PROBLEM,
        security=BEARER,
        description=_OPENMETER_INGEST,
    ),
    Operation(
        "get",
        "/api/v1/meters",
        "The configured meters in OpenMeter's Meter shape (from systemconfig.json)",
        {200: ("Every meter.", list[MeterOut]), 400: ("Bad page.", ProblemBody)},
        params=(
            Param("page", "query", "Page number, from 1.", {"type": "integer"}),
            Param("pageSize", "query", "Meters per page.", {"type": "integer"}),
        ),
        error_media=PROBLEM,
        security=BEARER,
    ),
    Operation(
        "get",
        "/api/v1/meters/{idOrSlug}",
        "One meter",
        {200: ("The meter.", MeterOut), 404: ("No such meter.", ProblemBody)},
        params=(_SLUG,),
        error_media=PROBLEM,
        security=BEARER,
    ),
    Operation(
        "get",
        "/api/v1/meters/{idOrSlug}/query",
        "Query a meter's usage in windows (JSON, or CSV with Accept: text/csv)",
        {200: ("The rows.", MeterQueryResult), **_QUERY_ERRORS},
        params=(_SLUG, *_QUERY_PARAMS, *_SUBJECT_PARAMS),
        csv=True,
        error_media=PROBLEM,
        security=BEARER,
        description=_OPENMETER_QUERY,
    ),
    Operation(
        "post",
        "/api/v1/portal/tokens",
        "Create a consumer portal token for one subject (200, as OpenMeter answers)",
        {
            200: ("The token, shown this once.", PortalTokenOut),
            400: ("Empty subject or unknown meter slug.", ProblemBody),
        },
        request=PortalTokenIn,
        error_media=PROBLEM,
        security=BEARER,
    ),
    Operation(
        "post",
        "/api/v1/portal/tokens/invalidate",
        "Invalidate a portal token by id, or every token of a subject",
        {204: ("Invalidated.", None), 400: ("Neither id nor subject.", ProblemBody)},
        request=InvalidateIn,
        error_media=PROBLEM,
        security=BEARER,
    ),
    Operation(
        "get",
        "/api/v1/portal/meters/{meterSlug}/query",
        "Query a meter as the portal token's subject (Bearer: the portal token)",
        {200: ("The rows.", MeterQueryResult), **_QUERY_ERRORS},
        params=(Param("meterSlug", "path", "An allowed meter's slug.", _STRING, True),)
        + _QUERY_PARAMS,
        csv=True,
        error_media=PROBLEM,
        security=BEARER,
        description=_OPENMETER_QUERY + " The subject is the token's.",
    ),
)
OPENMETER_OPERATIONS = tuple(op._replace(tags=(OPENMETER_TAG,)) for op in OPENMETER_OPERATIONS)


def openapi_document(
    operations: tuple[Operation, ...] = OPERATIONS + OPENMETER_OPERATIONS,
) -> dict[str, Any]:
    types = [t for op in operations for t in _types_of(op)]
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    schema_of = iter(schemas)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {"title": "meterd", "version": __version__, "description": "Usage metering API."},
        "paths": paths,
        "tags": [{"name": OPENMETER_TAG, "description": OPENMETER_TAG_DESCRIPTION}],
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-apikey"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    }


def _types_of(op: Operation) -> list[Any]:
    request = [op.request] if op.request is not None else []
    bodies = [body for _, body in {**op.responses, **_extra(op)}.values() if body is not None]
    return request + bodies


def _extra(op: Operation) -> dict[int, tuple[str, Any]]:
    if op.public:
        return {}
    return _PROBLEM_AUTH_ERRORS if op.error_media == PROBLEM else _AUTH_ERRORS


def _operation(op: Operation, schema_of: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op)}
    if op.description:
        result["description"] = op.description
    if op.tags:
        result["tags"] = list(op.tags)
    if op.params:
        result["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "description": p.description,
                "required": p.required,
                "schema": p.schema,
            }
            for p in op.params
        ]
    if op.request is not None:
        schema = next(schema_of)
        result["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media in op.request_media},
        }
    result["responses"] = {}
    for status, (description, body) in {**op.responses, **_extra(op)}.items():
        response: dict[str, Any] = {"description": description}
        if body is not None:
            media = "application/json" if status < 400 else op.error_media
            response["content"] = {media: {"schema": next(schema_of)}}
            if op.csv and status == 200:
                response["content"]["text/csv"] = {"schema": {"type": "string"}}
        if op.paged and status == 200:
            response["headers"] = {
                NEXT_CURSOR_HEADER: {
                    "description": "Cursor of the next page, if any.",
                    "schema": _STRING,
                }
            }
        result["responses"][str(status)] = response
    if op.public:
        result["security"] = []
    elif op.security:
        result["security"] = [{scheme: []} for scheme in op.security]
    return result


def _operation_id(op: Operation) -> str:
    words = [w.strip("{}") for w in op.path.split("/") if w] or ["root"]
    return op.method + "_" + "_".join(words)


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meterd API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({url: "/openapi.json", dom_id: "#docs", persistAuthorization: true});
</script>
</body></html>"""


def docs_routes() -> list[BaseRoute]:
    document = JSONResponse(openapi_document()).body

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)

    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        # A relative Location: never one built from the request's Host header.
        Route("/docs/", lambda request: RedirectResponse("/docs"), methods=["GET"]),
        Mount(
            "/docs/static",
            StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
            name="docs-static",
        ),
    ]
