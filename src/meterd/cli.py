"""The `meterd` command line: builds settings once and hands them down."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import uvicorn

from meterd.apikeys import display_prefix, generate_key, hash_key
from meterd.config.loader import ConfigError, load_config, sample_config
from meterd.config.model import SystemConfig
from meterd.config.redact import redact_url
from meterd.config.schema import schema_text
from meterd.durations import parse_duration
from meterd.errors import MeterdError
from meterd.logs import LOG_FORMATS, LogFormat, logging_config
from meterd.settings import DEFAULT_CONFIG_PATH, DEFAULT_DATABASE_URL, ServerSettings
from meterd.storage import open_store
from meterd.storage.base import CustomerRecord, DeliveryRecord, KeyIdentity, Store
from meterd.terminal import print_json, print_table
from meterd.timeutil import format_ms, now_ms, parse_iso_ms
from meterd.usage import usage_of

T = TypeVar("T")

db_option = click.option(
    "--db",
    "database_url",
    envvar="METERD_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="Database URL: sqlite:///PATH or postgresql://... [env METERD_DATABASE_URL]",
)


@click.group()
@click.version_option(package_name="meterd")
def main() -> None:
    """meterd: usage metering you own. Events in, per-period totals and signed webhooks out."""


config_option = click.option(
    "--config",
    "config_path",
    envvar="METERD_CONFIG",
    default=None,
    help=f"systemconfig.json to load [default: {DEFAULT_CONFIG_PATH}; env METERD_CONFIG]",
)


@main.command()
@config_option
@db_option
@click.option("--host", envvar="METERD_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="METERD_PORT", default=8080, show_default=True, type=int)
@click.option(
    "--max-body-bytes",
    envvar="METERD_MAX_BODY_BYTES",
    default=ServerSettings.max_body_bytes,
    show_default=True,
    type=click.IntRange(min=1024),
)
@click.option(
    "--max-pending-events",
    envvar="METERD_MAX_PENDING_EVENTS",
    default=ServerSettings.max_pending_events,
    show_default=True,
    type=click.IntRange(min=1),
    help="Events waiting for a commit before ingest answers 503. [env METERD_MAX_PENDING_EVENTS]",
)
@click.option(
    "--close-interval",
    envvar="METERD_CLOSE_INTERVAL",
    default="60s",
    show_default=True,
    help="How often to close completed periods (a duration). [env METERD_CLOSE_INTERVAL]",
)
@click.option(
    "--dry-run",
    is_flag=True,
    envvar="DRY_RUN",
    help="Sign and log webhooks instead of sending them. [env DRY_RUN=1]",
)
@click.option(
    "--workers",
    envvar="METERD_WORKERS",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes (PostgreSQL only; SQLite has one writer). [env METERD_WORKERS]",
)
@click.option(
    "--ingest-process/--no-ingest-process",
    envvar="METERD_INGEST_PROCESS",
    default=True,
    show_default=True,
    help="SQLite: write events from a process of their own, beside the HTTP process's"
    " GIL. [env METERD_INGEST_PROCESS]",
)
@click.option("--access-log/--no-access-log", default=False, help="Log every request.")
@click.option(
    "--log-format",
    envvar="METERD_LOG_FORMAT",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="Plain lines, or one JSON object a line. [env METERD_LOG_FORMAT]",
)
@click.option(
    "--metrics-public",
    is_flag=True,
    envvar="METERD_METRICS_PUBLIC",
    help="Serve GET /metrics without an API key. [env METERD_METRICS_PUBLIC=1]",
)
@click.option(
    "--request-timeout",
    envvar="METERD_REQUEST_TIMEOUT",
    default="30s",
    show_default=True,
    help="A request must arrive whole (headers and body) within this. [env METERD_REQUEST_TIMEOUT]",
)
@click.option(
    "--max-connections",
    envvar="METERD_MAX_CONNECTIONS",
    default=ServerSettings.max_connections,
    show_default=True,
    type=click.IntRange(min=1),
    help="Open connections beyond this get 503 at once. [env METERD_MAX_CONNECTIONS]",
)
def serve(
    config_path: str | None,
    database_url: str,
    host: str,
    port: int,
    max_body_bytes: int,
    max_pending_events: int,
    close_interval: str,
    dry_run: bool,
    workers: int,
    ingest_process: bool,
    access_log: bool,
    log_format: LogFormat,
    metrics_public: bool,
    request_timeout: str,
    max_connections: int,
) -> None:
    """Run the meterd HTTP server."""
    if workers > 1 and not database_url.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter(
            "several processes need PostgreSQL: SQLite has one writer per file",
            param_hint="--workers",
        )
    config = _load_config_or_exit(config_path)
    settings = ServerSettings(
        database_url=database_url,
        host=host,
        port=port,
        api_keys=_env_api_keys(),
        max_body_bytes=max_body_bytes,
        max_pending_events=max_pending_events,
        ingest_process=ingest_process,
        close_interval_s=_duration_or_exit("--close-interval", close_interval) / 1000,
        dry_run=dry_run,
        stripe_api_key=os.environ.get("METERD_STRIPE_API_KEY") or None,
        request_timeout_s=_duration_or_exit("--request-timeout", request_timeout) / 1000,
        max_connections=max_connections,
        metrics_public=metrics_public,
    )
    if config.invoicing.stripe is not None and not (
        settings.stripe_api_key or config.invoicing.stripe.api_key
    ):
        click.echo(
            "invoicing.stripe is configured without a key: set invoicing.stripe.apiKey or "
            "METERD_STRIPE_API_KEY. Invoices wait as drafts until then.",
            err=True,
        )
    if dry_run:
        click.echo("DRY RUN: webhooks are signed and logged, not sent.", err=True)
    store = _open_or_exit(settings.database_url)
    new_key = _run(store, lambda: _first_api_key(store, settings))
    if new_key:
        click.echo("No API key configured: created one. It is shown only this once.")
        click.echo(f"API key: {new_key}", nl=True)
    click.echo(f"Console: {_console_url(host, port)}")
    sys.stdout.flush()

    if workers > 1:
        from meterd.http.factory import SETTINGS_ENV, worker_environment

        os.environ[SETTINGS_ENV] = worker_environment(settings, _config_file(config_path))
        uvicorn.run(
            "meterd.http.factory:app_for_worker",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            http="meterd.http.protocol:WorkerProtocol",
            access_log=access_log,
            log_level="info",
            log_config=logging_config(log_format),
        )
        return

    from meterd.http.app import create_app
    from meterd.http.gc_tuning import tune_for_serving
    from meterd.http.gil_tuning import hand_over_sooner
    from meterd.http.protocol import guarded_protocol

    store = open_store(
        settings.database_url,
        max_pending_events=settings.max_pending_events,
        ingest_process=settings.ingest_process,
    )
    app = create_app(settings, config, store)
    tune_for_serving()
    if settings.ingest_process and settings.database_url.startswith("sqlite:///"):
        hand_over_sooner()
    protocol = guarded_protocol(
        request_timeout_s=settings.request_timeout_s, max_connections=settings.max_connections
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol,
        access_log=access_log,
        log_level="info",
        log_config=logging_config(log_format),
    )


@main.command()
@db_option
def migrate(database_url: str) -> None:
    """Apply pending database migrations (serve also applies them at start)."""
    store = _open_or_exit(database_url)
    _run(store, store.ping)
    click.echo(f"{_redacted(database_url)}: schema is current.")


def _console_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the console (a wildcard bind means localhost)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/console"


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":****"
    return scheme + sep + credentials + at + host


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


@main.command()
@click.option("--customer", "customer_id", required=True, help="The customer id.")
@click.option("--period", default=None, help="A configured period [default: monthly].")
@click.option("--at", "at", default=None, help="Any instant in the period [default: now].")
@click.option(
    "--group-by",
    "group_by",
    multiple=True,
    help="Split meters that have this groupBy key by it (repeatable).",
)
@config_option
@db_option
@json_option
def usage(
    customer_id: str,
    period: str | None,
    at: str | None,
    group_by: tuple[str, ...],
    config_path: str | None,
    database_url: str,
    as_json: bool,
) -> None:
    """Print a customer's live usage for one period, from the rollups."""
    from meterd.aggregation import default_period
    from meterd.closing import PeriodCloser
    from meterd.meters.query import run_usage_query, usage_query

    config = _load_config_or_exit(config_path)
    closer = PeriodCloser(_open_existing_or_exit(database_url), config)
    name = period or default_period(closer.calendars)
    calendar = closer.calendars.get(name)
    if calendar is None:
        raise click.BadParameter(f"{name!r} is not configured", param_hint="--period")
    now = now_ms()
    try:
        bounds = calendar.bounds_at(now if at is None else parse_iso_ms(at))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--at") from None
    split = [
        meter
        for meter, event in config.events.items()
        if group_by and set(group_by) <= set(event.group_by)
    ]

    async def read() -> tuple[Any, dict[str, Any]]:
        result = await usage_of(
            closer.store,
            ops=closer.ops,
            meters=closer.meters,
            customer_id=customer_id,
            period=name,
            bounds=bounds,
            now_ms=now,
        )
        groups = {}
        for meter in split:
            query = usage_query(
                config,
                meter=meter,
                from_ms=bounds.start_ms,
                to_ms=bounds.end_ms,
                now_ms=now,
                customer_ids=[customer_id],
                group_by=group_by,
            )
            groups[meter] = (await run_usage_query(closer.store, config, query)).data
        return result, groups

    result, groups = _run(closer.store, read)
    if as_json:
        print_json(result)
        return
    group_column = ["group"] if group_by else []
    rows: list[tuple[object, ...]] = []
    for event_type, value in result.events.items():
        count = result.event_counts[event_type]
        rows.append((event_type, *[""] * len(group_column), value, count))
        for row in groups.get(event_type, []):
            dims = ", ".join(f"{k}={v}" for k, v in row.group_by.items())
            rows.append(("", dims, row.value, row.count))
    print_table(
        ("event type", *group_column, "value", "events"),
        rows,
        title=f"{customer_id} · {name} {result.period_key} ({result.status})",
        caption=f"{result.period_start} – {result.period_end}, as of {result.as_of}",
    )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
