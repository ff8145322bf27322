"""Bringing the store in line with the configured meters, in the background at start.

A changed `op`, `groupBy`, `property` or `percentile` needs no data migration: meters
that read raw events compute from them at every read and close, so the new config
applies to open periods at once. What follows the config is only the speed-up, built
while meterd serves: a covering index per such meter (`Store.prepare_meters`) and the
group rollups of grouped meters of a foldable op and of every time_weighted_avg,
percentile and unique_count meter (`Store.prepare_group_rollups`), which reads use
once they are complete.
"""

from __future__ import annotations

import logging
import time

from meterd.aggregation import meters_for
from meterd.config.model import SystemConfig
from meterd.storage.base import Store

log = logging.getLogger("meterd.meters")


async def prepare_in_background(store: Store, config: SystemConfig) -> None:
    """`prepare_meters`, for a task that runs beside serving."""
    await prepare_meters(store, config)


async def prepare_meters(store: Store, config: SystemConfig) -> list[str]:
    """Build the indexes the configured meters need; drop the ones none needs."""
    started = time.monotonic()
    try:
        built = await store.prepare_meters(sorted(meters_for(config)))
    except Exception:
        # Reads stay exact without them, only slower; the next start tries again.
        log.exception("preparing meter indexes failed")
        return []
    if built:
        log.info("built %d meter index(es) in %.1f s", len(built), time.monotonic() - started)
    started = time.monotonic()
    try:
        folded = await store.prepare_group_rollups(config.events)
    except Exception:
        log.exception("building group rollups failed")
        return built
    if folded:
        log.info("built group rollups from %d events in %.1f s", folded, time.monotonic() - started)
    return built
