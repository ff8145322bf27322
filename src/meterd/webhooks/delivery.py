"""The delivery worker: drains the webhook outbox with bounded concurrency."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import httpx

from meterd.background import cancel_and_wait
from meterd.config.model import SystemConfig, WebhookConfig
from meterd.storage.base import AttemptOutcome, AttemptRecord, DeliveryRecord, Store
from meterd.timeutil import now_ms
from meterd.webhooks.retry import next_step
from meterd.webhooks.signing import signed_headers

log = logging.getLogger("meterd.webhooks")

TIMEOUT_S = 15.0
RESPONSE_KEPT_BYTES = 1024
# A claim outlives the longest attempt; a crashed process's claims expire after it.
LEASE_MS = 60_000


class DeliveryWorker:
    """Sends due deliveries, at most `concurrency` at a time, and records every attempt."""

    def __init__(
        self,
        store: Store,
        config: SystemConfig,
        *,
        dry_run: bool = False,
        concurrency: int = 16,
        poll_interval_s: float = 1.0,
        clock: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.webhooks = {hook.url: hook for hook in config.webhooks}
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="meterd-delivery-worker")

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; let attempts in flight finish and be recorded."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await self.store.release_claims()
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        async with httpx.AsyncClient(
            timeout=TIMEOUT_S, follow_redirects=False, limits=limits
        ) as client:
            try:
                while True:
                    await self._claim_and_send(client)
            finally:
                if self._inflight:
                    await asyncio.wait(self._inflight)

    async def _claim_and_send(self, client: httpx.AsyncClient) -> None:
        free = self.concurrency - len(self._inflight)
        claimed: list[DeliveryRecord] = []
        if free > 0:
            try:
                claimed = await self.store.claim_deliveries(
                    now_ms=self.clock(), limit=free, lease_ms=LEASE_MS
                )
            except Exception:
                log.exception("claiming webhook deliveries failed")
        for delivery in claimed:
            task = asyncio.create_task(self.deliver(client, delivery))
            self._inflight.add(task)
            task.add_done_callback(self._finished)
        if not claimed or len(claimed) < free:
            self._wake.clear()
            # Not asyncio.wait_for: on Python 3.11 it can swallow the cancel that stop()
            # sends when the event is set in the same step (CPython gh-86296).
            try:
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def deliver(self, client: httpx.AsyncClient, delivery: DeliveryRecord) -> None:
        """One attempt at one delivery, recorded whatever happens."""
        hook = self.webhooks.get(delivery.url)
        if hook is None:
            outcome = self._gone(delivery)
        elif self.dry_run:
            outcome = self._dry_run(delivery, hook)
        else:
            outcome = await self._send(client, delivery, hook)
        try:
            await self.store.record_attempt(outcome)
        except Exception:
            # The claim expires and the attempt is repeated: receivers dedupe by webhook-id.
            log.exception("recording delivery %d failed", delivery.id)

    async def _send(
        self, client: httpx.AsyncClient, delivery: DeliveryRecord, hook: WebhookConfig
    ) -> AttemptOutcome:
        attempted = self.clock()
        headers = signed_headers(
            hook.secrets, delivery.message_id, attempted // 1000, delivery.payload
        )
        started = time.perf_counter()
        status_code: int | None = None
        retry_after: str | None = None
        response_text: str | None = None
        error: str | None = None
        try:
            async with client.stream(
                "POST", delivery.url, content=delivery.payload, headers=headers
            ) as response:
                status_code = response.status_code
                retry_after = response.headers.get("retry-after")
                response_text = await _first_bytes(response)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = int((time.perf_counter() - started) * 1000)
        if status_code is not None and not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
        step = next_step(
            status_code=status_code,
            retry_after=retry_after,
            attempt=delivery.attempts - delivery.retry_from + 1,
            schedule_ms=hook.retry_schedule_ms,
            now_ms=self.clock(),
            rng=self.rng,
        )
        if step.status == "failed":
            log.warning(
                "webhook delivery %d to %s failed for good: %s", delivery.id, delivery.url, error
            )
        return AttemptOutcome(
            delivery_id=delivery.id,
            attempt=AttemptRecord(attempted, status_code, latency, response_text, error),
            status=step.status,
            next_attempt_ms=step.next_attempt_ms,
        )

    def _dry_run(self, delivery: DeliveryRecord, hook: WebhookConfig) -> AttemptOutcome:
        attempted = self.clock()
        headers = signed_headers(
            hook.secrets, delivery.message_id, attempted // 1000, delivery.payload
        )
        log.info(
            "DRY RUN: would POST %s\nheaders: %s\nbody: %s",
            delivery.url,
            headers,
            delivery.payload.decode(),
        )
        return AttemptOutcome(
            delivery_id=delivery.id,
            attempt=AttemptRecord(attempted, None, 0, None, None),
            status="delivered",
            dry_run=True,
        )

    def _gone(self, delivery: DeliveryRecord) -> AttemptOutcome:
        return AttemptOutcome(
            delivery_id=delivery.id,
            attempt=AttemptRecord(self.clock(), None, 0, None, "webhook no longer configured"),
            status="failed",
        )


async def _first_bytes(response: httpx.Response) -> str:
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk[: RESPONSE_KEPT_BYTES - len(kept)]
        if len(kept) >= RESPONSE_KEPT_BYTES:
            break
    return kept.decode("utf-8", errors="replace")
