"""Server-drawn bar charts: geometry scaled to the largest value, nothing drawn for zero."""

from __future__ import annotations

from meterd.html.charts import HEIGHT, WIDTH, bar_chart


def test_bars_scale_to_the_largest_value_and_fill_the_width() -> None:
    chart = bar_chart("api.calls", [("202501", 5), ("202502", 10), ("202503", 0), ("x", -3)])
    assert chart.maximum == 10
    heights = [bar.height for bar in chart.bars]
    assert heights == [HEIGHT / 2, HEIGHT, 0, 0]
    assert all(bar.y + bar.height == HEIGHT for bar in chart.bars)
    assert chart.bars[-1].x + chart.bars[-1].width <= WIDTH
    assert [bar.label for bar in chart.bars] == ["202501", "202502", "202503", "x"]


def test_an_empty_or_all_zero_series_draws_no_bar() -> None:
    assert bar_chart("t", []).bars == []
    assert all(bar.height == 0 for bar in bar_chart("t", [("a", 0), ("b", 0)]).bars)
