"""Charts of experiments and comparisons: a tuning curve (:func:`tuning`), engines side by side
(:func:`benchmark`, from ``python -m benchmarks``), two windows of a recorded history (:func:`comparison`) and a
worker's resources over a long run (:func:`soak`, from ``python -m benchmarks.soak``).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from sbqueue.workbench.charts.prepare import _require
from sbqueue.workbench.charts.theme import AnyChart, _empty


def tuning(
    df: pd.DataFrame,
    x: str,
    y: str,
    color: str | None = None,
    *,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    log_x: bool = False,
) -> AnyChart:
    """A generic experiment curve: mean ``y`` against ``x`` (one line per ``color``), with a min-max band.

    Repeated runs of the same setting are averaged in pandas; tooltips give mean, min, max and runs.
    Name axis units in ``x_title``/``y_title`` (e.g. ``"concurrency (jobs)"``, ``"throughput (jobs/s)"``).
    """
    _require(df, [x, y] + ([color] if color else []), "tuning")
    keys = [x] + ([color] if color else [])
    frame = df[keys + [y]].copy()
    frame[y] = pd.to_numeric(frame[y], errors="coerce")
    agg = frame.dropna(subset=[y]).groupby(keys, as_index=False, observed=True)[y].agg(["mean", "min", "max", "count"])
    agg = agg.rename(columns={"count": "runs"})
    if color:
        agg[color] = agg[color].astype(str)
    x_type = "Q" if pd.api.types.is_numeric_dtype(agg[x]) else "O"
    xenc = alt.X(f"{x}:{x_type}", title=x_title or x, scale=alt.Scale(type="log") if log_x else alt.Undefined)
    tips = [alt.Tooltip(f"{x}:{x_type}", title=x_title or x), alt.Tooltip("mean:Q", title=f"mean {y}", format=",.3~f"),
            alt.Tooltip("min:Q", format=",.3~f"), alt.Tooltip("max:Q", format=",.3~f"), alt.Tooltip("runs:Q")]
    if color:
        tips.insert(0, alt.Tooltip(f"{color}:N"))
    base = alt.Chart(agg).encode(x=xenc)
    band = base.mark_area(opacity=0.18).encode(y="min:Q", y2="max:Q")
    line = base.mark_line(point=True).encode(y=alt.Y("mean:Q", title=y_title or y), tooltip=tips)
    if color:
        band = band.encode(color=alt.Color(f"{color}:N", legend=None))
        line = line.encode(color=alt.Color(f"{color}:N", title=color))
    return alt.layer(band, line, title=title or f"{y} vs {x}").properties(width=480, height=260)


def benchmark(df: pd.DataFrame, *, title: str = "Throughput, side by side") -> AnyChart:
    """Bars of ``median`` jobs/s per ``operation``, one bar per ``engine``, with min-max whiskers.

    ``df`` has the rows ``python -m benchmarks`` saves (operation, engine, median, min, max; n and repeats
    optional). Each operation gets its own panel and y scale (adds and processing differ by 10x); the
    tooltip gives the ratio to sbqueue when an ``sbqueue`` row exists for that operation.
    """
    _require(df, ["operation", "engine", "median", "min", "max"], "benchmark")
    frame = df[[c for c in ("operation", "engine", "median", "min", "max", "n", "repeats") if c in df]].copy()
    for col in ("median", "min", "max"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame = frame.dropna(subset=["median"])
    if frame.empty:
        return _empty(title)
    ours = frame[frame["engine"] == "sbqueue"].set_index("operation")["median"]
    frame["sbqueue_vs"] = [
        round(float(ours[op]) / m, 2) if op in ours.index and m > 0 else np.nan
        for op, m in zip(frame["operation"], frame["median"], strict=True)
    ]
    order = list(dict.fromkeys(frame["operation"]))
    engines = list(dict.fromkeys(frame["engine"]))
    tips = [alt.Tooltip("operation:N"), alt.Tooltip("engine:N"),
            alt.Tooltip("median:Q", title="median jobs/s", format=",.0f"),
            alt.Tooltip("min:Q", title="min jobs/s", format=",.0f"),
            alt.Tooltip("max:Q", title="max jobs/s", format=",.0f"),
            alt.Tooltip("sbqueue_vs:Q", title="sbqueue / this engine", format=".2f")]  # fmt: skip
    x = alt.X("engine:N", title=None, sort=engines, axis=alt.Axis(labelAngle=0))
    color = alt.Color("engine:N", sort=engines, legend=alt.Legend(title="engine"))
    bars = alt.Chart().mark_bar().encode(x=x, y=alt.Y("median:Q", title="jobs/s (median)"), color=color, tooltip=tips)
    whiskers = alt.Chart().mark_rule(color="black").encode(x=x, y="min:Q", y2="max:Q", tooltip=tips)
    return (
        alt.layer(bars, whiskers, data=frame)
        .properties(width=150, height=200)
        .facet(column=alt.Column("operation:N", sort=order, title=None))
        .resolve_scale(y="independent")
        .properties(title=title)
    )


def comparison(df: pd.DataFrame, *, by: str = "name", title: str = "Before / after") -> AnyChart:
    """``History.compare()`` as two panels per ``by`` value: the median run time in each window (bars, with
    Cliff's delta in the tooltip) and the failure rate in each window.

    Example: ``charts.comparison(h.compare("emails", (t0, t1), (t1, t2)))``
    """
    _require(df, [by, "median_a", "median_b", "failure_rate_a", "failure_rate_b", "effect"], "comparison")
    if df.empty:
        return _empty(title)
    order = list(df[by].astype(str))
    rows = []
    for _, r in df.iterrows():
        for window in ("a", "b"):
            rows.append({by: str(r[by]), "window": "before (a)" if window == "a" else "after (b)",
                         "median_s": r[f"median_{window}"], "failure_rate": r[f"failure_rate_{window}"],
                         "effect": r["effect"], "slowdown": r.get("slowdown", np.nan)})
    long = pd.DataFrame(rows)
    tips = [f"{by}:N", "window:N", alt.Tooltip("median_s:Q", format=".3f", title="median (s)"),
            alt.Tooltip("failure_rate:Q", format=".1%", title="failure rate"),
            alt.Tooltip("effect:Q", format="+.2f", title="Cliff's delta"),
            alt.Tooltip("slowdown:Q", format=".2f", title="median b / a")]
    color = alt.Color("window:N", sort=["before (a)", "after (b)"], scale=alt.Scale(range=["#9ecae9", "#e45756"]))
    y = alt.Y(f"{by}:N", sort=order, title=None)
    speed = alt.Chart(long).mark_bar().encode(
        y=y, yOffset=alt.YOffset("window:N", sort=["before (a)", "after (b)"]),
        x=alt.X("median_s:Q", title="median run time (s)"), color=color, tooltip=tips,
    ).properties(width=260, height=max(60, 28 * len(order)))
    fails = speed.encode(x=alt.X("failure_rate:Q", title="failure rate", axis=alt.Axis(format="%")))
    return alt.hconcat(speed, fails).properties(title=title)


def soak(df: pd.DataFrame, *, warmup: float = 0.2, title: str = "Soak: a worker over a long run") -> AnyChart:
    """A worker's RSS (MiB), open files and Redis connections against the jobs it has processed.

    ``df`` has the rows ``python -m benchmarks.soak`` samples (``jobs``, ``rss_kib``, ``fds``, ``connections``).
    The warm-up (the first ``warmup`` share of the jobs) is shaded: after it, flat lines mean nothing grows
    per job. The RSS axis starts at zero, so a flat line is not a zoomed-in wobble.
    """
    _require(df, ["jobs", "rss_kib", "fds", "connections"], "soak")
    if df.empty:
        return _empty(title)
    frame = df[["jobs", "rss_kib", "fds", "connections"]].apply(pd.to_numeric, errors="coerce").dropna()
    frame = frame.assign(rss_mib=frame["rss_kib"] / 1024)
    end = float(frame["jobs"].max())
    shade = alt.Chart(pd.DataFrame({"start": [0.0], "end": [warmup * end], "label": ["warm-up"]})).mark_rect(
        opacity=0.12, color="gray").encode(x="start:Q", x2="end:Q", tooltip=["label:N"])  # fmt: skip
    jobs_axis = alt.X("jobs:Q", title="jobs processed", axis=alt.Axis(format="~s"))
    rss = alt.Chart(frame).mark_line(point=True).encode(
        x=jobs_axis, y=alt.Y("rss_mib:Q", title="worker RSS (MiB)", scale=alt.Scale(zero=True)),
        tooltip=[alt.Tooltip("jobs:Q", format=","), alt.Tooltip("rss_mib:Q", title="RSS (MiB)", format=",.1f")])
    counts = frame.melt(id_vars=["jobs"], value_vars=["fds", "connections"], var_name="resource", value_name="count")
    counts["resource"] = counts["resource"].map({"fds": "open files", "connections": "Redis connections"})
    others = alt.Chart(counts).mark_line(point=True).encode(
        x=jobs_axis, y=alt.Y("count:Q", title="count", scale=alt.Scale(zero=True)),
        color=alt.Color("resource:N", title=None),
        tooltip=[alt.Tooltip("jobs:Q", format=","), "resource:N", "count:Q"])
    return alt.hconcat(
        alt.layer(shade, rss).properties(width=320, height=220, title="memory"),
        alt.layer(shade, others).properties(width=320, height=220, title="open files and connections"),
        title=title,
    )
