"""Spec-level tests of sbqueue.workbench.charts (``chart.to_dict()``), aggregation of big inputs, and static export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sbqueue import charts

NOW = pd.Timestamp("2024-05-01 12:00:00", tz="UTC")
RNG = np.random.default_rng(7)


def spec(chart: Any) -> dict[str, Any]:
    return chart.to_dict()


def size(chart: Any) -> int:
    return len(json.dumps(chart.to_dict()))


def data_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    """All inline rows of a spec (altair puts them under ``datasets``)."""
    return [row for rows in d.get("datasets", {}).values() for row in rows]


def layers(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Every unit spec (mark + encoding) inside a spec, whatever its composition."""
    out = []
    stack = [d]
    while stack:
        node = stack.pop()
        if "mark" in node:
            out.append(node)
        stack += node.get("layer", []) + node.get("hconcat", []) + node.get("vconcat", [])
        stack += [node["spec"]] if "spec" in node else []
    return out


def tooltips(unit: dict[str, Any]) -> list[str]:
    return [t["field"] for t in unit["encoding"].get("tooltip", [])]


def title_text(d: dict[str, Any]) -> str:
    title = d.get("title")
    return title["text"] if isinstance(title, dict) else str(title)


def jobs_frame(n: int) -> pd.DataFrame:
    finished = NOW - pd.to_timedelta(RNG.integers(0, 2 * 86400, n), unit="s")
    return pd.DataFrame({
        "id": [str(i) for i in range(n)],
        "name": RNG.choice(["send", "resize", "bill"], n),
        "state": "failed",
        "wait_s": RNG.exponential(2.0, n),
        "run_s": RNG.exponential(0.5, n),
        "finished_on": finished,
        "failed_reason": [f"timeout after {RNG.integers(1000, 9000)} ms" if i % 3 else "ECONNRESET" for i in range(n)],
    })  # fmt: skip


# --- counts ---------------------------------------------------------------------------------------
def test_counts_from_queues_frame() -> None:
    df = pd.DataFrame({"queue": ["emails", "images"], "waiting": [5, 0], "active": [1, 2], "completed": [10, 0],
                       "failed": [3, 1], "waiting_children": [0, 4], "paused": [True, False],
                       "paused_legacy": [2, 0], "workers": [3, 0]})  # fmt: skip
    d = spec(charts.counts(df))
    assert d["mark"]["type"] == "bar" and title_text(d) == "Jobs per state"
    enc = d["encoding"]
    assert enc["y"]["field"] == "queue" and enc["x"]["field"] == "count" and enc["color"]["field"] == "state"
    assert "jobs" in enc["x"]["title"]
    assert tooltips(d) == ["queue", "state", "count"]
    rows = {(r["queue"], r["state"]): r["count"] for r in data_rows(d)}
    # zero counts dropped; the boolean paused flag and workers are not states; paused_legacy is
    assert rows == {("emails", "waiting"): 5, ("emails", "active"): 1, ("emails", "completed"): 10,
                    ("emails", "failed"): 3, ("emails", "paused"): 2, ("images", "active"): 2,
                    ("images", "failed"): 1, ("images", "waiting-children"): 4}  # fmt: skip
    assert enc["y"]["sort"] == ["emails", "images"]  # biggest queue first


def test_counts_long_frame_and_one_queue() -> None:
    long = pd.DataFrame({"queue": ["a", "a", "b"], "state": ["failed", "failed", "wait"], "count": [1, 2, 7]})
    rows = {(r["queue"], r["state"]): r["count"] for r in data_rows(spec(charts.counts(long)))}
    assert rows == {("a", "failed"): 3, ("b", "waiting"): 7}
    one = pd.DataFrame([{"waiting": 2, "failed": 1}])  # e.g. pd.DataFrame([q.get_job_counts()])
    assert {r["state"] for r in data_rows(spec(charts.counts(one)))} == {"waiting", "failed"}
    empty = spec(charts.counts(pd.DataFrame({"queue": ["a"], "waiting": [0]})))
    assert empty["mark"]["type"] == "text"  # a placeholder that still renders
    with pytest.raises(ValueError, match="no state columns"):
        charts.counts(pd.DataFrame({"queue": ["a"]}))


