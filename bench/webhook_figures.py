"""Webhook deliveries per second, from bench/webhook_delivery.py, next to bare HTTP.

One concurrency (by default the one `meterd serve` runs its delivery worker with);
webhook_delivery alternates worker runs and bare-httpx runs and reports each.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import webhook_delivery
from bench.figures import Figure, PartResult


def measure(*, deliveries: int, rounds: int, concurrency: int, out_dir: Path) -> PartResult:
    # The details go straight to out_dir: no copy, so out_dir may be the default folder.
    kept = out_dir / "webhook_delivery.json"
    arguments = ["--deliveries", str(deliveries), "--concurrency", str(concurrency)]
    code = webhook_delivery.main([*arguments, "--runs", str(rounds), "--results", str(kept)])
    results = json.loads(kept.read_text())
    [row] = results["rows"]
    figure = Figure(
        key="webhook_deliveries",
        name=f"webhook deliveries, concurrency {concurrency}",
        unit="deliveries/s",
        runs=[run["per_s"] for run in row["worker_runs"]],
        limit="bare aiohttp POSTs",
        limit_runs=[run["per_s"] for run in row["ceiling_runs"]],
        target=f"≥ {webhook_delivery.TARGET_PER_S:,}/s and ≥ {webhook_delivery.TARGET_RATIO}×",
    )
    figure.met = row["meets_target"]
    figure.notes.append(
        f"{deliveries:,} deliveries per run by the real DeliveryWorker to a local receiver"
        f" (details: {kept.name})"
    )
    problems = [f"webhooks: {problem}" for problem in results["problems"]]
    if code != 0 and not problems:
        problems.append(f"webhooks: bench.webhook_delivery exited with status {code}")
    return PartResult([figure], problems, {"webhook_delivery": str(kept)})
