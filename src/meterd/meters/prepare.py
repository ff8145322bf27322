"""Bringing the store in line with the configured meters, in the background at start.

A changed `op`, `groupBy`, `property` or `percentile` needs no data migration: meters
that read raw events compute from them at every read and close, so the new config
applies to open periods at once. What follows the config is only the speed-up, built
while meterd serves: a covering index per such meter (`Store.prepare_meters`) and the
group rollups of grouped meters of a foldable op and of time_weighted_avg meters
(`Store.prepare_group_rollups`), which reads use once they are complete.
"""

from __future__ import annotations

import logging
import time

from meterd.aggregation import meters_for
from meterd.config.model import SystemConfig
from meterd.meters.values import FOLDED_IN_DATABASE
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
        folded = await store.prepare_group_rollups(
            grouped_meters(config), levels=level_meters(config)
        )
    except Exception:
        log.exception("building group rollups failed")
        return built
    if folded:
        log.info("built group rollups from %d events in %.1f s", folded, time.monotonic() - started)
    return built


def grouped_meters(config: SystemConfig) -> dict[str, tuple[str, ...]]:
    """The meters that keep group rollups (event type -> groupBy): grouped ones of a
    foldable op, and time_weighted_avg ones (grouped or not)."""
    return {
        name: meter.group_by
        for name, meter in config.events.items()
        if (meter.group_by and meter.op in FOLDED_IN_DATABASE) or name in level_meters(config)
    }


def level_meters(config: SystemConfig) -> set[str]:
    """The meters whose group rollups keep the level integral (time_weighted_avg)."""
    return {name for name, meter in config.events.items() if meter.op == "time_weighted_avg"}
