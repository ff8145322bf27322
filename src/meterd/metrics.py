"""What `GET /metrics` reports, in one registry per app (nothing global at import).

Counters and histograms are fed by the parts that do the work (ingest, closing, the
delivery worker); figures that describe a state (writer queue, group commits, outbox
backlog) are read from the store when /metrics is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from meterd.storage.base import Store

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """meterd's Prometheus metrics, registered in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_stored = Counter(
            "meterd_events_stored", "Events stored, by ingest route.", ["route"], registry=r
        )
        self.events_duplicate = Counter(
            "meterd_events_duplicate",
            "Events acknowledged as duplicates of a stored id, by ingest route.",
            ["route"],
            registry=r,
        )
        self.ingest_refused = Counter(
            "meterd_ingest_refused",
            "Ingest requests refused, by route and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.ingest_latency = Histogram(
            "meterd_ingest_latency_seconds",
            "Time from an ingest request's arrival to its answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.close_rounds = Counter(
            "meterd_close_rounds",
            "Closing rounds (scheduler or trigger) that closed at least one record.",
            registry=r,
        )
        self.records_closed = Counter(
            "meterd_records_closed", "Aggregation records closed.", registry=r
        )
        self.deliveries = Counter(
            "meterd_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered, pending = will retry, failed,"
            " dry_run).",
            ["outcome"],
            registry=r,
        )
        self._delivery_counters: dict[str, Counter] = {}
        self.delivery_latency = Histogram(
            "meterd_webhook_attempt_seconds",
            "Webhook delivery attempt latency.",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "meterd_outbox_pending", "Webhook deliveries pending.", registry=r
        )
        self.outbox_oldest_age = Gauge(
            "meterd_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending webhook delivery (0 when none is pending).",
            registry=r,
        )

    def watch(self, store: Store) -> None:
        """Report the store's write path (group commits, queue depth) at every scrape."""
        self.registry.register(_WritePathCollector(store))

    def closed(self, records: int) -> None:
        self.close_rounds.inc()
        self.records_closed.inc(records)

    def delivery(self, outcome: str, latency_s: float) -> None:
        # One labelled child per outcome, looked up once: this runs for every attempt.
        counter = self._delivery_counters.get(outcome)
        if counter is None:
            counter = self._delivery_counters[outcome] = self.deliveries.labels(outcome)
        counter.inc()
        self.delivery_latency.observe(latency_s)

    async def render(self, store: Store, now_ms: int) -> bytes:
        """The Prometheus text, with the outbox backlog read now."""
        backlog = await store.outbox_backlog()
        self.outbox_pending.set(backlog.pending)
        oldest = backlog.oldest_created_ms
        self.outbox_oldest_age.set(0 if oldest is None else max(0, now_ms - oldest) / 1000)
        return generate_latest(self.registry)


class _WritePathCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        stats = self._store.write_stats()
        sizes = stats.commit_sizes
        yield HistogramMetricFamily(
            "meterd_group_commit_events",
            "Events per ingest transaction (group commit).",
            buckets=sizes.cumulative(),
            sum_value=sizes.events,
        )
        yield GaugeMetricFamily(
            "meterd_writer_queue_events",
            "Events accepted and waiting for their commit.",
            value=stats.queued_events,
        )
