"""Load from several client processes, each with one keep-alive httpx connection.

Every process connects first, waits at a barrier until all have, then sends its own
share of requests one after another, bounded by their count and by a time budget.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier

import httpx

START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 60.0


@dataclass
class ClientReport:
    """What one client process saw; times are CLOCK_MONOTONIC, comparable across processes."""

    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    stored: int = 0
    first_send: float = float("inf")
    last_done: float = float("-inf")
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class LoadResult:
    clients: list[ClientReport]

    @property
    def seconds(self) -> float:
        first = min(c.first_send for c in self.clients)
        last = max(c.last_done for c in self.clients)
        return max(last - first, 0.0)

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.clients)

    @property
    def stored(self) -> int:
        return sum(c.stored for c in self.clients)

    @property
    def statuses(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for client in self.clients:
            for status, count in client.statuses.items():
                total[status] = total.get(status, 0) + count
        return dict(sorted(total.items()))

    @property
    def errors(self) -> list[str]:
        return [error for client in self.clients for error in client.errors]

    @property
    def cpu_s(self) -> float:
        return sum(c.cpu_s for c in self.clients)


def send_share(
    base_url: str,
    path: str,
    headers: dict[str, str],
    bodies: Sequence[bytes | None],
    budget_s: float,
    ready: Barrier,
    go: Barrier,
    results: multiprocessing.Queue[ClientReport],
) -> None:
    """One client process: POST each body (GET where it is None) until done or out of time."""
    report = ClientReport()
    try:
        with httpx.Client(
            base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S, trust_env=False
        ) as client:
            client.get("/ping")  # opens the keep-alive connection before the clock starts
            ready.wait(timeout=START_TIMEOUT_S)
            go.wait(timeout=START_TIMEOUT_S)
            cpu_before = time.process_time()
            report.first_send = time.monotonic()
            deadline = report.first_send + budget_s
            for body in bodies:
                if time.monotonic() > deadline:
                    break
                _send(client, path, body, report)
            report.cpu_s = time.process_time() - cpu_before
    except Exception as error:  # reported to the parent, which counts it as a problem
        report.errors.append(repr(error))
        # Whoever still waits at a barrier (the parent, the others) gives up now.
        ready.abort()
        go.abort()
    results.put(report)


def _send(client: httpx.Client, path: str, body: bytes | None, report: ClientReport) -> None:
    report.sent += 1
    try:
        if body is None:
            response = client.get(path)
        else:
            response = client.post(path, content=body)
    except httpx.HTTPError as error:
        report.errors.append(repr(error))
        return
    report.last_done = time.monotonic()
    report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
    if response.status_code == 201:
        answer = response.json()
        # /usagebatch says how many it stored; /usage/{type} says whether it was a duplicate.
        report.stored += int(answer["stored"]) if "stored" in answer else not answer["duplicate"]
    elif response.status_code >= 300 and len(report.errors) < 5:
        report.errors.append(f"{response.status_code}: {response.text[:200]}")


def run_clients(
    base_url: str,
    path: str,
    headers: dict[str, str],
    shares: Sequence[Sequence[bytes | None]],
    budget_s: float,
    on_release: Callable[[list[int]], object] = lambda pids: None,
    on_done: Callable[[], object] = lambda: None,
) -> LoadResult:
    """One process per share, released together; waits for all of them, bounded in time.

    `on_release` gets the clients' pids when every client is connected, just before
    they are let go; `on_done` runs when the last one has reported, before they exit.
    """
    context = multiprocessing.get_context("spawn")
    ready, go = context.Barrier(len(shares) + 1), context.Barrier(len(shares) + 1)
    results: multiprocessing.Queue[ClientReport] = context.Queue()
    processes = [
        context.Process(
            target=send_share,
            args=(base_url, path, headers, list(share), budget_s, ready, go, results),
            name=f"bench-client-{index}",
            daemon=True,
        )
        for index, share in enumerate(shares)
    ]
    try:
        for process in processes:
            process.start()
        try:
            ready.wait(timeout=START_TIMEOUT_S)
            on_release([process.pid or 0 for process in processes])
            go.wait(timeout=START_TIMEOUT_S)
        except threading.BrokenBarrierError:
            errors = _first_errors(results)
            raise RuntimeError(f"a client process failed to start: {errors}") from None
        timeout = budget_s + REQUEST_TIMEOUT_S + 10
        reports = [results.get(timeout=timeout) for _ in processes]
        on_done()
    finally:
        for process in processes:
            if process.pid is None:
                continue  # never started
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    return LoadResult(reports)


def _first_errors(results: multiprocessing.Queue[ClientReport]) -> list[str]:
    try:
        return results.get(timeout=5).errors
    except queue.Empty:
        return ["no report"]
