"""CloudEvents batch ingest (POST /api/v1/events) next to /usagebatch, same events, same run.

The events of the batch benchmark, once as /usagebatch bodies and once as
`application/cloudevents-batch+json` bodies of 1,000 CloudEvents each (`data` holds the
value and the metadata). Per round, alternating, each on a fresh database: a fresh
`meterd serve` loaded by P client processes with one of the two. Events/s is the
events in the database after the load over the time from the first send to the last
answer. Target: the CloudEvents route within 15% of /usagebatch (ratio ≥ 0.85).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from bench import clients
from bench.batch_ingest import BATCH, BUDGET_S, Data, make_data
from bench.figures import Figure, PartResult
from bench.server import new_api_key, remove_db, running_meterd, stored_events
from meterd.timeutil import format_ms, now_ms

TARGET_RATIO = 0.85
ROUTES = {
    "usagebatch": ("/usagebatch", "application/json", 201),
    "cloudevents": ("/api/v1/events", "application/cloudevents-batch+json", 204),
}


def cloudevent_bodies(data: Data) -> list[bytes]:
    """The same events as CloudEvents batches: subject = customer, data = value + metadata."""
    encoder = msgspec.json.Encoder()
    bodies = []
    for rows in data.row_batches:
        items: list[dict[str, Any]] = []
        for _, event_id, event_type, customer, value, metadata, ts, _ in rows:
            fields = {"value": value}
            if metadata is not None:
                fields.update(msgspec.json.decode(metadata))
            items.append(
                {
                    "specversion": "1.0",
                    "id": event_id,
                    "source": "bench",
                    "type": event_type,
                    "subject": customer,
                    "time": format_ms(ts),
                    "data": fields,
                }
            )
        bodies.append(encoder.encode(items))
    return bodies


def route_run(
    workdir: Path, db: Path, route: str, bodies: list[bytes], processes: int
) -> tuple[float, list[str]]:
    """Events/s through one route on a fresh server and database, and what went wrong."""
    path, content_type, expected = ROUTES[route]
    api_key = new_api_key()
    headers = {"Authorization": f"Bearer {api_key}", "content-type": content_type}
    shares: list[list[bytes | None]] = [list(bodies[i::processes]) for i in range(processes)]
    with running_meterd(workdir, db, api_key) as server:
        load = clients.run_clients(server.url, path, headers, shares, BUDGET_S)
    stored = stored_events(db)
    problems = [f"{route}: {error}" for error in load.errors[:5]]
    if load.statuses != {expected: len(bodies)}:
        problems.append(f"{route}: answers {load.statuses}, {len(bodies)} x {expected} expected")
    return stored / (load.seconds or 1e-9), problems


def measure(workdir: Path, *, events: int, rounds: int, processes: int) -> PartResult:
    data = make_data(events, now_ms())
    bodies = {"usagebatch": data.bodies, "cloudevents": cloudevent_bodies(data)}
    runs: dict[str, list[float]] = {route: [] for route in ROUTES}
    problems: list[str] = []
    for index in range(rounds):
        # Alternate which goes first, so neither always gets the cooler machine.
        order = list(ROUTES) if index % 2 == 0 else list(reversed(ROUTES))
        for route in order:
            db = workdir / f"cloudevents-{route}-{index}.db"
            per_s, found = route_run(workdir, db, route, bodies[route], processes)
            runs[route].append(per_s)
            problems.extend(found)
            if (stored := stored_events(db)) != data.events:
                problems.append(f"{route} round {index}: {stored:,} events, {data.events:,} sent")
            remove_db(db)
    figure = Figure(
        key="cloudevents_batch_ingest",
        name=f"CloudEvents batch ingest, {BATCH:,}-event batches",
        unit="events/s",
        runs=runs["cloudevents"],
        limit="/usagebatch",
        limit_runs=runs["usagebatch"],
        target=f"≥ {TARGET_RATIO:.2f} × /usagebatch",
    )
    figure.met = figure.ratio is not None and figure.ratio >= TARGET_RATIO
    figure.notes.append(f"{data.events:,} events per run from {processes} client processes")
    return PartResult([figure], problems, {"events": data.events, "runs": runs})
