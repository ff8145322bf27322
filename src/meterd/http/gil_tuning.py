"""How soon a waiting thread gets the GIL back, set for a server with SQLite's ingest process.

The writer thread hands each group of events to the ingest process and blocks, without
the GIL, until the commit; it then needs the GIL only briefly, to read the answer and
wake the waiting requests. Under load the event loop always holds the GIL, and CPython
makes a waiting thread wait up to the switch interval (5 ms) before asking for it, so
every group commit waited that long for its last step. At 0.5 ms, single-event ingest
went from 0.47–0.50 to 0.57–0.62 of the same server's `/ping` (64 connections, same
run; 0.1, 0.2 and 1 ms gave 0.50–0.60). With the writer thread running the transaction
itself, the shorter interval changed nothing (0.42–0.43 either way): there the thread
needs the GIL at every statement, and the CPU, not the wait, is what it lacks.
Measured with `python -m bench --only single`.
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.000_5


def hand_over_sooner() -> None:
    """Call once, in a serving process whose writer thread waits on the ingest process."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