def backup(file: str, database_url: str) -> None:
    """Copy the SQLite database to FILE, consistently, even while meterd serves.

    Restore: stop meterd, delete the database's -wal and -shm files, put FILE in the
    database's place, start meterd. PostgreSQL: use pg_dump.
    """
    from meterd.storage.sqlite.backup import backup_database

    if not database_url.startswith("sqlite:///"):
        raise click.BadParameter(
            "backup copies SQLite databases; for PostgreSQL use pg_dump", param_hint="--db"
        )
    source = database_url.removeprefix("sqlite:///")
    try:
        size = backup_database(source, file)
    except MeterdError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Backed up {source} to {file} ({size:,} bytes).")


@main.command()
@click.option("--meter", required=True, help="A configured meter (event type).")
@click.option("--from", "from_", default=None, help="Start, inclusive [default: 24h ago].")
@click.option("--to", default=None, help="End, exclusive [default: now].")
@click.option(
    "--window-size", type=click.Choice(["minute", "hour", "day", "week", "month"]), default=None
)
@click.option("--window-time-zone", default=None, help="IANA zone [default: the config's].")
@click.option("--customer", "customer_ids", multiple=True, help="Only this customer (repeatable).")
@click.option("--group-by", "group_by", multiple=True, help="customerId or a groupBy key.")
@click.option("--filter", "filters", multiple=True, help="key:value (repeatable; OR per key).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@config_option
@db_option
@json_option
def query(
    meter: str,
    from_: str | None,
    to: str | None,
    window_size: str | None,
    window_time_zone: str | None,
    customer_ids: tuple[str, ...],
    group_by: tuple[str, ...],
    filters: tuple[str, ...],
    as_csv: bool,
    config_path: str | None,
    database_url: str,
    as_json: bool,
) -> None:
    """Query a meter's usage per window, customer and group (as GET /usage/query)."""
    from meterd.meters.query import query_csv, run_usage_query, usage_query

    config = _load_config_or_exit(config_path)
    try:
        checked = usage_query(
            config,
            meter=meter,
            from_ms=None if from_ is None else _instant(from_, "--from"),
            to_ms=None if to is None else _instant(to, "--to"),
            now_ms=now_ms(),
            window_size=window_size,
            window_time_zone=window_time_zone,
            customer_ids=customer_ids,
            group_by=group_by,
            filters=filters,
        )
    except MeterdError as error:
        raise click.UsageError(error.message) from None
    store = _open_existing_or_exit(database_url)
    result = _run(store, lambda: run_usage_query(store, config, checked))
    if as_json:
        print_json(result)
        return
    if as_csv:
        click.echo(query_csv(checked, result), nl=False)
        return
    dims = list(checked.dimensions)
    with_customer = "customerId" in checked.group_by
    print_table(
        ("window start", *(["customer"] if with_customer else []), *dims, "value", "events"),
        (
            (
                row.window_start,
                *([row.customer_id or ""] if with_customer else []),
                *(row.group_by[d] for d in dims),
                row.value,
                row.count,
            )
            for row in result.data
        ),
        title=f"{meter} · {result.from_} – {result.to} ({checked.window_time_zone})",
    )


def _instant(text: str, option: str) -> int:
    try:
        return int(text) if text.lstrip("-").isdigit() else parse_iso_ms(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 time", param_hint=option) from None


@main.command()
@config_option
@db_option
def rebuild(config_path: str | None, database_url: str) -> None:
    """Recompute every rollup from the raw events (they are the source of truth).

    Also builds the covering indexes of the configured meters that read raw events.
    """
    from meterd.meters.prepare import prepare_meters

    config = _load_config_or_exit(config_path)
    store = _open_existing_or_exit(database_url)

    async def rebuild_all() -> tuple[int, list[str]]:
        return await store.rebuild_rollups(), await prepare_meters(store, config)

    folded, built = _run(store, rebuild_all)
    click.echo(f"Rebuilt rollups from {folded} events.")
    if built:
        click.echo(f"Built {len(built)} meter index(es).")


@main.command()
@click.option("--failed", is_flag=True, help="Only deliveries that failed for good.")
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@db_option
@json_option
def deliveries(
    failed: bool, status: str | None, limit: int, database_url: str, as_json: bool
) -> None:
    """List webhook deliveries, newest first."""
    store = _open_existing_or_exit(database_url)
    wanted = "failed" if failed else status
    records = _run(
        store,
        lambda: store.list_deliveries(status=wanted, limit=limit, before_id=None),  # type: ignore[arg-type]
    )
    if as_json:
        print_json([_delivery_json(record) for record in records])
        return
    print_table(
        ("id", "status", "attempts", "aggregation", "url", "last error", "updated"),
        (
            (
                record.id,
                record.status + (" (dry run)" if record.dry_run else ""),
                record.attempts,
                record.aggregation_id,
                redact_url(record.url),
                record.last_error,
                format_ms(record.updated_ms),
            )
            for record in records
        ),
    )


def _delivery_json(record: DeliveryRecord) -> dict[str, object]:
    # The field names of GET /deliveries.
    return {
        "id": record.id,
        "webhookId": record.message_id,
        "aggregationId": record.aggregation_id,
        "url": redact_url(record.url),
        "status": record.status,
        "attempts": record.attempts,
        "nextAttemptAt": _time(record.next_attempt_ms),
        "deliveredAt": _time(record.delivered_ms),
        "dryRun": record.dry_run,
        "lastError": record.last_error,
        "createdAt": format_ms(record.created_ms),
        "updatedAt": format_ms(record.updated_ms),
    }


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


@main.command()
@click.argument("delivery_id", type=int)
@db_option
def redeliver(delivery_id: int, database_url: str) -> None:
    """Send a delivery again: due now, with a fresh retry schedule."""
    store = _open_existing_or_exit(database_url)
    record = _run(store, lambda: store.redeliver(delivery_id, now_ms=now_ms()))
    if record is None:
        raise click.ClickException(f"no delivery with id {delivery_id}")
    click.echo(
        f"Delivery {delivery_id} to {redact_url(record.url)} is pending again;"
        " a running server sends it."
    )


@main.command()
@click.argument("event_id")
@click.option("--reason", required=True, help="Why the event is voided (kept with the void).")
@db_option
def void(event_id: str, reason: str, database_url: str) -> None:
    """Void an event: it leaves every total; closed records it was in get a revision."""
    from meterd import corrections

    store = _open_existing_or_exit(database_url)
    body = json.dumps({"reason": reason}).encode()
    voided = _run(
        store,
        lambda: corrections.void_event(
            store, event_id=event_id, body=body, key=_operator(), now_ms=now_ms()
        ),
    )
    click.echo(f"Voided {voided.event_id} at {format_ms(voided.voided_ms)}: {voided.reason}")


@main.command()
@click.argument("event_id")
@click.option("--reason", required=True, help="Why the event is amended (kept with it).")
@click.option("--value", type=float, default=None, help="The corrected value.")
@click.option("--timestamp", default=None, help="The corrected time (ISO-8601 or epoch ms).")
@click.option("--metadata", default=None, help="The corrected metadata, a JSON object.")
@click.option("--customer", "customer_id", default=None, help="The corrected customer id.")
@config_option
@db_option
def amend(
    event_id: str,
    reason: str,
    value: float | None,
    timestamp: str | None,
    metadata: str | None,
    customer_id: str | None,
    config_path: str | None,
    database_url: str,
) -> None:
    """Replace an event by a corrected copy; the original is voided, in one transaction."""
    from meterd import corrections

    changes: dict[str, object] = {"reason": reason}
    if value is not None:
        changes["value"] = value
    if timestamp is not None:
        changes["timestamp"] = int(timestamp) if timestamp.isdigit() else timestamp
    if metadata is not None:
        try:
            changes["metadata"] = json.loads(metadata)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--metadata") from None
    if customer_id is not None:
        changes["customerId"] = customer_id
    config = _load_config_or_exit(config_path)
    store = _open_existing_or_exit(database_url)
    amended = _run(
        store,
        lambda: corrections.amend_event(
            store,
            event_id=event_id,
            body=json.dumps(changes).encode(),
            key=_operator(),
            idempotency_key=None,
            now_ms=now_ms(),
            max_event_age_ms=config.max_event_age_ms,
        ),
    )
    event = amended.replacement
    click.echo(
        f"Amended {event_id}: replaced by {event.id} ({event.customer_id}, {event.value}"
        f" at {format_ms(event.ts_ms)})"
    )


def _operator() -> KeyIdentity:
    """Corrections from the command line are recorded under the operator's login."""
    return KeyIdentity(f"cli:{getpass.getuser()}", "-")


@main.group()
def customers() -> None:
    """Customers: their plan, Stripe customer and limits."""


@customers.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--after", default=None, help="Only customers whose id sorts after this one.")
@db_option
@json_option
def customers_list(limit: int, after: str | None, database_url: str, as_json: bool) -> None:
    """List customers in id order."""
    from meterd.customers import customer_out

    store = _open_existing_or_exit(database_url)
    records = _run(store, lambda: store.list_customers(limit=limit, after_id=after))
    now = now_ms()
    shown = [customer_out(record, now_ms=now) for record in records]
    if as_json:
        print_json(shown)
        return
    print_table(
        ("id", "plan", "next plan", "stripe customer", "limits", "updated"),
        (
            (
                customer.id,
                customer.plan,
                None
                if customer.next_plan is None
                else f"{customer.next_plan.plan or '(none)'} from "
                f"{customer.next_plan.effective_from}",
                customer.stripe_customer,
                None if record.limits is None else record.limits.decode(),
                customer.updated_at,
            )
            for customer, record in zip(shown, records, strict=True)
        ),
    )


@customers.command("set")
@click.argument("customer_id")
@click.option("--plan", default=None, help="A configured plan; omit for none.")
@click.option("--stripe-customer", default=None, help="The Stripe customer id (cus_...).")
@config_option
@db_option
def customers_set(
    customer_id: str,
    plan: str | None,
    stripe_customer: str | None,
    config_path: str | None,
    database_url: str,
) -> None:
    """Create or replace a customer, like PUT /customers/{id} (limits are kept)."""
    import msgspec

    from meterd.aggregation import calendars_for
    from meterd.customers import customer_out, parse_customer, put_customer

    loaded = _load_config_or_exit(config_path)
    store = _open_or_exit(database_url)

    async def put() -> tuple[object, bool]:
        known = await store.get_customer(customer_id)
        body = {"plan": plan, "stripeCustomer": stripe_customer}
        if known is not None and known.limits is not None:
            body["limits"] = msgspec.json.decode(known.limits)
        return await put_customer(
            store,
            customer_id=customer_id,
            given=parse_customer(msgspec.json.encode(body), loaded),
            config=loaded,
            calendars=calendars_for(loaded),
            now_ms=now_ms(),
        )

    record, created = _run(store, put)
    assert isinstance(record, CustomerRecord)
    shown = customer_out(record, now_ms=now_ms())
    click.echo(
        f"{'Created' if created else 'Updated'} customer {shown.id}: plan {shown.plan or '(none)'}"
        + (
            f", then {shown.next_plan.plan or '(none)'} from {shown.next_plan.effective_from}"
            if shown.next_plan
            else ""
        )
    )


@main.group()
def invoices() -> None:
    """Invoice records and their Stripe state."""


@invoices.command("list")
@click.option("--customer", "customer_id", default=None, help="Only this customer's invoices.")
@click.option("--status", type=click.Choice(["draft", "sent", "failed"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@db_option
@json_option
def invoices_list(
    customer_id: str | None, status: str | None, limit: int, database_url: str, as_json: bool
) -> None:
    """List invoices, newest period first, with their provider state and last error."""
    from meterd.billing import invoice_status
    from meterd.invoices import invoice_out
    from meterd.storage.base import InvoiceQuery

    store = _open_existing_or_exit(database_url)
    query = InvoiceQuery(customer_id=customer_id, status=invoice_status(status), limit=limit)
    records = _run(store, lambda: store.list_invoices(query))
    if as_json:
        print_json([invoice_out(record) for record in records])
        return
    print_table(
        ("id", "customer", "period", "total", "status", "attempts", "stripe invoice", "last error"),
        (
            (
                record.id,
                record.customer_id,
                f"{record.period} {record.period_key}",
                f"{record.total} {record.currency.upper()}",
                record.status,
                record.attempts,
                record.provider_invoice,
                record.last_error,
            )
            for record in records
        ),
    )


@invoices.command("resend")
@click.argument("invoice_id")
@db_option
def invoices_resend(invoice_id: str, database_url: str) -> None:
    """Send a draft or failed invoice to Stripe again; a running server sends it."""
    from meterd.billing import resend_invoice

    store = _open_or_exit(database_url)
    record = _run(
        store, lambda: resend_invoice(store, invoice_id, provider="stripe", now_ms=now_ms())
    )
    click.echo(f"Invoice {record.id} is due now; a running server with Stripe configured sends it.")


@main.group()
def config() -> None:
    """Work with systemconfig.json."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Validate a config file without serving."""
    loaded = _load_config_or_exit(path)
    click.echo(
        f"{path}: OK ({len(loaded.events)} event types, {len(loaded.periods)} periods, "
        f"{len(loaded.webhooks)} webhooks)"
    )


@config.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of systemconfig.json.

    Save it next to the config and add "$schema": "./systemconfig.schema.json" to the
    config: editors then complete keys and underline mistakes.
    """
    click.echo(schema_text(), nl=False)


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", default="default", show_default=True, help="A label for the key.")
@db_option
def keys_create(name: str, database_url: str) -> None:
    """Create a key and print it (only its hash is stored)."""
    store = _open_or_exit(database_url)
    key = generate_key()
    record = _run(
        store,
        lambda: store.add_api_key(name=name, key_hash=hash_key(key), prefix=display_prefix(key)),
    )
    click.echo(f"Created key {record.id} ({name}). It is shown only this once.")
    click.echo(f"API key: {key}")


@keys.command("list")
@db_option
@json_option
def keys_list(database_url: str, as_json: bool) -> None:
    """List keys (their prefixes only)."""
    store = _open_existing_or_exit(database_url)
    records = _run(store, store.list_api_keys)
    if as_json:
        print_json(
            [
                {
                    "id": record.id,
                    "name": record.name,
                    "prefix": record.prefix,
                    "createdAt": format_ms(record.created_ms),
                    "revokedAt": _time(record.revoked_ms),
                }
                for record in records
            ]
        )
        return
    print_table(
        ("id", "name", "prefix", "created", "revoked"),
        (
            (
                record.id,
                record.name,
                record.prefix + "…",
                format_ms(record.created_ms),
                _time(record.revoked_ms),
            )
            for record in records
        ),
    )


@keys.command("revoke")
@click.argument("key_id", type=int)
@db_option
def keys_revoke(key_id: int, database_url: str) -> None:
    """Revoke a key by id; running servers stop accepting it within seconds."""
    store = _open_existing_or_exit(database_url)
    if not _run(store, lambda: store.revoke_api_key(key_id)):
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"Revoked key {key_id}.")


@main.command()
@click.argument("customer_id")
@click.argument("meter", required=False)
@config_option
@db_option
@json_option
def entitlements(
    customer_id: str, meter: str | None, config_path: str | None, database_url: str, as_json: bool
) -> None:
    """Print a customer's entitlements (every meter, or METER): usage, limit, access."""
    from meterd.aggregation import calendars_for, ops_for
    from meterd.entitlements import entitlements as entitlements_of

    loaded = _load_config_or_exit(config_path)
    store = _open_existing_or_exit(database_url)
    answers = _run(
        store,
        lambda: entitlements_of(
            store,
            customer_id=customer_id,
            meters=None if meter is None else [meter],
            config=loaded,
            calendars=calendars_for(loaded),
            ops=ops_for(loaded),
            now_ms=now_ms(),
        ),
    )
    if as_json:
        print_json(answers[0] if meter is not None else answers)
        return
    print_table(
        ("meter", "period", "usage", "limit", "remaining", "access"),
        (
            (
                answer.meter,
                f"{answer.period} {answer.period_start} – {answer.period_end}",
                answer.usage,
                "none" if answer.limit is None else answer.limit,
                answer.remaining,
                "yes" if answer.has_access else "NO",
            )
            for answer in answers
        ),
        title=customer_id,
    )


def _config_file(path: str | None) -> str | None:
    """The file the config comes from, or None for the built-in sample."""
    if path is None and not Path(DEFAULT_CONFIG_PATH).exists():
        return None
    return path or DEFAULT_CONFIG_PATH


def _load_config_or_exit(path: str | None) -> SystemConfig:
    if _config_file(path) is None:
        click.echo(
            f"No {DEFAULT_CONFIG_PATH} found: using the built-in sample config "
            "(see `GET /config` and the README to write your own).",
            err=True,
        )
        return sample_config()
    try:
        return load_config(path or DEFAULT_CONFIG_PATH)
    except ConfigError as error:
        click.echo(str(error), err=True)
        sys.exit(2)


def _duration_or_exit(option: str, text: str) -> int:
    try:
        milliseconds = parse_duration(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=option) from None
    if milliseconds <= 0:
        raise click.BadParameter("must be more than 0", param_hint=option)
    return milliseconds


def _env_api_keys() -> tuple[str, ...]:
    raw = os.environ.get("METERD_API_KEYS", "")
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def _open_existing_or_exit(database_url: str) -> Store:
    """The store of a database that must exist already: commands that read never create one.

    Says on stderr which database is read, since the default is relative to the folder.
    """
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///")).absolute()
        if not path.is_file():
            raise click.ClickException(
                f"no database at {path}: give --db (or METERD_DATABASE_URL), or run this"
                " where `meterd serve` keeps its meterd.db"
            )
        click.echo(f"database: {path}", err=True)
    else:
        click.echo(f"database: {_redacted(database_url)}", err=True)
    return _open_or_exit(database_url)


def _open_or_exit(database_url: str) -> Store:
    try:
        return open_store(database_url)
    except MeterdError as error:
        raise click.ClickException(error.message) from None


def _run(store: Store, action: Callable[[], Awaitable[T]]) -> T:
    """Open the store, run one action, close the store."""

    async def run() -> T:
        await store.open()
        try:
            return await action()
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except MeterdError as error:
        raise click.ClickException(error.message) from None


async def _first_api_key(store: Store, settings: ServerSettings) -> str | None:
    """On a first start with no key anywhere, create one so the API is usable."""
    if settings.api_keys or await store.active_api_key_hashes():
        return None
    key = generate_key()
    await store.add_api_key(name="first", key_hash=hash_key(key), prefix=display_prefix(key))
    return key
