"""localstripe (a stateful fake Stripe) served in-process on 127.0.0.1, for the bridge's tests.

Its own CLI binds every interface and writes /tmp/localstripe.pickle; here it listens on
127.0.0.1 only, keeps its state in memory, and can be taken down and brought back on the
same port with its state intact (Stripe unreachable, then reachable).
"""

from __future__ import annotations

import asyncio
import atexit
import socket
import threading
import warnings
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

API_KEY = "sk_test_meterd_localstripe_key"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalStripe:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: Any = None
        self._site: Any = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def start(self) -> None:
        with warnings.catch_warnings():
            # localstripe registers plain functions as aiohttp handlers (deprecated there).
            warnings.simplefilter("ignore", DeprecationWarning)
            import localstripe.server  # noqa: F401
        self._thread.start()
        self._run(self._setup())

    async def _setup(self) -> None:
        from aiohttp import web
        from localstripe import resources, server

        # Keep the fake's state in memory: no pickle file shared with other runs.
        resources.store.dump_to_disk = lambda: None
        resources.store.clear()
        self._runner = web.AppRunner(server.app, access_log=None)
        await self._runner.setup()
        await self._open()

    async def _open(self) -> None:
        from aiohttp import web

        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _close_site(self) -> None:
        await self._site.stop()

    def go_down(self) -> None:
        """Stop listening; the state stays."""
        self._run(self._close_site())

    def come_up(self) -> None:
        self._run(self._open())

    async def _cleanup(self) -> None:
        await self._runner.cleanup()
        # localstripe schedules its own webhook sends (1 s later): none are registered here.
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        self._run(self._cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


_shared: LocalStripe | None = None


def shared_localstripe() -> LocalStripe:
    """The one localstripe of this test process, started on first use.

    localstripe's aiohttp application is a module global bound to the event loop that
    first served it, so a process serves it from one loop (thread) only.
    """
    global _shared
    if _shared is None:
        _shared = LocalStripe()
        _shared.start()
        atexit.register(_shared.stop)
    return _shared


class StripeAccount:
    """Calls to the fake Stripe that a test makes itself (set-up and checks)."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Invoices the fake makes itself when a subscription starts (not meterd's).
        self._initial: set[str] = set()

    def _client(self) -> Any:
        import httpx

        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        )

    def customer_with_subscription(self) -> tuple[str, str]:
        """A customer and its subscription (localstripe invoices only subscribed customers)."""
        with self._client() as client:
            customer = client.post("/v1/customers", data={"email": "billing@example.com"})
            customer_id = str(customer.json()["id"])
            plan = client.post(
                "/v1/plans",
                data={
                    "amount": "0",
                    "currency": "usd",
                    "interval": "month",
                    "product[name]": "meterd usage",
                },
            )
            subscription = client.post(
                "/v1/subscriptions",
                data={"customer": customer_id, "items[0][plan]": plan.json()["id"]},
            )
            assert subscription.status_code == 200, subscription.text
        self._initial.update(invoice["id"] for invoice in self._all_invoices(customer_id))
        return customer_id, str(subscription.json()["id"])

    def invoices(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's invoices, but for the one its subscription started with."""
        return [i for i in self._all_invoices(customer_id) if i["id"] not in self._initial]

    def _all_invoices(self, customer_id: str) -> list[dict[str, Any]]:
        with self._client() as client:
            answer = client.get("/v1/invoices", params={"customer": customer_id, "limit": "100"})
            assert answer.status_code == 200, answer.text
            return list(answer.json()["data"])
