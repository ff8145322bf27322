"""Console sessions, portal tokens, the customer list and the overview's counts (SQLite).

Plain functions on a connection: writes run on the writer, reads on a reader.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from meterd.periods import BUCKET_MS
from meterd.storage.base import ConsoleSessionRecord, DeliveryStatus, PortalTokenRecord
from meterd.storage.sqlfiles import read_queries

Queries = Mapping[str, str]


def console_queries(package: str) -> dict[str, str]:
    return read_queries(package, "console.sql")


def add_session(
    conn: sqlite3.Connection, q: Queries, session: ConsoleSessionRecord, now_ms: int
) -> None:
    conn.execute(q["delete_expired_sessions"], (now_ms,))
    conn.execute(
        q["insert_session"],
        (session.session_hash, session.key_hash, session.created_ms, session.expires_ms),
    )


def get_session(
    conn: sqlite3.Connection, q: Queries, session_hash: str
) -> ConsoleSessionRecord | None:
    row = conn.execute(q["get_session"], (session_hash,)).fetchone()
    return None if row is None else ConsoleSessionRecord(*row)


def add_portal_token(conn: sqlite3.Connection, q: Queries, token: PortalTokenRecord) -> None:
    conn.execute(q["insert_portal_token"], portal_token_values(token))


def get_portal_token(
    conn: sqlite3.Connection, q: Queries, token_hash: str
) -> PortalTokenRecord | None:
    row = conn.execute(q["get_portal_token"], (token_hash,)).fetchone()
    return None if row is None else portal_token_from_row(row)


def revoke_portal_tokens(
    conn: sqlite3.Connection,
    q: Queries,
    *,
    now_ms: int,
    token_hash: str | None,
    customer_id: str | None,
) -> int:
    revoked = 0
    if token_hash is not None:
        revoked += conn.execute(q["revoke_portal_token"], (now_ms, token_hash)).rowcount
    if customer_id is not None:
        revoked += conn.execute(q["revoke_customer_portal_tokens"], (now_ms, customer_id)).rowcount
    return revoked


def customer_ids(
    conn: sqlite3.Connection, q: Queries, *, search: str | None, after: str, limit: int
) -> list[str]:
    params = {"after": after, "search": search, "limit": limit}
    return [row[0] for row in conn.execute(q["customer_ids"], params)]


def event_counts(
    conn: sqlite3.Connection, q: Queries, *, from_ms: int, to_ms: int
) -> list[tuple[int, int]]:
    rows = conn.execute(q["event_counts_by_bucket"], (from_ms // BUCKET_MS, -(-to_ms // BUCKET_MS)))
    return [(int(bucket) * BUCKET_MS, int(count)) for bucket, count in rows]


def count_deliveries(conn: sqlite3.Connection, q: Queries, status: DeliveryStatus) -> int:
    return int(conn.execute(q["delivery_count"], (status,)).fetchone()[0])


def portal_token_values(token: PortalTokenRecord) -> tuple[Any, ...]:
    meters = None if token.meters is None else json.dumps(list(token.meters))
    return (
        token.token_hash,
        token.customer_id,
        meters,
        token.created_ms,
        token.expires_ms,
        token.revoked_ms,
    )


def portal_token_from_row(row: tuple[Any, ...]) -> PortalTokenRecord:
    token_hash, customer_id, meters, created, expires, revoked = row
    return PortalTokenRecord(
        token_hash=token_hash,
        customer_id=customer_id,
        meters=None if meters is None else tuple(json.loads(meters)),
        created_ms=int(created),
        expires_ms=int(expires),
        revoked_ms=None if revoked is None else int(revoked),
    )
