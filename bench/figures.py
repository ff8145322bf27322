"""Figures of one `python -m bench` run: the median of several runs, next to its limit."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import machine
from meterd.timeutil import format_ms, now_ms

RESULTS_DIR = Path(__file__).parent / "results"
SUMMARY = RESULTS_DIR / "summary.json"


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("the median of no runs")
    return float(statistics.median(values))


@dataclass
class Figure:
    """One measured quantity: its value is the median of `runs`.

    `limit` names what bounds it on the same machine in the same run (a no-op route, a
    raw insert, a raw scan, bare HTTP), measured alternately with it. `ratio` always
    reads "higher is better": value / limit for speeds, limit / value when lower is
    better (latencies), so 0.5 means half as fast as the limit.
    """

    key: str
    name: str
    unit: str
    runs: list[float]
    lower_is_better: bool = False
    limit: str | None = None
    limit_runs: list[float] = field(default_factory=list)
    limit_unit: str | None = None  # when not `unit`
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def value(self) -> float:
        return median(self.runs)

    @property
    def limit_value(self) -> float | None:
        return median(self.limit_runs) if self.limit_runs else None

    @property
    def ratio(self) -> float | None:
        limit = self.limit_value
        if limit is None or limit <= 0 or self.value <= 0:
            return None
        return limit / self.value if self.lower_is_better else self.value / limit

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            runs=[round(run, 4) for run in self.runs],
            limit_runs=[round(run, 4) for run in self.limit_runs],
            limit_unit=self.limit_unit or (self.unit if self.limit else None),
            value=round(self.value, 4),
            statistic=f"median of {len(self.runs)} run{'s' if len(self.runs) != 1 else ''}",
            limit_value=None if self.limit_value is None else round(self.limit_value, 4),
            ratio=None if self.ratio is None else round(self.ratio, 4),
        )
        return data


@dataclass
class PartResult:
    """What one benchmark part measured, what went wrong, and its raw numbers."""

    figures: list[Figure]
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def rounded(value: float) -> str:
    """Three significant digits at most for small numbers, thousands separators for big ones."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:,.{digits}f}"


def verdict(met: bool | None) -> str:
    if met is None:
        return "n/a"
    return "[green]met[/green]" if met else "[red]NOT met[/red]"


def print_table(figures: Sequence[Figure], info: dict[str, Any], mode: str) -> None:
    table = Table(title=f"meterd benchmarks ({mode})", title_justify="left")
    for column in ("figure", "median", "limit", "ratio", "target", "met"):
        numeric = column in ("median", "ratio")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=not numeric)
    for figure in figures:
        limit = figure.limit_value
        limit_unit = figure.limit_unit or figure.unit
        table.add_row(
            figure.name,
            f"{rounded(figure.value)} {figure.unit}",
            "" if limit is None else f"{rounded(limit)} {limit_unit} ({figure.limit})",
            "" if figure.ratio is None else f"{figure.ratio:.2f}",
            figure.target,
            verdict(figure.met),
        )
    console = Console(width=max(150, Console().width))
    console.print(table)
    console.print(
        "ratio: the figure over its limit, measured alternately on the same machine"
        " (limit / figure for latencies); higher is better."
    )
    console.print(machine_line(info))
    for figure in figures:
        for note in figure.notes:
            console.print(f"note ({figure.key}): {note}", highlight=False)


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"machine: {info['cores']} cores, {info['cpu_model']}, Python {info['python']},"
        f" SQLite {info['sqlite']}; load average (1/5/15 min) {info['loadavg_1_5_15']} at start,"
        f" {info.get('loadavg_1_5_15_at_end')} at end (the machine may be shared)"
    )


def start_info() -> dict[str, Any]:
    return {"ran_at": format_ms(now_ms()), **machine.machine_info()}


def write_summary(
    path: Path,
    *,
    mode: str,
    info: dict[str, Any],
    parameters: dict[str, Any],
    figures: Sequence[Figure],
    problems: Sequence[str],
    details: dict[str, Any],
) -> None:
    """The JSON file of a run: machine (with its core count), code, every figure and run."""
    info = dict(info)
    document = {
        "benchmark": "meterd",
        "mode": mode,
        "ran_at": info.pop("ran_at"),
        "machine": info,
        "code": machine.code_version(),
        "parameters": parameters,
        "figures": [figure.to_json() for figure in figures],
        "problems": list(problems),
        "details": details,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
