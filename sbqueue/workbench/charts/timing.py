"""Charts of how long jobs wait and run: latency histograms with p50/p95/p99 (:func:`latency`), and for a
recorded history the percentiles over time (:func:`percentiles_over_time`) and the wait heatmap (:func:`wait_heatmap`).
"""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from sbqueue.workbench.charts.prepare import _bucket_label, _freq, _iso, _require, _span, _utc
from sbqueue.workbench.charts.theme import AnyChart, _empty, _time_x


def latency(df: pd.DataFrame, *, bins: int = 30, by: str = "name", title: str = "Job latency") -> AnyChart:
    """Distributions of ``wait_s`` (queued → started) and ``run_s`` (started → finished), by job name.

    Histograms are binned in pandas (``bins`` per metric, stacked by ``by``); rules mark the p50, p95
    and p99 of all jobs. Takes ``Inspector.jobs(queue)``; rows without a value are ignored.
    """
    _require(df, [], "latency")
    metrics = [m for m in ("wait_s", "run_s") if m in df.columns]
    if not metrics:
        raise ValueError(f"charts.latency(): needs wait_s and/or run_s columns; got {list(df.columns)}")
    group = df[by].fillna("(none)").astype(str) if by in df.columns else pd.Series("all", index=df.index)
    hist_rows: list[pd.DataFrame] = []
    rule_rows: list[dict[str, Any]] = []
    for metric in metrics:
        values = pd.to_numeric(df[metric], errors="coerce")
        ok = values.notna() & np.isfinite(values)
        vals, groups = values[ok].to_numpy(dtype=float), group[ok].to_numpy()
        if len(vals) == 0:
            continue
        edges = np.histogram_bin_edges(vals, bins=bins)
        idx = np.clip(np.searchsorted(edges, vals, side="right") - 1, 0, len(edges) - 2)
        h = pd.DataFrame({"g": groups, "i": idx}).value_counts().rename("jobs").reset_index()
        hist_rows.append(pd.DataFrame({
            "metric": metric, "group": h["g"], "start": edges[h["i"]], "end": edges[h["i"] + 1], "jobs": h["jobs"],
        }))  # fmt: skip
        for q in (50, 95, 99):
            rule_rows.append({"metric": metric, "quantile": f"p{q}", "seconds": float(np.percentile(vals, q)),
                              "jobs": len(vals)})  # fmt: skip
    if not hist_rows:
        return _empty(title, "no finished jobs")
    field = by if by not in ("metric", "start", "end", "jobs", "kind", "quantile", "seconds") else "group"
    hist = pd.concat(hist_rows, ignore_index=True).assign(kind="bin").rename(columns={"group": field})
    rules = pd.DataFrame(rule_rows).assign(kind="quantile")
    data = pd.concat([hist, rules], ignore_index=True)
    data["metric"] = data["metric"].map({"wait_s": "wait (s)", "run_s": "run (s)"})
    bars = (
        alt.Chart()
        .transform_filter(alt.datum.kind == "bin")
        .mark_bar(opacity=0.85)
        .encode(
            x=alt.X("start:Q", title="seconds", scale=alt.Scale(padding=0, nice=True)),
            x2="end:Q",
            y=alt.Y("sum(jobs):Q", title="jobs (count)", stack="zero"),
            color=alt.Color(f"{field}:N", title=by),
            tooltip=[alt.Tooltip(f"{field}:N", title=by), alt.Tooltip("start:Q", title="from (s)", format=",.3f"),
                     alt.Tooltip("end:Q", title="to (s)", format=",.3f"), alt.Tooltip("sum(jobs):Q", title="jobs")],
        )
    )  # fmt: skip
    rule = (
        alt.Chart()
        .transform_filter(alt.datum.kind == "quantile")
        .mark_rule(strokeWidth=2)
        .encode(
            x="seconds:Q",
            strokeDash=alt.StrokeDash("quantile:N", title="quantile", sort=["p50", "p95", "p99"]),
            tooltip=[alt.Tooltip("quantile:N"), alt.Tooltip("seconds:Q", title="seconds", format=",.3f"),
                     alt.Tooltip("jobs:Q", title="of jobs", format=",")],
        )
    )  # fmt: skip
    return (
        alt.layer(bars, rule, data=data)
        .properties(width=520, height=160)
        .facet(
            row=alt.Row("metric:N", title=None, sort=["wait (s)", "run (s)"],
                        header=alt.Header(labelFontSize=13, labelFontWeight="bold")),
            title=alt.Title(title, subtitle="wait = added → started, run = started → finished; rules: p50/p95/p99"),
        )
        .resolve_scale(x="independent", y="independent")
    )


