"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Cores, CPU, Python, SQLite, platform and the load average now (the machine is shared)."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg_1_5_15": load_average(),
    }


def code_version(paths: Sequence[str] = ("src",)) -> dict[str, Any]:
    """Which meterd was measured: git HEAD and the uncommitted files under `paths`.

    Read-only. A meterd imported from outside this checkout gets no git state: the
    checkout's says nothing about it.
    """
    import meterd

    root = Path(__file__).resolve().parent.parent
    source = Path(meterd.__file__).resolve().parent
    info: dict[str, Any] = {"meterd_source": str(source)}
    if not source.is_relative_to(root):
        return info
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", *paths],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return info
    info["git_commit"] = head.stdout.strip() or None
    info["uncommitted"] = [line[3:] for line in changed.stdout.splitlines()]
    return info