# --- throughput -------------------------------------------------------------------------------------
def test_throughput_per_minute_with_failure_rate() -> None:
    minutes = pd.date_range(NOW - pd.Timedelta("59min"), NOW, freq="1min")
    df = pd.DataFrame({"minute": minutes, "completed": 9, "failed": 1, "total": 10, "failure_rate": 0.1,
                       "partial": False})  # fmt: skip
    d = spec(charts.throughput(df))
    assert title_text(d) == "Throughput" and d["resolve"]["scale"]["y"] == "independent"
    jobs, rate = d["layer"]
    assert jobs["mark"]["type"] == "line" and jobs["transform"][0]["fold"] == ["completed", "failed"]
    assert jobs["encoding"]["y"]["title"] == "jobs / min"
    assert rate["encoding"]["y"]["field"] == "failure_rate" and rate["encoding"]["y"]["axis"]["format"] == "%"
    assert jobs["encoding"]["x"]["title"] == rate["encoding"]["x"]["title"] == "time (UTC)"
    assert {"completed", "failed", "failure_rate"} <= set(tooltips(jobs))
    rows = data_rows(d)
    assert len(rows) == 60 and rows[0]["completed"] == 9 and rows[0]["failure_rate"] == pytest.approx(0.1)


def test_throughput_of_one_minute_reads_as_bars_not_a_lone_dot() -> None:
    df = pd.DataFrame({"minute": [NOW.floor("min")], "completed": [44], "failed": [61], "total": [105],
                       "failure_rate": [0.58], "partial": [False]})  # fmt: skip
    d = spec(charts.throughput(df))
    bars, rate = d["layer"]
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["xOffset"]["field"] == "kind"
    assert bars["encoding"]["x"]["title"] == "time (UTC)" and rate["encoding"]["y"]["field"] == "failure_rate"
    assert data_rows(d)[0]["bucket"] == NOW.floor("min").strftime("%H:%M")  # 24-hour UTC label


def test_throughput_long_history_is_bucketed_and_stays_per_minute() -> None:
    minutes = pd.date_range(NOW - pd.Timedelta("7D"), NOW, freq="1min", inclusive="left")
    df = pd.DataFrame({"minute": minutes, "completed": 60, "failed": 0})
    chart = charts.throughput(df)
    rows = data_rows(spec(chart))
    assert len(rows) <= charts.MAX_BUCKETS
    assert {r["completed"] for r in rows[1:-1]} == {60.0}  # summed per bucket, divided back to per minute
    assert "1 h buckets" in spec(chart)["title"]["subtitle"]
    long = df.melt(id_vars="minute", var_name="kind", value_name="count")  # long input works too
    assert len(data_rows(spec(charts.throughput(long)))) == len(rows)


