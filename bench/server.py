"""`meterd serve` on a temporary SQLite file for the benchmarks, and what /proc says of it."""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from tests.acceptance.server import MeterdProcess

SERVER_START_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def new_api_key() -> str:
    return "mk_bench_" + secrets.token_urlsafe(16)


def sample_config_text() -> str:
    """meterd's packaged sample config: three event types, hourly to monthly periods."""
    return (resources.files("meterd.config") / "sample.json").read_text()


@contextmanager
def running_meterd(
    workdir: Path, db: Path, api_key: str, *args: str, config_text: str | None = None
) -> Iterator[MeterdProcess]:
    """`meterd serve --db sqlite:///DB` on 127.0.0.1, ready to answer; always stopped."""
    config = workdir / "systemconfig.json"
    config.write_text(config_text or sample_config_text())
    server = MeterdProcess(
        workdir,
        *("--db", f"sqlite:///{db.resolve()}", "--config", str(config), *args),
        # Empty: no METERD_* setting of the calling shell leaks into the measured server.
        env={"METERD_API_KEYS": api_key, "METERD_DATABASE_URL": "", "METERD_CONFIG": ""},
    )
    try:
        server.start(timeout=SERVER_START_TIMEOUT_S)  # its error carries the server's output
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


def server_pid(server: MeterdProcess) -> int:
    if server.process is None:
        raise RuntimeError("meterd serve is not running")
    return server.process.pid


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (meterd serve's ingest process), from /proc."""
    tree, index = [pid], 0
    while index < len(tree):
        try:
            tasks = list(Path(f"/proc/{tree[index]}/task").iterdir())
        except OSError:
            tasks = []
        for task in tasks:
            try:
                tree.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass
        index += 1
    return tree


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size so far (VmHWM) of the process and its descendants, summed,
    in MiB; None off Linux. The sum is an upper bound: each peak may come at another time."""
    peaks = [_peak_rss_kb(member) for member in process_tree(pid)]
    known = [peak for peak in peaks if peak is not None]
    return sum(known) / 1024 if known else None


def _peak_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by the process (all its threads) and its
    descendants (meterd serve's ingest process)."""
    used = [_cpu_s(member) for member in process_tree(pid)]
    known = [seconds for seconds in used if seconds is not None]
    return sum(known) if known else None


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def stored_events(db: Path, id_prefix: str | None = None) -> int:
    """Events in a database no server holds open any more; only ids with `id_prefix` if given."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if id_prefix is None:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
        else:
            # A range on the unique id index: every id that starts with the prefix.
            row = conn.execute(
                "SELECT count(*) FROM events WHERE id >= ? AND id < ?",
                (id_prefix, id_prefix + "\U0010ffff"),
            ).fetchone()
    finally:
        conn.close()
    return int(row[0])


def remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def filesystem_of(path: Path) -> str | None:
    """The type of the file system `path` is on (tmpfs makes fsync free), from /proc/mounts."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind
