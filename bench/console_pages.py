"""First byte of the console's overview, a customer page and a portal page.

    .venv/bin/python -m bench.console_pages [--events N] [--customers C] [--requests Q]
                                            [--db PATH] [--workdir DIR]

1. Load: N events through `SQLiteStore.ingest` (no HTTP; 50,000 per call, one writer
   transaction each, rollups and all) over C customers, skewed (customer k gets weight
   1/k), spread over the last 60 days: 90% api.calls, 5% storage.bytes, 5% llm.tokens
   with `groupBy: ["model"]`. Then every completed daily and monthly period is closed
   in-process and the meter index built, as a running server would have done. A
   database passed with --db that already holds events is reused as it is.
2. `meterd serve` on that database (127.0.0.1). The heaviest customer is put on a plan
   (its pages show the invoice preview and its groups). A signed-in client (the
   console's own form) and a portal token for the heaviest customer. Q sequential
   keep-alive requests per page, timed to the response's first byte (headers received), bodies read:
   `/console/`, `/console/customers/{heaviest}`, `/portal/{token}`, and, as the limit
   measured in the same run, `GET /ping`.

Prints p50/p99 per page and writes bench/results/console_pages.json. DESIGN §5's target
is first byte <= 300 ms at 10M events. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.machine import machine_info
from bench.server import new_api_key, running_meterd
from meterd.closing import PeriodCloser
from meterd.config.loader import parse_config
from meterd.ingest import NewEvent
from meterd.meters.prepare import prepare_meters
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms

CONFIG = {
    "periods": ["daily", "monthly"],
    "events": {
        "api.calls": {"op": "sum"},
        "storage.bytes": {"op": "max"},
        "llm.tokens": {"op": "sum", "groupBy": ["model"]},
    },
    "plans": {
        "pro": {
            "currency": "usd",
            "period": "monthly",
            "baseFee": "49.00",
            "charges": {
                "api.calls": {
                    "model": "graduated",
                    "tiers": [
                        {"upTo": 10000, "unitPrice": "0"},
                        {"upTo": None, "unitPrice": "0.001"},
                    ],
                },
                "llm.tokens": {
                    "model": "package",
                    "packageSize": 1000,
                    "packagePrice": "0.002",
                    "byGroup": {"model": {"large": {"packagePrice": "0.01"}}},
                },
            },
            "allowances": {"api.calls": 100_000_000},
        }
    },
}
MODELS = [b'{"model":"small"}', b'{"model":"large"}', b'{"model":"vision"}', None]
DAY_MS = 86_400_000
# Events per `ingest` call: one writer transaction each, as a big /usagebatch would be.
BATCH = 50_000
LOAD_BUDGET_S = 1800.0
REQUEST_BUDGET_S = 120.0
RESULTS = Path(__file__).parent / "results" / "console_pages.json"
CSRF = re.compile(r'name="csrfToken" value="([^"]+)"')


def customer_id(rank: int) -> str:
    return f"cus_{rank:06d}"


async def load(path: Path, events: int, customers: int) -> dict[str, Any]:
    config = parse_config(json.dumps(CONFIG).encode(), "<bench>")
    store = SQLiteStore(str(path), synchronous="OFF")
    await store.open()
    started = time.monotonic()
    try:
        have = len(await store.list_customer_ids(search=None, after="", limit=1))
        if have:
            return {"reused": True}
        rng = random.Random(14)
        weights = [1 / rank for rank in range(1, customers + 1)]
        now = now_ms()
        start = now - 60 * DAY_MS
        span = now - start
        stored = 0
        while stored < events and time.monotonic() - started < LOAD_BUDGET_S:
            size = min(BATCH, events - stored)
            ranks = rng.choices(range(1, customers + 1), weights, k=size)
            batch = [
                event(stored + i, rank, rng, start + (stored + i) * span // events, now)
                for i, rank in enumerate(ranks)
            ]
            await store.ingest(batch)
            stored += size
            if stored % 1_000_000 < size:
                print(f"loaded {stored:,} events in {time.monotonic() - started:.0f} s", flush=True)
        loaded_s = time.monotonic() - started
        closed = await PeriodCloser(store, config).close_completed(now_ms())
        closed_at = time.monotonic()
        indexes = await prepare_meters(store, config)  # what `meterd serve` builds at start
        return {
            "reused": False,
            "events": stored,
            "load_s": round(loaded_s, 1),
            "closed_records": closed,
            "close_s": round(closed_at - started - loaded_s, 1),
            "meter_indexes": len(indexes),
            "index_s": round(time.monotonic() - closed_at, 1),
        }
    finally:
        await store.close()


def event(n: int, rank: int, rng: random.Random, ts_ms: int, now: int) -> NewEvent:
    """Event n: nine in ten api.calls, the rest llm.tokens (by model) and storage.bytes.

    Ids are zero-padded so they arrive in index order, as time-ordered ids (UUIDv7,
    ULID) do; random ids would make the load, not the pages, the slow part.
    """
    kind = n % 20
    if kind == 0:
        return NewEvent(
            f"e{n:010d}", "storage.bytes", customer_id(rank), rng.randint(1, 100), None, ts_ms, now
        )
    if kind == 1:
        metadata = MODELS[n // 20 % len(MODELS)]
        return NewEvent(
            f"e{n:010d}",
            "llm.tokens",
            customer_id(rank),
            rng.randint(1, 2000),
            metadata,
            ts_ms,
            now,
        )
    return NewEvent(
        f"e{n:010d}", "api.calls", customer_id(rank), rng.randint(1, 100), None, ts_ms, now
    )


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def first_byte_ms(client: httpx.Client, path: str, requests: int) -> dict[str, float | int]:
    samples: list[float] = []
    deadline = time.monotonic() + REQUEST_BUDGET_S
    while len(samples) < requests and time.monotonic() < deadline:
        started = time.perf_counter()
        response = client.send(client.build_request("GET", path), stream=True)
        samples.append((time.perf_counter() - started) * 1000)
        response.read()
        response.close()
        assert response.status_code == 200, (path, response.status_code)
    return {
        "requests": len(samples),
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
    }


def measure(workdir: Path, db: Path, requests: int) -> dict[str, Any]:
    key = new_api_key()
    with running_meterd(
        workdir, db, key, "--close-interval", "1h", config_text=json.dumps(CONFIG)
    ) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            form = CSRF.search(client.get("/console/sign-in").text)
            assert form is not None
            signed = client.post("/console/sign-in", data={"apiKey": key, "csrfToken": form[1]})
            assert signed.status_code == 303, signed.text
            # The heaviest customer is on a plan: its pages show an invoice preview.
            put = client.put(
                f"/customers/{customer_id(1)}", json={"plan": "pro"}, headers={"x-apikey": key}
            )
            assert put.status_code in (200, 201), put.text
            token = client.post(
                "/portal/tokens",
                json={"customerId": customer_id(1)},
                headers={"x-apikey": key},
            ).json()["token"]
            pages = {
                "ping (limit)": "/ping",
                "console overview": "/console/",
                "console customer (heaviest)": f"/console/customers/{customer_id(1)}",
                "portal (heaviest)": f"/portal/{token}",
            }
            for path in pages.values():  # warm the caches once
                client.get(path)
            return {name: first_byte_ms(client, path, requests) for name, path in pages.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", type=Path, default=None, help="reuse or create this file")
    parser.add_argument("--workdir", type=Path, default=None)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=opts.workdir) as tmp:
        workdir = Path(tmp)
        db = opts.db or workdir / "console.db"
        loaded = asyncio.run(load(db, opts.events, opts.customers))
        pages = measure(workdir, db, opts.requests)
    results = {
        "machine": machine_info(),
        "events": opts.events,
        "customers": opts.customers,
        "load": loaded,
        "first_byte": pages,
        "target": "first byte p99 <= 300 ms at 10M events (DESIGN §5)",
    }
    print(f"events stored: {opts.events:,} over {opts.customers:,} customers; load: {loaded}")
    print(f"{'page':32} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>5}")
    for name, figure in pages.items():
        print(
            f"{name:32} {figure['p50_ms']:>8} {figure['p99_ms']:>8} {figure['max_ms']:>8}"
            f" {figure['requests']:>5}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
