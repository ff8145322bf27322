"""Where a single-event request's server time goes: py-spy on `meterd serve` under wrk.

    .venv/bin/python -m bench.single_profile [--seconds 10] [--rate 250] [--top 25]
                                             [--path /usage/api.calls] [--all-threads]

Starts `meterd serve` on a temporary SQLite file, loads it with the single-event
benchmark's wrk (64 connections, bench/wrk/single_event.lua) and samples the server
with `py-spy record --gil` meanwhile: only the thread holding the GIL is sampled, so
the shares are of the one resource HTTP parsing and the writer thread compete for.
Prints the request rate, then the top functions by own samples and by samples
anywhere on the stack (both as shares of all samples). `--path /ping` profiles the
no-op route for comparison. Needs wrk and py-spy (both on PATH or in the venv).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.server import new_api_key, running_meterd, server_pid
from bench.single_ingest import EVENT_PATH, run_wrk


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def summarise(raw: str, top: int) -> str:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples holding the GIL"]
    for title, counts in (("own", own), ("inclusive", anywhere)):
        lines.append(f"-- top {top} by {title} samples")
        lines.extend(
            f"{100 * count / total:6.1f}%  {name}" for name, count in counts.most_common(top)
        )
    return "\n".join(lines)


def _function(frame: str) -> str:
    # "name (path/file.py:123)" -> "name (path/file.py)": lines of one function together.
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--path", default=EVENT_PATH)
    parser.add_argument("--all-threads", action="store_true", help="not only the GIL holder")
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed")
    spy = py_spy()
    api_key = new_api_key()
    with tempfile.TemporaryDirectory(prefix="meterd-profile-") as tmp:
        workdir = Path(tmp)
        out = workdir / "stacks.txt"
        with running_meterd(workdir, workdir / "single.db", api_key) as server:
            run_id = f"p{secrets.token_hex(3)}"
            ingest = args.path != "/ping"
            # Warm up unprofiled, then sample for the whole timed run.
            run_wrk(
                wrk,
                server.url,
                args.path,
                2,
                run_id=run_id + "w" if ingest else None,
                api_key=api_key,
            )
            command = [spy, "record", "--nonblocking", "-f", "raw", "-o", str(out)]
            command += ["-r", str(args.rate), "-d", str(args.seconds + 1), "--function"]
            command += ["-p", str(server_pid(server))]
            if not args.all_threads:
                command.append("--gil")
            spying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                run = run_wrk(
                    wrk,
                    server.url,
                    args.path,
                    args.seconds,
                    run_id=run_id if ingest else None,
                    api_key=api_key,
                )
            finally:
                _, errors = spying.communicate(timeout=args.seconds + 60)
            if spying.returncode != 0:
                raise SystemExit(f"py-spy failed: {errors.decode().strip()}")
        print(f"{args.path}: {run.per_s:,.0f}/s ({run.failed} not 2xx), meterd sampled by py-spy")
        print(summarise(out.read_text(), args.top))


if __name__ == "__main__":
    main()