# --- latency ----------------------------------------------------------------------------------------
def test_latency_histograms_and_quantile_rules() -> None:
    df = pd.DataFrame({"name": ["a"] * 100 + ["b"] * 100, "wait_s": np.arange(200) / 10.0,
                       "run_s": [np.nan] * 10 + [1.0] * 190})  # fmt: skip
    d = spec(charts.latency(df, bins=20))
    assert d["facet"]["row"]["field"] == "metric" and d["resolve"]["scale"]["x"] == "independent"
    bars, rules = d["spec"]["layer"]
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["x2"]["field"] == "end"
    assert bars["encoding"]["color"]["field"] == "name" and bars["encoding"]["y"]["title"] == "jobs (count)"
    assert rules["mark"]["type"] == "rule" and rules["encoding"]["strokeDash"]["field"] == "quantile"
    rows = data_rows(d)
    hist = [r for r in rows if r["kind"] == "bin" and r["metric"] == "wait (s)"]
    assert sum(r["jobs"] for r in hist) == 200 and len({(r["start"], r["name"]) for r in hist}) == len(hist)
    q = {(r["metric"], r["quantile"]): r["seconds"] for r in rows if r["kind"] == "quantile"}
    assert q[("wait (s)", "p50")] == pytest.approx(np.percentile(np.arange(200) / 10.0, 50))
    assert q[("run (s)", "p99")] == 1.0
    assert sum(r["jobs"] for r in rows if r["kind"] == "bin" and r["metric"] == "run (s)") == 190  # NaN skipped
    with pytest.raises(ValueError, match="wait_s and/or run_s"):
        charts.latency(pd.DataFrame({"name": ["a"]}))


# --- failures ---------------------------------------------------------------------------------------
def test_failures_over_time_from_jobs() -> None:
    df = jobs_frame(3000)
    d = spec(charts.failures(df, top=5))
    assert d["mark"]["type"] == "bar"
    enc = d["encoding"]
    assert enc["x"]["field"] == "time" and enc["x"]["type"] == "temporal" and enc["color"]["field"] == "signature"
    assert enc["y"]["title"].startswith("failures (per ")
    rows = data_rows(d)
    assert sum(r["failures"] for r in rows) == 3000
    sigs = {r["signature"] for r in rows}
    assert "ECONNRESET" in sigs and "other" in sigs and len(sigs) == 6  # top 5 + other


def test_failures_spans_from_failure_groups() -> None:
    df = pd.DataFrame({
        "signature": ["timeout after <n> ms | x.py:3 in f", "ECONNRESET"], "count": [40, 2],
        "first_seen": [NOW - pd.Timedelta("2h"), NOW - pd.Timedelta("30min")], "last_seen": [NOW, NOW],
        "names": [["send", "bill"], ["send"]], "ids": [["1"], ["2"]],
    })  # fmt: skip
    d = spec(charts.failures(df))
    span, dot = d["layer"]
    assert span["mark"]["type"] == "rule" and span["encoding"]["x2"]["field"] == "last_seen"
    assert dot["encoding"]["size"]["field"] == "count"
    assert {"signature", "count", "first_seen", "last_seen", "names"} <= set(tooltips(dot))
    assert data_rows(d)[0]["signature"].startswith("timeout")
    assert data_rows(d)[0]["names"] == "send, bill"


# --- timeline ---------------------------------------------------------------------------------------
def test_timeline_of_one_job() -> None:
    ts = pd.date_range(NOW, periods=4, freq="250ms")
    df = pd.DataFrame({"ts": ts, "source": "events", "event": ["added", "active", "failed", "retried"],
                       "detail": ["", "", "boom", ""], "since_created_s": [0, 0.25, 0.5, 0.75]})  # fmt: skip
    d = spec(charts.timeline(df))
    _path, points = d["layer"]
    assert points["encoding"]["y"]["field"] == "event" and points["encoding"]["x"]["field"] == "time"
    assert {"time", "event", "detail", "source"} <= set(tooltips(points))
    assert [r["event"] for r in data_rows(d)] == ["added", "active", "failed", "retried"]
    assert points["encoding"]["color"]["scale"]["range"][2] == charts.EVENT_COLORS["failed"]


def test_timeline_of_many_events_is_a_rate() -> None:
    n = 20_000
    ts = NOW - pd.to_timedelta(RNG.integers(0, 3600, n), unit="s")
    df = pd.DataFrame({"event_id": [f"{i}-0" for i in range(n)], "ts": ts,
                       "event": RNG.choice(["added", "active", "completed"], n), "job_id": [str(i) for i in range(n)]})
    d = spec(charts.timeline(df))
    assert d["mark"]["type"] == "line" and d["encoding"]["y"]["field"] == "events"
    rows = data_rows(d)
    assert sum(r["events"] for r in rows) == n and len(rows) <= 3 * charts.MAX_BUCKETS


