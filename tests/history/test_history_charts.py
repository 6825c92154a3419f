"""The history charts render (vl-convert, headless) from History frames, and say so when empty."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from sbqueue import charts
from sbqueue.history import History, Recorder
from sbqueue.workbench.history_plant import plant_workload


@pytest.fixture
def history(r: redis.Redis, prefix: str, tmp_path: Path) -> tuple[History, object]:
    start = (int(time.time() * 1000) // 3_600_000 - 3) * 3_600_000
    plant = plant_workload(r, prefix, "c", start_ms=start, minutes=40, jobs_per_minute=10)
    rec = Recorder(r, prefix, tmp_path / "h", flush_interval=0)
    while rec.run_once():
        pass
    rec.flush()
    return History(tmp_path / "h"), plant


def test_history_charts_render(history: tuple[History, object], tmp_path: Path) -> None:
    h, p = history
    pct = h.percentiles("c", freq="5min")
    chart = charts.percentiles_over_time(pct)
    spec = chart.to_dict()
    assert spec["title"] == "Latency percentiles over time" and "facet" in spec
    assert charts.save(chart, tmp_path / "p.svg").read_text().startswith("<svg")
    heat = charts.wait_heatmap(h.jobs("c"))
    assert heat.to_dict()["mark"]["type"] == "rect"
    assert sum(row["attempts"] for row in heat.data.to_dict("records")) == p.jobs  # type: ignore[attr-defined]
    charts.save(heat, tmp_path / "w.png")
    cmp = h.compare("c", (p.start_ms, p.slow_from_ms), (p.slow_from_ms, p.end_ms))  # type: ignore[attr-defined]
    comp = charts.comparison(cmp)
    assert len(comp.to_dict()["hconcat"]) == 2
    charts.save(comp, tmp_path / "c.svg")


def test_history_charts_on_empty_and_wrong_frames() -> None:
    empty = charts.percentiles_over_time(pd.DataFrame(columns=["time", "name", "count", "p50"]))
    assert empty.to_dict()["mark"]["type"] == "text"
    assert charts.wait_heatmap(pd.DataFrame(columns=["started", "wait_s"])).to_dict()["mark"]["type"] == "text"
    with pytest.raises(ValueError, match="missing column"):
        charts.comparison(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="no percentile columns"):
        charts.percentiles_over_time(pd.DataFrame({"time": []}))
