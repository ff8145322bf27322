"""meterd's benchmarks in one run: `python -m bench [--smoke] [--rounds N] [--only PARTS]`.

Starts `meterd serve` on temporary SQLite databases, loads it from separate processes on
127.0.0.1 (wrk, client processes), and prints a table of figures, each the median of
--rounds runs and, for speeds, its ratio to a limit measured alternately in the same
run. Writes the figures, every run's value and the machine (with its core count) to
--out (bench/results/summary.json). Parts:

  single    single-event ingest, 64 connections (wrk), next to the no-op GET /ping
  batch     1,000-event batches from client processes, next to a raw executemany;
            the server's peak RSS under that load
  cloudevents  the same batches as CloudEvents to /api/v1/events, next to /usagebatch
  usage     live usage latency p50/p99 at --usage-events, next to raw-event scans
  close     closing --close-customers customer-periods (PeriodCloser)
  webhooks  webhook deliveries/s to a local receiver, next to bare HTTP
  meters    meters v2 read p99: percentile, unique_count, time_weighted_avg and grouped
            live usage over a customer-month, and a 30-daily-window usage query
  entitlements  entitlement check p99 next to GET /ping; batch ingest with alert
            tracking (no limits / others limited / all limited) next to tracking off
  revisions  revising closed records after 40 voids of time-weighted levels (the
            scheduler's settle) at --revision-events, next to the same at a tenth

--smoke runs every part at a tiny size once (seconds, for CI); its figures are not
judged against the targets. Exit status: 0 when everything ran (missed targets are
reported, not errors), 1 when something broke (a server failed, counts disagreed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from bench import (
    batch_ingest,
    cloudevents_ingest,
    entitlements,
    meters_figures,
    period_close,
    revision_settle,
    single_ingest,
    usage_figures,
    webhook_figures,
)
from bench.figures import SUMMARY, Figure, PartResult, print_table, start_info, write_summary
from bench.machine import load_average
from bench.server import filesystem_of
from meterd.settings import ServerSettings

PARTS = (
    "single",
    "batch",
    "cloudevents",
    "usage",
    "close",
    "webhooks",
    "meters",
    "entitlements",
    "revisions",
)


@dataclass(frozen=True)
class Sizes:
    """How much each part does: smoke mode and full mode differ only in these."""

    rounds: int
    seconds: int
    batch_events: int
    close_customers: int
    usage_events: tuple[int, ...]
    usage_customers: int
    usage_queries: int
    webhooks: int
    meter_events: int
    entitlement_events: int
    entitlement_customers: int
    entitlement_batches: int
    revision_events: int


SMOKE = Sizes(
    rounds=1,
    seconds=2,
    batch_events=5_000,
    close_customers=2_000,
    usage_events=(20_000,),
    usage_customers=1_000,
    usage_queries=200,
    webhooks=200,
    meter_events=5_000,
    entitlement_events=5_000,
    entitlement_customers=200,
    entitlement_batches=5,
    revision_events=20_000,
)
FULL = Sizes(
    rounds=3,
    seconds=10,
    batch_events=300_000,
    close_customers=100_000,
    usage_events=(1_000_000,),
    usage_customers=10_000,
    usage_queries=2_000,
    webhooks=5_000,
    meter_events=100_000,
    entitlement_events=1_000_000,
    entitlement_customers=10_000,
    entitlement_batches=100,
    revision_events=1_000_000,
)


@dataclass(frozen=True)
class Plan:
    mode: str
    sizes: Sizes
    parts: tuple[str, ...]
    batch_clients: int
    webhook_concurrency: int
    usage_db: Path | None
    out: Path
    workdir: Path | None


def counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected comma-separated positive counts")
    return values


def chosen_parts(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    if not chosen or any(part not in PARTS for part in chosen):
        raise argparse.ArgumentTypeError(f"choose from {','.join(PARTS)}")
    return chosen


def parse_plan(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--smoke", action="store_true", help="tiny sizes, one round: seconds, for CI")
    add("--rounds", type=int, metavar="N", help="runs per figure (default 3; 1 with --smoke)")
    add("--only", type=chosen_parts, default=PARTS, metavar="PARTS", help=",".join(PARTS))
    add(
        "--out",
        type=Path,
        metavar="PATH",
        default=SUMMARY,
        help="the JSON file (default bench/results/summary.json)",
    )
    add("--seconds", type=int, metavar="S", help="each wrk run (default 10; 2 with --smoke)")
    add("--batch-events", type=int, metavar="N", help="events per batch run (default 300,000)")
    add("--batch-clients", type=int, metavar="P", default=4, help="client processes (default 4)")
    add("--close-customers", type=int, metavar="N", help="periods to close (default 100,000)")
    add("--usage-events", type=counts, metavar="N,N", help="events stored (default 1000000)")
    add(
        "--usage-db",
        type=Path,
        metavar="PATH",
        help="keep the usage database and reuse it next time (several sizes: PATH-N.db)",
    )
    add("--webhooks", type=int, metavar="N", help="deliveries per webhook run (default 5,000)")
    add("--meter-events", type=int, metavar="N", help="events per meter (default 100,000)")
    add(
        "--webhook-concurrency",
        type=int,
        metavar="C",
        default=ServerSettings.delivery_concurrency,
        help="delivery worker concurrency (default %(default)s, as in meterd serve)",
    )
    add("--entitlement-events", type=int, metavar="N", help="events stored (default 1,000,000)")
    add(
        "--revision-events",
        type=int,
        metavar="N",
        help="events stored for the revisions part (default 1,000,000; also N/10)",
    )
    add("--workdir", type=Path, metavar="DIR", help="for the temporary databases (a real disk)")
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name, None) for f in fields(Sizes)}
    sizes = replace(
        SMOKE if args.smoke else FULL, **{k: v for k, v in given.items() if v is not None}
    )
    plan = Plan(
        mode="smoke" if args.smoke else "full",
        sizes=sizes,
        parts=args.only,
        batch_clients=args.batch_clients,
        webhook_concurrency=args.webhook_concurrency,
        usage_db=None if args.usage_db is None else args.usage_db.resolve(),
        out=args.out.resolve(),
        workdir=args.workdir,
    )
    numbers = [sizes.rounds, sizes.seconds, sizes.batch_events, sizes.close_customers]
    if min(*numbers, sizes.webhooks, plan.batch_clients, plan.webhook_concurrency) < 1:
        parser.error("counts, rounds and seconds must be positive")
    if "single" in plan.parts and not args.smoke and shutil.which("wrk") is None:
        parser.error("the single-event benchmark needs wrk: install it with `apt-get install wrk`")
    return plan


def run_parts(plan: Plan, workdir: Path) -> tuple[list[Figure], list[str], dict[str, object]]:
    """Every chosen part in turn; one that breaks is reported and the others still run."""
    sizes, out_dir = plan.sizes, plan.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    runners: dict[str, Callable[[], PartResult]] = {
        "single": lambda: single_ingest.measure(
            workdir, rounds=sizes.rounds, seconds=sizes.seconds, smoke=plan.mode == "smoke"
        ),
        "batch": lambda: batch_ingest.measure(
            workdir, events=sizes.batch_events, rounds=sizes.rounds, processes=plan.batch_clients
        ),
        "cloudevents": lambda: cloudevents_ingest.measure(
            workdir, events=sizes.batch_events, rounds=sizes.rounds, processes=plan.batch_clients
        ),
        "usage": lambda: usage_figures.measure(
            workdir,
            sizes=sizes.usage_events,
            rounds=sizes.rounds,
            customers=sizes.usage_customers,
            queries=sizes.usage_queries,
            reuse=plan.usage_db,
            out_dir=out_dir,
            smoke=plan.mode == "smoke",
        ),
        "close": lambda: period_close.measure(
            workdir, customers=sizes.close_customers, rounds=sizes.rounds
        ),
        "webhooks": lambda: webhook_figures.measure(
            deliveries=sizes.webhooks,
            rounds=sizes.rounds,
            concurrency=plan.webhook_concurrency,
            out_dir=out_dir,
        ),
        "meters": lambda: meters_figures.measure(
            workdir,
            events=sizes.meter_events,
            customers=sizes.usage_customers // 10,
            queries=max(sizes.usage_queries // 40, 10),
            rounds=sizes.rounds,
        ),
        "entitlements": lambda: entitlements.measure(
            workdir,
            events=sizes.entitlement_events,
            customers=sizes.entitlement_customers,
            queries=sizes.usage_queries,
            batches=sizes.entitlement_batches,
            rounds=sizes.rounds,
            smoke=plan.mode == "smoke",
        ),
        "revisions": lambda: revision_settle.measure(
            workdir, events=sizes.revision_events, rounds=sizes.rounds
        ),
    }
    figures: list[Figure] = []
    problems: list[str] = []
    details: dict[str, object] = {}
    for part in PARTS:
        if part not in plan.parts:
            continue
        print(f"\n=== {part} ===", flush=True)
        started = time.perf_counter()
        try:
            result = runners[part]()
        except Exception as error:
            traceback.print_exc()
            problems.append(f"{part}: {type(error).__name__}: {error}")
            continue
        finally:
            print(f"=== {part}: {time.perf_counter() - started:.1f} s ===", flush=True)
        figures.extend(result.figures)
        problems.extend(result.problems)
        details[part] = {"seconds": round(time.perf_counter() - started, 1), **result.details}
    return figures, problems, details


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_plan(argv)
    info = start_info()
    workdir = Path(tempfile.mkdtemp(prefix="meterd-bench-", dir=plan.workdir))
    try:
        figures, problems, details = run_parts(plan, workdir)
        filesystem = filesystem_of(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if plan.mode == "smoke":
        for figure in figures:
            figure.met = None  # tiny sizes: a smoke run checks that the benchmarks work
    info["loadavg_1_5_15_at_end"] = load_average()
    print()
    print_table(figures, info, plan.mode)
    parameters = {
        **asdict(plan.sizes),
        "parts": list(plan.parts),
        "batch_clients": plan.batch_clients,
        "webhook_concurrency": plan.webhook_concurrency,
        "usage_db": None if plan.usage_db is None else str(plan.usage_db),
        "workdir_filesystem": filesystem,
    }
    write_summary(
        plan.out,
        mode=plan.mode,
        info=info,
        parameters=parameters,
        figures=figures,
        problems=problems,
        details=details,
    )
    print(f"figures: {plan.out}")
    if filesystem in ("tmpfs", "ramfs"):
        print(f"warning: the databases were on {filesystem}: fsync cost nothing; use --workdir")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