# --- memory -----------------------------------------------------------------------------------------
def test_memory_by_queue_and_top_keys() -> None:
    by_queue = pd.DataFrame({"queue": ["a", "a", "b"], "role": ["job", "events", "job"], "keys": [10, 1, 5],
                             "bytes": [3 * 2**20, 2**20, 2**19], "share": [0.6, 0.2, 0.1]})  # fmt: skip
    d = spec(charts.memory(by_queue))
    assert d["encoding"]["x"]["title"] == "memory (MiB)" and d["encoding"]["color"]["field"] == "role"
    assert {(r["queue"], r["role"]): r["size"] for r in data_rows(d)}[("a", "job")] == 3.0
    big = pd.DataFrame({"key": [f"bull:q:{i}" for i in range(100)], "type": "hash",
                        "length": pd.array(range(100), dtype="Int64"), "bytes": pd.array(range(100), dtype="Int64"),
                        "ttl_s": np.nan, "queue": "q", "role": "job"})  # fmt: skip
    big.loc[3, "bytes"] = pd.NA
    d = spec(charts.memory(big, top=10))
    rows = data_rows(d)
    assert len(rows) == 10 and rows[0]["key"] == "bull:q:99" and d["encoding"]["x"]["title"] == "memory (bytes)"
    assert {"key", "bytes", "role", "type", "length"} <= set(tooltips(d))


# --- tuning -----------------------------------------------------------------------------------------
def test_tuning_averages_repeated_runs() -> None:
    df = pd.DataFrame({"concurrency": [1, 1, 4, 4, 1, 4], "jobs_per_s": [10, 20, 40, 60, 5, 7],
                       "batch": ["1", "1", "1", "1", "10", "10"]})  # fmt: skip
    d = spec(charts.tuning(df, x="concurrency", y="jobs_per_s", color="batch", y_title="throughput (jobs/s)"))
    band, line = d["layer"]
    assert band["mark"]["type"] == "area" and line["mark"]["type"] == "line"
    assert line["encoding"]["y"]["title"] == "throughput (jobs/s)" and line["encoding"]["color"]["field"] == "batch"
    rows = {(r["concurrency"], r["batch"]): (r["mean"], r["min"], r["max"], r["runs"]) for r in data_rows(d)}
    assert rows[(1, "1")] == (15.0, 10.0, 20.0, 2) and rows[(4, "10")] == (7.0, 7.0, 7.0, 1)
    with pytest.raises(ValueError, match="missing column"):
        charts.tuning(df, x="nope", y="jobs_per_s")


# --- benchmark -------------------------------------------------------------------------------------
def test_benchmark_bars_one_panel_per_operation_with_ratios_to_sbqueue() -> None:
    rows = [
        {"operation": "add one by one", "engine": "sbqueue", "median": 8000, "min": 7000, "max": 9000},
        {"operation": "add one by one", "engine": "node", "median": 6400, "min": 6000, "max": 7000},
        {"operation": "process, c=100", "engine": "sbqueue", "median": 30000, "min": 29000, "max": 31000},
        {"operation": "process, c=100", "engine": "node", "median": 20000, "min": 18000, "max": 21000},
        {"operation": "process, c=100", "engine": "bullmq-py", "median": "n/a", "min": 0, "max": 0},
    ]
    d = spec(charts.benchmark(pd.DataFrame(rows)))
    assert d["facet"]["column"]["field"] == "operation"
    assert d["facet"]["column"]["sort"] == ["add one by one", "process, c=100"]
    assert d["resolve"]["scale"]["y"] == "independent"
    marks = sorted(unit["mark"]["type"] if isinstance(unit["mark"], dict) else unit["mark"] for unit in layers(d))
    assert marks == ["bar", "rule"]
    got = {(r["operation"], r["engine"]): r["sbqueue_vs"] for r in data_rows(d)}
    assert got == {("add one by one", "sbqueue"): 1.0, ("add one by one", "node"): 1.25,
                   ("process, c=100", "sbqueue"): 1.0, ("process, c=100", "node"): 1.5}  # fmt: skip
    assert "datasets" in d  # the unparseable row was dropped, not drawn as 0
    with pytest.raises(ValueError, match="missing column"):
        charts.benchmark(pd.DataFrame(rows).drop(columns="max"))


