"""Bar charts drawn on the server as SVG geometry: no script, readable without colour."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

WIDTH = 600
HEIGHT = 160
GAP = 2


class Bar(msgspec.Struct, frozen=True):
    x: float
    y: float
    width: float
    height: float
    label: str
    value: float


class BarChart(msgspec.Struct, frozen=True):
    """One series of labelled values, laid out in a WIDTH x HEIGHT view box."""

    title: str
    bars: list[Bar]
    maximum: float
    width: int = WIDTH
    height: int = HEIGHT


def bar_chart(title: str, points: Sequence[tuple[str, float]]) -> BarChart:
    """Bars scaled to the largest value; zero and negative values draw no bar."""
    maximum = max((value for _, value in points), default=0.0)
    slot = WIDTH / max(len(points), 1)
    bars = []
    for index, (label, value) in enumerate(points):
        height = 0.0 if maximum <= 0 or value <= 0 else HEIGHT * value / maximum
        bars.append(
            Bar(
                x=round(index * slot + GAP / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(max(slot - GAP, 1), 2),
                height=round(height, 2),
                label=label,
                value=value,
            )
        )
    return BarChart(title, bars, maximum)
