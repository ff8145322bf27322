"""Assemble the ASGI application from settings, config and a store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from meterd import __version__
from meterd.alerts import DEFAULT_LOOKBACK_MS, AlertChecker, AlertScheduler
from meterd.background import cancel_and_wait
from meterd.closing import CloseScheduler, PeriodCloser
from meterd.config.model import SystemConfig
from meterd.config.redact import redact_url
from meterd.errors import MeterdError
from meterd.html.app import html_routes
from meterd.http import responses
from meterd.http.aggregations import aggregation_routes
from meterd.http.auth import ApiKeyMiddleware
from meterd.http.corrections import corrections_routes
from meterd.http.customers import customer_routes
from meterd.http.deliveries import delivery_routes
from meterd.http.docs import docs_routes
from meterd.http.entitlements import entitlement_routes
from meterd.http.events import events_routes
from meterd.http.ingest import IngestRoutes
from meterd.http.invoices import invoice_routes
from meterd.http.meta import meta_routes
from meterd.http.metrics import METRICS_PATH, IngestMetrics, metrics_routes
from meterd.http.openmeter import openmeter_mount
from meterd.http.openmeter.portal import MeterdPortalTokens
from meterd.http.openmeter.query import meterd_query_usage
from meterd.http.portal_tokens import portal_token_routes
from meterd.http.usage_query import usage_query_routes
from meterd.invoicing.bridge import stripe_bridge
from meterd.keyring import KeyRing
from meterd.meters.prepare import prepare_in_background
from meterd.metrics import Metrics
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from meterd.webhooks.delivery import DeliveryWorker

log = logging.getLogger("meterd")


def log_start(settings: ServerSettings, config: SystemConfig) -> None:
    address = f"http://{settings.host}:{settings.port}"
    database = redact_url(settings.database_url)
    log.info(
        "meterd %s serving: config %s, database %s, address %s%s",
        __version__,
        config.source,
        database,
        address,
        " (DRY RUN: webhooks are logged, not sent)" if settings.dry_run else "",
        extra={
            "version": __version__,
            "config": config.source,
            "database": database,
            "address": address,
            "dry_run": settings.dry_run,
        },
    )


def create_app(settings: ServerSettings, config: SystemConfig, store: Store) -> Starlette:
    """The meterd API. Its lifespan opens `store` and runs the period-closing scheduler."""
    metrics = Metrics()
    metrics.watch(store)
    closer = PeriodCloser(store, config, metrics)
    checker = AlertChecker(
        store,
        config,
        lookback_ms=max(DEFAULT_LOOKBACK_MS, int((settings.close_interval_s or 0) * 2000)),
    )
    worker = None
    if settings.delivery_poll_s is not None:
        worker = DeliveryWorker(
            store,
            config,
            dry_run=settings.dry_run,
            concurrency=settings.delivery_concurrency,
            poll_interval_s=settings.delivery_poll_s,
            metrics=metrics,
        )
    wake_worker = worker.wake if worker is not None else lambda: None
    bridge = stripe_bridge(settings, config, store)
    bridge_provider = None if config.invoicing.stripe is None else "stripe"
    wake_bridge = bridge.wake if bridge is not None else lambda: None

    def on_closed() -> None:
        wake_worker()
        wake_bridge()

    keyring = KeyRing(store, settings.api_keys, settings.key_refresh_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        log_start(settings, config)
        preparing = asyncio.create_task(prepare_in_background(store, config), name="meterd-prepare")
        await checker.sync()
        scheduler = alerting = None
        if settings.close_interval_s is not None:
            scheduler = CloseScheduler(closer, settings.close_interval_s, on_closed=on_closed)
            scheduler.start()
            alerting = AlertScheduler(checker, settings.close_interval_s, on_alerts=wake_worker)
            alerting.start()
        if worker is not None:
            worker.start()
        if bridge is not None:
            bridge.start()
        try:
            yield
        finally:
            await cancel_and_wait(preparing)
            if scheduler is not None:
                await scheduler.stop()
            if alerting is not None:
                await alerting.stop()
            if worker is not None:
                await worker.stop()
            if bridge is not None:
                await bridge.stop()
            await store.close()

    routes = [
        *meta_routes(config, store),
        *events_routes(config, store),
        *corrections_routes(config, store),
        *aggregation_routes(config, store, closer, on_closed=on_closed),
        *delivery_routes(store, on_redeliver=wake_worker),
        *entitlement_routes(config, store),
        *customer_routes(config, store),
        *invoice_routes(store, provider=bridge_provider, on_resend=wake_bridge),
        *usage_query_routes(config, store),
        *docs_routes(),
        *portal_token_routes(config, store),
        *html_routes(
            config, store, keyring=keyring, on_redeliver=wake_worker, on_resend=wake_bridge
        ),
        *metrics_routes(metrics, store),
        openmeter_mount(
            settings,
            config,
            store,
            keyring=keyring,
            loaded_ms=now_ms(),
            query_usage=meterd_query_usage(store, config),
            portal_tokens=MeterdPortalTokens(store, config),
        ),
    ]
    public = frozenset({METRICS_PATH}) if settings.metrics_public else frozenset()
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(IngestMetrics, metrics=metrics),
            Middleware(ApiKeyMiddleware, keyring=keyring, public_paths=public),
            Middleware(IngestRoutes, settings=settings, config=config, store=store),
        ],
        exception_handlers={
            MeterdError: responses.meterd_error,
            HTTPException: responses.http_error,
            Exception: responses.unexpected_error,
        },
        lifespan=lifespan,
    )
    # A redirect to the path with(out) its trailing slash would be built from the request's
    # Host header, which a client chooses: no redirect may send anyone elsewhere.
    app.router.redirect_slashes = False
    return app
