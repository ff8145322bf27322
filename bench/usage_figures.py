"""Live usage latency at given sizes, from bench/usage_latency.py, next to raw-event scans.

Each round is one `usage_latency` run on a database of N events that is loaded once
and reused by the following rounds (its --db). The figure is the HTTP p50/p99 over its
whole request mix; the limit is the same percentile of a GROUP BY over the raw events
(through the (customer_id, ts) index) for the first requests of the same mix.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from bench import usage_latency
from bench.figures import Figure, PartResult, median
from bench.server import remove_db
from meterd.aggregation import calendars_for
from meterd.config.loader import parse_config
from meterd.timeutil import now_ms

SCAN_QUERIES = 100
SCAN_BUDGET_S = 60.0
TARGET_P99_MS = usage_latency.TARGET_P99_MS
TARGET_EVENTS = usage_latency.TARGET_EVENTS


def short_count(count: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if count >= size and count % (size // 10) == 0:
            return f"{count / size:g}{suffix}"
    return f"{count:,}"


def db_for(reuse: Path | None, events: int, sizes: int, workdir: Path) -> Path:
    """--usage-db as given for one size; with several, PATH-<events>.<suffix> for each."""
    if reuse is None:
        return workdir / f"usage-{events}.db"
    if sizes == 1:
        return reuse
    return reuse.with_name(f"{reuse.stem}-{events}{reuse.suffix or '.db'}")


def raw_scan_ms(db: Path, results: dict[str, Any]) -> list[float]:
    """The usage run's own request mix, its first SCAN_QUERIES, as raw-event GROUP BYs."""
    plan = usage_latency.Plan.build(results["parameters"]["queries"], results["data"]["customers"])
    config = parse_config(json.dumps(usage_latency.CONFIG).encode(), "<bench config>")
    bounds = calendars_for(config)["monthly"].bounds_at(now_ms())
    sql = usage_latency.SCAN_SQL.format(hint="")
    samples = []
    with closing(usage_latency.read_connection(db)) as conn:
        began = time.perf_counter()
        for _, customer in plan.requests[:SCAN_QUERIES]:
            if time.perf_counter() - began > SCAN_BUDGET_S:
                break
            start = time.perf_counter_ns()
            conn.execute(sql, (customer, bounds.start_ms, bounds.end_ms)).fetchall()
            samples.append(usage_latency.timed_ms(start))
    return sorted(samples)


def measure(
    workdir: Path,
    *,
    sizes: Sequence[int],
    rounds: int,
    customers: int,
    queries: int,
    reuse: Path | None,
    out_dir: Path,
    smoke: bool,
) -> PartResult:
    result = PartResult([])
    for events in sizes:
        db = db_for(reuse, events, len(sizes), workdir)
        try:
            _measure_size(result, db, events, rounds, customers, queries, out_dir, smoke)
        finally:
            if reuse is None:
                remove_db(db)
                usage_latency.sidecar_path(db).unlink(missing_ok=True)
    return result


def _measure_size(
    result: PartResult,
    db: Path,
    events: int,
    rounds: int,
    customers: int,
    queries: int,
    out_dir: Path,
    smoke: bool,
) -> None:
    http: dict[str, list[float]] = {"p50_ms": [], "p99_ms": []}
    scan: dict[str, list[float]] = {"p50_ms": [], "p99_ms": []}
    ping_p50: list[float] = []
    arguments = ["--events", str(events), "--customers", str(customers)]
    arguments += ["--queries", str(queries), "--db", str(db)]
    kept = out_dir / f"usage_latency-{events}.json"
    for index in range(rounds):
        code = usage_latency.main(arguments)
        results = json.loads(usage_latency.RESULTS.read_text())
        shutil.copyfile(usage_latency.RESULTS, kept)
        if code != 0:
            result.problems.append(
                f"usage latency, {events:,} events, round {index}: exit status {code}"
                f" ({len(results['check']['mismatches'])} customers' counts differ)"
            )
        stored = results["data"]["events_stored"]
        if stored < events:
            result.problems.append(f"usage latency: {stored:,} events loaded, {events:,} asked")
        usage = results["figures"]["http"]["usage"]["all"]
        ping_p50.append(float(results["figures"]["http"]["ping"]["p50_ms"]))
        samples = raw_scan_ms(db, results)
        for key in http:
            http[key].append(float(usage[key]))
            scan[key].append(usage_latency.percentile(samples, 50 if key == "p50_ms" else 99))
    size = short_count(events)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        figure = Figure(
            key=f"usage_{label}_{events}",
            name=f"live usage {label}, {size} events stored",
            unit="ms",
            runs=http[key],
            lower_is_better=True,
            limit=f"raw-event scan {label}",
            limit_runs=scan[key],
        )
        if label == "p99":
            figure.target = f"≤ {TARGET_P99_MS:g} ms at {short_count(TARGET_EVENTS)} events"
            if events >= TARGET_EVENTS and not smoke:
                figure.met = figure.value <= TARGET_P99_MS
        result.figures.append(figure)
    result.figures[-2].notes.append(
        f"GET /customers/{{id}}/usage?period=monthly, {queries:,} sequential requests per run"
        f" over {customers:,} customers (details: {kept.name}); the raw scan runs the first"
        f" {SCAN_QUERIES} requests of the same mix in-process, without HTTP, whose floor"
        f" (GET /ping p50) was {median(ping_p50):.3f} ms"
    )
    result.details[f"usage_latency_{events}"] = str(kept)