# --- scale and export -------------------------------------------------------------------------------
def test_100k_rows_give_small_specs() -> None:
    n = 100_000
    jobs = jobs_frame(n)
    ts = NOW - pd.to_timedelta(RNG.integers(0, 7 * 86400, n), unit="s")
    events = pd.DataFrame({"ts": ts, "event": RNG.choice(["added", "active", "completed", "failed"], n),
                           "job_id": jobs["id"]})  # fmt: skip
    metrics = pd.DataFrame({"minute": pd.date_range(NOW - pd.Timedelta(minutes=n - 1), NOW, freq="1min"),
                            "completed": RNG.integers(0, 100, n), "failed": RNG.integers(0, 5, n)})  # fmt: skip
    keys = pd.DataFrame({"key": jobs["id"], "bytes": RNG.integers(10, 10_000, n),
                         "queue": RNG.choice(["a", "b", "c"], n), "role": RNG.choice(["job", "logs"], n)})  # fmt: skip
    counts = pd.DataFrame({"queue": RNG.choice(["a", "b"], n), "state": RNG.choice(["failed", "waiting"], n),
                           "count": 1})  # fmt: skip
    built = {
        "counts": charts.counts(counts), "throughput": charts.throughput(metrics), "latency": charts.latency(jobs),
        "failures": charts.failures(jobs), "timeline": charts.timeline(events),
        "memory": charts.memory(keys.drop(columns="key")), "bigkeys": charts.memory(keys),
        "tuning": charts.tuning(jobs, x="name", y="run_s"),
    }  # fmt: skip
    sizes = {name: size(chart) for name, chart in built.items()}
    assert max(sizes.values()) < 200_000, sizes


