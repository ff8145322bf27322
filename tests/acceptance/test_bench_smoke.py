"""`python -m bench --smoke`: every benchmark still runs end to end, at a tiny size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "single_event_ingest",
    "noop_ping",
    "batch_ingest",
    "batch_peak_rss",
    "cloudevents_batch_ingest",
    "usage_p50_20000",
    "usage_p99_20000",
    "period_close",
    "webhook_deliveries",
    "meters_usage_latency_ms",
    "meters_usage_active_users",
    "meters_usage_seats",
    "meters_usage_llm_tokens",
    "meters_query_api_calls_30_days",
    "meters_query_llm_tokens_30_days",
    "entitlement_p99_5000",
    "batch_ingest_no_limits",
    "batch_ingest_others_watched",
    "batch_ingest_all_watched",
    "revision_settle",
}
# Figures measured next to a limit, whose ratio the summary must give.
WITH_LIMIT = {
    "single_event_ingest",
    "batch_ingest",
    "cloudevents_batch_ingest",
    "usage_p50_20000",
    "usage_p99_20000",
    "webhook_deliveries",
    "meters_usage_latency_ms",
    "meters_usage_active_users",
    "meters_usage_seats",
    "meters_usage_llm_tokens",
    "meters_query_api_calls_30_days",
    "meters_query_llm_tokens_30_days",
    "entitlement_p99_5000",
    "batch_ingest_no_limits",
    "batch_ingest_others_watched",
    "batch_ingest_all_watched",
    "revision_settle",
}


def test_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    summary = json.loads(out.read_text())
    assert summary["mode"] == "smoke"
    assert summary["problems"] == []
    assert summary["machine"]["cores"] >= 1
    figures = {figure["key"]: figure for figure in summary["figures"]}
    assert set(figures) == FIGURES
    for key, figure in figures.items():
        assert figure["value"] > 0, key
        assert figure["runs"] and all(run > 0 for run in figure["runs"]), key
        if key in WITH_LIMIT:
            assert figure["limit_value"] > 0 and figure["ratio"] > 0, key
    assert "meterd benchmarks (smoke)" in finished.stdout


def test_webhook_figures_write_into_the_default_results_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m bench --only webhooks` with the default --out: the details file is the
    one webhook_delivery writes, and must not be copied onto itself (SameFileError)."""
    from bench import webhook_delivery, webhook_figures

    monkeypatch.setattr(webhook_delivery, "RESULTS", tmp_path / "webhook_delivery.json")
    result = webhook_figures.measure(deliveries=50, rounds=1, concurrency=4, out_dir=tmp_path)
    assert result.problems == []
    [figure] = result.figures
    assert figure.limit == "bare aiohttp POSTs"
    assert figure.value > 0 and figure.limit_value is not None and figure.limit_value > 0
    details = json.loads((tmp_path / "webhook_delivery.json").read_text())
    assert details["rows"][0]["worker_runs"][0]["delivered"] == 50