def percentiles_over_time(df: pd.DataFrame, *, by: str | None = "name", metric: str = "run time",
                          title: str = "Latency percentiles over time") -> AnyChart:
    """Lines of each percentile column (``p50``, ``p95``, ...) of ``History.percentiles()`` over ``time``, one
    colour per percentile and one small chart per ``by`` value (None: one chart). Seconds on the y axis.

    Example: ``charts.percentiles_over_time(h.percentiles("emails", freq="5min"))``
    """
    _require(df, ["time"], "percentiles_over_time")
    pcols = [c for c in df.columns if isinstance(c, str) and c.startswith("p") and c[1:].replace("_", "").isdigit()]
    if not pcols:
        raise ValueError(f"charts.percentiles_over_time(): no percentile columns (p50, p95, ...) in {list(df.columns)}")
    if df.empty:
        return _empty(title)
    keys = ["time"] + ([by] if by else [])
    long = df.melt(id_vars=[*keys, "count"] if "count" in df else keys, value_vars=pcols, var_name="percentile",
                   value_name="seconds").dropna(subset=["seconds"])
    times = _utc(long["time"])
    long = long.assign(time=_iso(times))
    tips = [alt.Tooltip("time:T", title="bucket start (UTC)", format="%Y-%m-%d %H:%M:%S"), "percentile:N",
            alt.Tooltip("seconds:Q", format=".3f", title=f"{metric} (s)")]
    if by:
        tips.insert(1, f"{by}:N")
    base = alt.Chart(long).mark_line(point=len(long) < 200).encode(
        x=_time_x("time", _span(times)), y=alt.Y("seconds:Q", title=f"{metric} (s)"),
        color=alt.Color("percentile:N", sort=pcols, title="percentile"), tooltip=tips,
    ).properties(width=420, height=160)
    if by:
        return base.facet(row=alt.Row(f"{by}:N", title=None)).properties(title=title)
    return base.properties(title=title)


def wait_heatmap(df: pd.DataFrame, *, freq: str | None = None, bins: int = 20,
                 title: str = "Wait time (started - ready)") -> AnyChart:
    """A heatmap of ``wait_s`` of ``History.jobs()`` rows: time buckets across, log-spaced wait bins up,
    colour = attempts. A queue falling behind shows as the mass climbing.

    Example: ``charts.wait_heatmap(h.jobs("emails", since=timedelta(hours=6)))``
    """
    _require(df, ["started", "wait_s"], "wait_heatmap")
    data = df[["started", "wait_s"]].dropna()
    if data.empty:
        return _empty(title)
    times = _utc(data["started"])
    freq = freq or _freq(times, "1s")[0]
    waits = data["wait_s"].clip(lower=1e-3).to_numpy(float)
    edges = np.geomspace(waits.min(), max(waits.max(), waits.min() * 1.001), bins + 1)
    idx = np.clip(np.searchsorted(edges, waits, side="right") - 1, 0, bins - 1)
    frame = pd.DataFrame({"time": times.dt.floor(freq), "lo": edges[idx], "hi": edges[idx + 1]})
    agg = frame.groupby(["time", "lo", "hi"]).size().rename("attempts").reset_index()
    width = pd.Timedelta(freq)
    agg = agg.assign(end=_iso(agg["time"] + width), time=_iso(agg["time"]))
    return alt.Chart(agg, title=title).mark_rect().encode(
        x=_time_x("time", _span(times)), x2="end:T",
        y=alt.Y("lo:Q", scale=alt.Scale(type="log"), title="wait (s, log scale)"), y2="hi:Q",
        color=alt.Color("attempts:Q", scale=alt.Scale(scheme="viridis"), title="attempts"),
        tooltip=[alt.Tooltip("time:T", title=f"bucket ({_bucket_label(width)})", format="%Y-%m-%d %H:%M:%S"),
                 alt.Tooltip("lo:Q", format=".3f", title="wait from (s)"),
                 alt.Tooltip("hi:Q", format=".3f", title="wait to (s)"), "attempts:Q"],
    ).properties(width=480, height=220)