def test_save_png_svg_html_json(tmp_path: Path) -> None:
    chart = charts.latency(jobs_frame(500))
    png = charts.save(chart, tmp_path / "sub" / "latency.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    svg = charts.save(charts.counts(pd.DataFrame([{"waiting": 2, "failed": 1}])), tmp_path / "counts.svg")
    text = svg.read_text()
    assert text.lstrip().startswith("<svg") and "Jobs per state" in text
    html = charts.save(chart, tmp_path / "latency.html").read_text()
    assert "<html" in html.lower() and "cdn.jsdelivr" not in html  # self-contained: no CDN needed
    assert json.loads(charts.save(chart, tmp_path / "latency.json").read_text())["facet"]
    with pytest.raises(ValueError, match="unsupported file type"):
        charts.save(chart, tmp_path / "latency.gif")


# --- against the inspection SDK's real frames ---------------------------------------------------------
CHART_INPUTS = [("counts", "queues"), ("throughput", "metrics"), ("latency", "jobs"), ("failures", "failures"),
                ("failures", "jobs"), ("timeline", "timeline"), ("timeline", "events"),
                ("memory", "memory_by_queue"), ("memory", "bigkeys")]  # fmt: skip


@pytest.mark.parametrize(("chart", "schema"), CHART_INPUTS)
def test_empty_inspection_frames_give_a_placeholder(chart: str, schema: str) -> None:
    from sbqueue.inspection import empty_frame

    d = spec(getattr(charts, chart)(empty_frame(schema)))
    assert d["mark"]["type"] == "text" and title_text(d)


def test_charts_of_a_real_queue(r: Any, prefix: str) -> None:
    import time

    import sbqueue
    from sbqueue.inspection import Inspector

    def work(job: sbqueue.Job) -> Any:
        if job.data["i"] % 4 == 0:
            raise RuntimeError(f"card {job.data['i']} declined")
        return job.data["i"]

    q = sbqueue.Queue("billing", r, prefix)
    q.add_bulk([{"name": "charge" if i % 2 else "refund", "data": {"i": i}} for i in range(40)])
    worker = sbqueue.Worker("billing", work, r, prefix, concurrency=4).start()
    try:
        deadline = time.monotonic() + 15
        while q.get_job_counts("completed", "failed") != {"completed": 30, "failed": 10}:
            assert time.monotonic() < deadline, q.get_job_counts()
            time.sleep(0.01)
    finally:
        worker.close()
    insp = Inspector(r, prefix, progress=False)
    jobs = insp.jobs("billing", states=["completed", "failed"])
    failed_id = jobs.loc[jobs["state"] == "failed", "id"].iloc[0]
    built = {
        "counts": charts.counts(insp.queues()), "throughput": charts.throughput(insp.metrics("billing")),
        "latency": charts.latency(jobs), "failures": charts.failures(insp.failures("billing")),
        "failed jobs": charts.failures(jobs[jobs["state"] == "failed"]),
        "timeline": charts.timeline(insp.timeline("billing", failed_id)),
        "events": charts.timeline(insp.events("billing")), "memory": charts.memory(insp.memory_by_queue()),
        "bigkeys": charts.memory(insp.bigkeys(match=f"{prefix}:*", top=10)),
    }  # fmt: skip
    for name, chart in built.items():
        d = spec(chart)
        assert title_text(d) and not any(u["mark"] == "text" or u["mark"].get("type") == "text"
                                         for u in layers(d)), f"{name}: drew a placeholder"  # fmt: skip
    rows = {(r_["queue"], r_["state"]): r_["count"] for r_ in data_rows(spec(built["counts"]))}
    assert rows == {("billing", "completed"): 30, ("billing", "failed"): 10}
    assert sum(r_["failures"] for r_ in data_rows(spec(built["failed jobs"]))) == 10
    assert sum(r_["count"] for r_ in data_rows(spec(built["failures"]))) == 10
    tput = data_rows(spec(built["throughput"]))
    assert sum(r_["completed"] for r_ in tput) == 30 and sum(r_["failed"] for r_ in tput) == 10


def test_soak_shows_memory_files_and_connections_from_zero_with_the_warmup_shaded() -> None:
    rows = [{"jobs": j, "seconds": j / 1000, "rss_kib": 120_000 + j // 100, "fds": 11, "connections": 7}
            for j in range(50_000, 1_000_001, 50_000)]
    d = spec(charts.soak(pd.DataFrame(rows)))
    assert len(d["hconcat"]) == 2
    units = layers(d)
    fields = {u["encoding"]["y"]["field"] for u in units if "y" in u.get("encoding", {})}
    assert fields == {"rss_mib", "count"}
    assert all(u["encoding"]["y"]["scale"]["zero"] for u in units if "y" in u.get("encoding", {}))
    shades = [u for u in units if (u["mark"]["type"] if isinstance(u["mark"], dict) else u["mark"]) == "rect"]
    assert len(shades) == 2
    got = data_rows(d)
    assert {"start": 0.0, "end": 200_000.0, "label": "warm-up"} in got
    assert {r["resource"] for r in got if "resource" in r} == {"open files", "Redis connections"}
    assert max(r["rss_mib"] for r in got if "rss_mib" in r) == pytest.approx((120_000 + 10_000) / 1024)
    assert spec(charts.soak(pd.DataFrame(columns=["jobs", "rss_kib", "fds", "connections"])))  # empty: a placeholder
    with pytest.raises(ValueError):
        charts.soak(pd.DataFrame({"jobs": [1]}))
