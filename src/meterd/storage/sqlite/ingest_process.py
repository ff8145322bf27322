"""The ingest transaction in a process of its own, out of the HTTP process's GIL.

With one process, HTTP parsing and the writer share one GIL: the writer waits
1–1.6 ms per group commit for it, and single-event ingest stays near 0.45 of the
server's `/ping`. Here the writer thread still gathers requests and decides the
order of every write, but hands each group of events to this process, which runs
`insert_events` in its own transaction and answers after the commit. The writer
thread waits for that answer before it runs anything else, so the file still has
one writer at a time and no lock is ever waited for.

Messages are msgpack over a pipe: the events in, each job's outcome (or why the
transaction failed) out. If the process dies, the jobs in flight fail as
StorageUnavailable (their events may or may not be stored; a retry is answered
as a duplicate) and the next group starts a new process.
"""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from meterd.errors import IdConflict, StorageUnavailable
from meterd.idempotency import Outcome
from meterd.ingest import NewEvent
from meterd.storage.sqlite.connect import connect
from meterd.storage.sqlite.event_insert import insert_events
from meterd.storage.sqlite.transactions import in_transaction, storage_error

# Seconds to wait for the process to open the database, and to finish at stop.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_STOP = b""


class _Conflict(msgspec.Struct):
    conflicts: list[tuple[int, str, list[str]]]


class _Reply(msgspec.Struct, omit_defaults=True):
    """Each job's stored/duplicate flags or conflict; or, instead, why nothing was stored."""

    outcomes: list[list[bool] | _Conflict] | None = None
    unavailable: str | None = None
    failure: str | None = None


_jobs_encoder = msgspec.msgpack.Encoder()
_jobs_decoder = msgspec.msgpack.Decoder(list[list[NewEvent]])
_reply_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(_Reply)


class IngestProcess:
    """The parent's handle: `run(jobs)` blocks (without the GIL) until the commit."""

    def __init__(self, path: str, *, synchronous: str, queries: Mapping[str, str]) -> None:
        self._args = (path, synchronous, dict(queries))
        self._process: Any = None
        self._channel: Connection | None = None

    def start(self) -> None:
        """Start the process and wait until it has opened the database."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=serve, args=(theirs, *self._args), name="meterd-ingest", daemon=True
        )
        process.start()
        theirs.close()
        self._process, self._channel = process, ours
        if not ours.poll(START_TIMEOUT_S):
            self.stop()
            raise StorageUnavailable("the ingest process did not start in time")
        try:
            reply = _reply_decoder.decode(ours.recv_bytes())
        except (EOFError, OSError) as error:
            self.stop()
            raise StorageUnavailable("the ingest process ended while starting") from error
        if reply.unavailable or reply.failure:
            self.stop()
            raise StorageUnavailable(reply.unavailable or reply.failure)

    def run(self, jobs: Sequence[Sequence[NewEvent]]) -> list[Outcome]:
        """Store the jobs' events in one transaction of the process; raise if nothing was."""
        if self._channel is None:
            self.start()
        assert self._channel is not None
        try:
            self._channel.send_bytes(_jobs_encoder.encode(jobs))
            reply = _reply_decoder.decode(self._channel.recv_bytes())
        except (EOFError, OSError) as error:
            self.stop()
            failure = StorageUnavailable(
                "the ingest process ended during a commit; retry (a stored event is"
                " answered as a duplicate)"
            )
            raise failure from error
        if reply.unavailable is not None:
            raise StorageUnavailable(reply.unavailable)
        if reply.failure is not None or reply.outcomes is None:
            raise RuntimeError(f"the ingest process failed: {reply.failure}")
        return [
            IdConflict(outcome.conflicts) if isinstance(outcome, _Conflict) else outcome
            for outcome in reply.outcomes
        ]

    def stop(self) -> None:
        """Let the process finish and exit; kill it if it does not."""
        channel, process = self._channel, self._process
        self._channel = self._process = None
        if channel is not None:
            try:
                channel.send_bytes(_STOP)
            except OSError:
                pass
            channel.close()
        if process is not None:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()


def serve(channel: Connection, path: str, synchronous: str, queries: dict[str, str]) -> None:
    """The process: one transaction per message, until told to stop or the parent is gone."""
    # Ctrl-C and SIGTERM reach the whole process group; the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        conn = connect(path, synchronous=synchronous)
    except sqlite3.Error as error:
        failure = storage_error(error)
        channel.send_bytes(_reply_encoder.encode(_Reply(unavailable=str(failure))))
        return
    try:
        channel.send_bytes(_reply_encoder.encode(_Reply(outcomes=[])))
        while True:
            message = channel.recv_bytes()
            if message == _STOP:
                return
            channel.send_bytes(_reply_encoder.encode(_transaction(conn, queries, message)))
    except (EOFError, OSError):
        return  # the parent is gone (killed, say): what committed stays, nobody to answer
    finally:
        conn.close()


def _transaction(conn: sqlite3.Connection, queries: dict[str, str], message: bytes) -> _Reply:
    jobs = _jobs_decoder.decode(message)
    try:
        outcomes = in_transaction(conn, lambda c: insert_events(c, queries, jobs))
    except StorageUnavailable as error:
        return _Reply(unavailable=str(error))
    except Exception as error:
        return _Reply(failure=f"{type(error).__name__}: {error}")
    return _Reply(
        outcomes=[
            _Conflict(outcome.conflicts) if isinstance(outcome, IdConflict) else outcome
            for outcome in outcomes
        ]
    )
