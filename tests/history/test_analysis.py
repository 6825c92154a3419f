"""History analysis on a planted workload: the slowdown and the failure burst are found."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from sbqueue.errors import InvalidOptionError
from sbqueue.history import History, Recorder
from sbqueue.workbench.history_plant import Plant, plant_workload


@pytest.fixture
def planted(r: redis.Redis, prefix: str, tmp_path: Path) -> tuple[History, Plant]:
    start = (int(time.time() * 1000) // 3_600_000 - 6) * 3_600_000  # six hours ago, on the hour
    plant = plant_workload(r, prefix, "work", start_ms=start, minutes=120, jobs_per_minute=30)
    rec = Recorder(r, prefix, tmp_path, flush_interval=0, max_rows=5000)
    while rec.run_once():
        pass
    rec.flush()
    return History(tmp_path), plant


def test_jobs_window_and_attempt_rows(planted: tuple[History, Plant]) -> None:
    h, p = planted
    all_jobs = h.jobs("work")
    assert len(all_jobs) == p.jobs and all_jobs["outcome"].notna().all()
    assert (all_jobs["wait_s"] > 0).all() and (all_jobs["run_s"] > 0).all()
    lo, hi = p.start_ms + 30 * 60_000, p.start_ms + 40 * 60_000
    window = h.jobs("work", since=lo, until=hi, name="email")
    assert len(window) > 0 and set(window["name"]) == {"email"}
    assert window["started"].min() >= pd.Timestamp(lo, unit="ms", tz="UTC")
    assert window["started"].max() < pd.Timestamp(hi, unit="ms", tz="UTC")
    # the per-attempt rows agree with the raw events
    ev = h.events("work", event="active")
    assert len(ev) == p.jobs


def test_percentiles_show_the_slowdown(planted: tuple[History, Plant]) -> None:
    h, p = planted
    pct = h.percentiles("work", by=["name"], freq="10min")
    assert list(pct.columns) == ["time", "name", "count", "p50", "p95", "p99"]
    resize = pct[pct["name"] == "resize"].set_index("time")
    slow_from = pd.Timestamp(p.slow_from_ms, unit="ms", tz="UTC")
    before, after = resize[resize.index < slow_from]["p50"], resize[resize.index >= slow_from]["p50"]
    assert after.min() > 2 * before.max()
    other = pct[pct["name"] == "report"]["p50"]
    assert other.max() < 2 * other.min()
    with pytest.raises(InvalidOptionError):
        h.percentiles("work", q=(1.5,))


def test_failure_rate_shows_the_burst(planted: tuple[History, Plant]) -> None:
    h, p = planted
    rate = h.failure_rate("work", freq="5min", by=["name"])
    email = rate.xs("email", level="name")
    burst = email[(email.index >= pd.Timestamp(p.burst_from_ms, unit="ms", tz="UTC"))
                  & (email.index < pd.Timestamp(p.burst_to_ms, unit="ms", tz="UTC"))]
    assert burst.min() > 0.3 and email.drop(burst.index).max() < 0.2
    t = h.throughput("work", freq="1h")
    assert t["completed"].sum() + t["failed"].sum() == p.jobs


def test_compare_names_the_slower_and_failing(planted: tuple[History, Plant]) -> None:
    h, p = planted
    a = (p.start_ms, p.slow_from_ms)
    b = (p.slow_from_ms, p.end_ms)
    cmp = h.compare("work", a, b)
    assert cmp.loc[0, "name"] == "resize" and cmp.loc[0, "effect"] > 0.9 and cmp.loc[0, "slowdown"] > 2.5
    others = cmp[cmp["name"] != "resize"]
    assert others["effect"].abs().max() < 0.2
    email = cmp.set_index("name").loc["email"]
    assert email["failure_rate_diff"] > 0.03 and email["failure_z"] > 3



def test_queue_report_runbook_has_a_history_section(planted: tuple[History, Plant], redis_url: str, prefix: str,
                                                    tmp_path: Path) -> None:
    import json

    import papermill

    h, _ = planted
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "report.ipynb"
    notebook = root / "sbqueue" / "workbench" / "runbooks" / "queue-report.ipynb"
    papermill.execute_notebook(str(notebook), str(out), progress_bar=False,
                               kernel_name="python3", parameters={"redis_url": redis_url, "prefix": prefix,
                                                                  "queue": "work", "history": h.path,
                                                                  "history_hours": 12})
    text = json.dumps(json.loads(out.read_text())["cells"][-1]["outputs"])
    assert "work: run time percentiles" in text and "0 gap(s) in the recorded history" in text
    assert "email" in text and "resize" in text  # the failure-rate table has a column per name
