"""The delivery worker: drains the webhook outbox with bounded concurrency.

Each attempt has one overall deadline (ATTEMPT_TIMEOUT_S, from connecting to the last
byte of the answer). A claim lasts LEASE_FACTOR times that, and a claimed delivery that
could not start early enough to end well inside its claim is not sent at all (its claim
expires): a claim never expires while its attempt is in flight, so no other worker or
process sends the same message at the same time.

Claims are taken a batch ahead and attempts are recorded in batches (recorder.py), so
neither costs a transaction per delivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable

import aiohttp

from meterd.background import cancel_and_wait
from meterd.config.model import SystemConfig, WebhookConfig
from meterd.config.redact import redact_url
from meterd.metrics import Metrics
from meterd.storage.base import AttemptOutcome, AttemptRecord, DeliveryRecord, Store
from meterd.timeutil import now_ms
from meterd.webhooks.recorder import AttemptRecorder
from meterd.webhooks.retry import next_step
from meterd.webhooks.signing import signed_headers

log = logging.getLogger("meterd.webhooks")

ATTEMPT_TIMEOUT_S = 15.0
RESPONSE_KEPT_BYTES = 1024
# How much longer than its attempt's deadline a claim lasts: room to record the attempt.
# A crashed process's claims expire after it.
LEASE_FACTOR = 4
# After the worker loop itself fails, it starts again after this pause.
RESTART_DELAY_S = 1.0


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
        attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
        clock: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.webhooks = {hook.url: hook for hook in config.webhooks}
        # Each URL as logs may show it, worked out once rather than for every attempt.
        self._shown_urls = {url: redact_url(url) for url in self.webhooks}
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.attempt_timeout_s = attempt_timeout_s
        self.lease_ms = int(attempt_timeout_s * 1000 * LEASE_FACTOR)
        # A claimed delivery not started this long after its claim is left to expire.
        self._start_within_s = self.lease_ms / 1000 - 2 * attempt_timeout_s
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics
        self.restarts = 0
        self._recorder = AttemptRecorder(store)
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Claimed deliveries not started yet, with the loop time of their claim.
        self._ready: deque[tuple[DeliveryRecord, float]] = deque()
        # Set when _ready has work for the senders (or when they are to finish).
        self._work = asyncio.Event()
        self._closing = False
        # Attempts under way, from sending to recorded (at most `concurrency`).
        self._sending = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="meterd-delivery-worker")

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; let attempts in flight finish and be recorded."""
        # The flag stops the loop even if the cancel is lost (Python 3.11 can swallow a
        # cancel that meets an expiring asyncio.timeout).
        self._stopping = True
        self._wake.set()
        await cancel_and_wait(self._task)
        self._task = None

    async def _supervise(self) -> None:
        """Run the worker loop; when it fails, log why and start it again."""
        first = True
        while not self._stopping:
            try:
                await self._run(release=first)
                return
            except Exception:
                self.restarts += 1
                log.exception(
                    "the webhook delivery worker failed; restarting it in %.0f s", RESTART_DELAY_S
                )
            first = False
            await asyncio.sleep(RESTART_DELAY_S)

    async def _run(self, *, release: bool) -> None:
        if release:
            await self.store.release_claims()
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        # trust_env=False: no proxy variables or ~/.netrc, which aiohttp would consult on
        # every request. Deliveries connect to the receiver directly. No aiohttp timeout:
        # each attempt runs under its own deadline (asyncio.timeout_at in _send), which
        # covers connecting, sending and reading, so aiohttp's timers would only cost.
        session = aiohttp.ClientSession(
            connector=connector, trust_env=False, timeout=aiohttp.ClientTimeout()
        )
        async with session:
            # A fixed pool of senders, one per slot, each taking the next claimed
            # delivery when its attempt is recorded: no task per delivery.
            self._closing = False
            senders = [
                asyncio.create_task(self._send_claimed(session), name=f"meterd-delivery-{n}")
                for n in range(self.concurrency)
            ]
            try:
                while not self._stopping:
                    await self._claim()
            finally:
                # Claims not started are left to expire (released at the next start).
                self._ready.clear()
                self._closing = True
                self._work.set()
                await asyncio.wait(senders)

    def _room(self) -> int:
        """How many more deliveries to claim: two per slot, counting those claimed ahead."""
        return 2 * self.concurrency - self._sending - len(self._ready)

    def _wants_claim(self, room: int) -> bool:
        # Claim ahead, a batch at a time: one claim transaction serves many attempts, and
        # an attempt that ends is followed at once by the next.
        return room >= max(1, self.concurrency // 2) or (room > 0 and not self._ready)

    async def _claim(self) -> None:
        room = self._room()
        claimed: list[DeliveryRecord] = []
        if self._wants_claim(room):
            try:
                claimed = await self.store.claim_deliveries(
                    now_ms=self.clock(), limit=room, lease_ms=self.lease_ms
                )
            except Exception:
                log.exception("claiming webhook deliveries failed")
            if claimed:
                claimed_at = asyncio.get_running_loop().time()
                self._ready.extend([(delivery, claimed_at) for delivery in claimed])
                self._work.set()
        if len(claimed) < room or not claimed:
            # Nothing more is due, or there is no room: wait until a sender makes room, a
            # wake-up or the next poll. Not asyncio.wait_for: on Python 3.11 it can swallow
            # the cancel that stop() sends when the event is set in the same step
            # (CPython gh-86296).
            self._wake.clear()
            try:
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _send_claimed(self, session: aiohttp.ClientSession) -> None:
        """One sender: claimed deliveries one after another, each attempt recorded before
        the next starts, so at most `concurrency` messages are ever sent but unrecorded
        (a crash repeats at most that many)."""
        loop = asyncio.get_running_loop()
        ready = self._ready
        while True:
            if not ready:
                if self._closing:
                    return
                if self._wants_claim(self._room()):
                    self._wake.set()
                self._work.clear()
                await self._work.wait()
                continue
            delivery, claimed_at = ready.popleft()
            now = loop.time()
            if now - claimed_at > self._start_within_s:
                # Its claim could end before the attempt: leave it to expire, never send
                # what another worker may claim and send meanwhile.
                continue
            self._sending += 1
            try:
                # Each attempt gets its whole deadline from its start.
                await self._deliver(session, delivery, now + self.attempt_timeout_s)
            except Exception:
                log.exception("a webhook delivery task failed")
            finally:
                self._sending -= 1
            if self._wants_claim(self._room()):
                self._wake.set()

    async def _deliver(
        self, session: aiohttp.ClientSession, delivery: DeliveryRecord, deadline: float
    ) -> None:
        """One attempt at one delivery, recorded whatever happens."""
        outcome = await self._attempt(session, delivery, deadline)
        try:
            await self._recorder.record(outcome)
        except Exception:
            # The claim expires and the attempt is repeated: receivers dedupe by
            # webhook-id.
            log.exception("recording delivery %d failed", delivery.id)
            return
        self._log_outcome(delivery, outcome)

    async def _attempt(
        self, session: aiohttp.ClientSession, delivery: DeliveryRecord, deadline: float
    ) -> AttemptOutcome:
        hook = self.webhooks.get(delivery.url)
        try:
            if hook is None:
                outcome = self._gone(delivery)
            elif self.dry_run:
                outcome = self._dry_run(delivery, hook)
            else:
                outcome = await self._send(session, delivery, hook, deadline)
        except Exception as error:
            # A fault of meterd's own: still an attempt, recorded and retried on schedule.
            log.exception("webhook delivery %d failed inside meterd", delivery.id)
            outcome = self._outcome(
                delivery, hook, self.clock(), None, None, 0, None, f"internal error: {error!r}"
            )
        return outcome

    async def _send(
        self,
        session: aiohttp.ClientSession,
        delivery: DeliveryRecord,
        hook: WebhookConfig,
        deadline: float,
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
            async with asyncio.timeout_at(deadline):
                async with session.post(
                    delivery.url, data=delivery.payload, headers=headers, allow_redirects=False
                ) as response:
                    status_code = response.status
                    retry_after = response.headers.get("retry-after")
                    response_text = await _first_bytes(response)
        except TimeoutError:
            error = f"timed out after {self.attempt_timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = int((time.perf_counter() - started) * 1000)
        if error is not None:
            # No complete answer (cut at the deadline, connection lost): not delivered,
            # whatever status line came first. Receivers dedupe by webhook-id.
            status_code = retry_after = None
            error = error.replace(delivery.url, self._shown_url(delivery.url))
        elif status_code is not None and not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
        return self._outcome(
            delivery, hook, attempted, status_code, retry_after, latency, response_text, error
        )

    def _outcome(
        self,
        delivery: DeliveryRecord,
        hook: WebhookConfig | None,
        attempted: int,
        status_code: int | None,
        retry_after: str | None,
        latency: int,
        response_text: str | None,
        error: str | None,
    ) -> AttemptOutcome:
        step = next_step(
            status_code=status_code,
            retry_after=retry_after,
            attempt=delivery.attempts - delivery.retry_from + 1,
            schedule_ms=hook.retry_schedule_ms if hook is not None else (),
            now_ms=self.clock(),
            rng=self.rng,
        )
        return AttemptOutcome(
            delivery_id=delivery.id,
            attempt=AttemptRecord(attempted, status_code, latency, response_text, error),
            status=step.status,
            next_attempt_ms=step.next_attempt_ms,
        )

    def _shown_url(self, url: str) -> str:
        shown = self._shown_urls.get(url)
        return redact_url(url) if shown is None else shown

    def _log_outcome(self, delivery: DeliveryRecord, outcome: AttemptOutcome) -> None:
        attempt = outcome.attempt
        kind = "dry_run" if outcome.dry_run else outcome.status
        if self.metrics is not None:
            self.metrics.delivery(kind, attempt.latency_ms / 1000)
        level = logging.WARNING if outcome.status == "failed" else logging.INFO
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
            "webhook delivery %d to %s: %s (HTTP %s, %d ms%s)",
            delivery.id,
            self._shown_url(delivery.url),
            _SAID.get(kind, kind),
            attempt.status_code if attempt.status_code is not None else "-",
            attempt.latency_ms,
            f", {attempt.error}" if attempt.error else "",
            extra={
                "delivery_id": delivery.id,
                "outcome": kind,
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "error": attempt.error,
            },
        )

    def _dry_run(self, delivery: DeliveryRecord, hook: WebhookConfig) -> AttemptOutcome:
        attempted = self.clock()
        headers = signed_headers(
            hook.secrets, delivery.message_id, attempted // 1000, delivery.payload
        )
        header_lines = "".join(f"\n{name}: {value}" for name, value in headers.items())
        # Credentials in the URL stay out of logs, which travel further than the config.
        url = self._shown_url(delivery.url)
        log.info(
            "DRY RUN: would send POST %s%s\n\n%s",
            url,
            header_lines,
            delivery.payload.decode(),
            extra={"url": url, "headers": headers, "body": delivery.payload.decode()},
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


# How the log line says each outcome.
_SAID = {"pending": "will retry", "dry_run": "dry run"}


async def _first_bytes(response: aiohttp.ClientResponse) -> str:
    """The start of the answer; the rest is left unread (the connection is then closed)."""
    kept = await response.content.read(RESPONSE_KEPT_BYTES)
    # Most answers are short and already whole: no second read to learn that.
    while kept and len(kept) < RESPONSE_KEPT_BYTES and not response.content.at_eof():
        chunk = await response.content.read(RESPONSE_KEPT_BYTES - len(kept))
        if not chunk:
            break
        kept += chunk
    return kept.decode("utf-8", errors="replace")
