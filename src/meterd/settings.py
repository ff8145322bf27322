"""Server settings: built once by the CLI from flags and METERD_* variables, then passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///./meterd.db"
DEFAULT_CONFIG_PATH = "./systemconfig.json"


@dataclass(frozen=True)
class ServerSettings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    # Plain keys from METERD_API_KEYS, accepted besides the hashed keys in the database.
    api_keys: tuple[str, ...] = ()
    # How often a running server re-reads the stored key hashes: a revoked key stops
    # working within this many seconds.
    key_refresh_s: float = 5.0
    # Bodies above this are refused with 413 before they are parsed.
    max_body_bytes: int = 5_000_000
    # Events accepted but not yet committed; past it ingest answers 503 + Retry-After.
    max_pending_events: int = 100_000
    # SQLite: ingest transactions run in a process of their own, outside the HTTP
    # process's GIL (storage/sqlite/ingest_process.py).
    ingest_process: bool = True
    # How often the scheduler looks for completed periods to close; None: never
    # (periods then close only through POST /aggregations/trigger).
    close_interval_s: float | None = 60.0
    # How often the delivery worker looks for due webhooks when nothing woke it;
    # None: no worker in this process.
    delivery_poll_s: float | None = 1.0
    # Sign and log webhooks instead of sending them (DRY_RUN=1).
    dry_run: bool = False
    # Webhook deliveries in flight at once.
    delivery_concurrency: int = 16
    # The Stripe secret key from METERD_STRIPE_API_KEY; wins over invoicing.stripe.apiKey.
    stripe_api_key: str | None = field(default=None, repr=False)
    # A request must arrive whole (headers and body) within this many seconds.
    request_timeout_s: float = 30.0
    # Open connections beyond this are answered 503 and closed at once.
    max_connections: int = 1000
    # GET /metrics without an API key.
    metrics_public: bool = False
