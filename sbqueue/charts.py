"""Altair charts of sbqueue's inspection DataFrames, readable in a notebook and in a static report.

Every function is a pure function of a DataFrame (no Redis access): pass what :class:`sbqueue.Inspector`
returns, or any frame with the same columns. Each chart has a title, axis titles with units and tooltips.
Inputs are aggregated with pandas *before* charting (time buckets, histogram bins, top-N), so a
100k-row frame still gives a spec of a few kilobytes.

>>> from sbqueue import charts
>>> chart = charts.counts(inspector.queues())          # doctest: +SKIP
>>> charts.save(chart, "reports/counts.png")           # PNG, SVG, HTML or JSON; works headless

Functions: :func:`counts`, :func:`throughput`, :func:`latency`, :func:`failures`, :func:`timeline`,
:func:`memory`, :func:`tuning`, :func:`benchmark`, :func:`save`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

__all__ = ["benchmark", "counts", "failures", "latency", "memory", "save", "throughput", "timeline", "tuning"]

#: The state columns of ``Inspector.queues()``, in display order (both spellings of waiting-children).
STATES = ("waiting", "prioritized", "delayed", "active", "waiting-children", "completed", "failed", "paused")
STATE_COLORS = {
    "waiting": "#4c78a8", "prioritized": "#72b7b2", "delayed": "#b279a2", "active": "#f58518",
    "waiting-children": "#9d755d", "completed": "#54a24b", "failed": "#e45756", "paused": "#bab0ac",
}  # fmt: skip
EVENT_COLORS = {
    "added": "#4c78a8", "waiting": "#9ecae9", "active": "#f58518", "progress": "#eeca3b", "completed": "#54a24b",
    "failed": "#e45756", "retried": "#b279a2", "retries-exhausted": "#9d0208", "delayed": "#b279a2",
    "stalled": "#ff9da6", "removed": "#79706e", "cleaned": "#79706e", "drained": "#bab0ac",
    "duplicated": "#9d755d", "deduplicated": "#9d755d", "paused": "#bab0ac", "resumed": "#72b7b2",
}  # fmt: skip
#: Most time buckets a time-series chart draws; finer data is summed into coarser buckets.
MAX_BUCKETS = 240
_FREQS = ("100ms", "250ms", "500ms", "1s", "5s", "10s", "30s", "1min", "5min", "15min", "30min", "1h", "3h", "6h",
          "12h", "1D", "7D")  # fmt: skip
_TIME_COLUMNS = ("ts", "minute", "time", "timestamp", "finished_on", "last_seen")
_UTC = alt.Scale(type="utc")
#: What the chart functions return: a single chart, a layer (e.g. bars + quantile rules) or a facet.
AnyChart = alt.Chart | alt.LayerChart | alt.FacetChart


# --- helpers ----------------------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: Sequence[str], chart: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"charts.{chart}() takes a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"charts.{chart}(): missing column(s) {missing}; got {list(df.columns)}")


def _first(df: pd.DataFrame, names: Sequence[str], chart: str) -> str:
    for name in names:
        if name in df.columns:
            return name
    raise ValueError(f"charts.{chart}(): needs one of the columns {list(names)}; got {list(df.columns)}")


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps (datetimes, ISO strings or epoch milliseconds) as tz-aware UTC datetimes."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pd.to_datetime(values, unit="ms", utc=True)
    return pd.to_datetime(values, utc=True)


def _iso(values: pd.Series) -> pd.Series:
    """UTC datetimes as ISO strings (what Vega-Lite parses without a timezone surprise)."""
    return values.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.slice(0, 23) + "Z"


def _freq(times: pd.Series, minimum: str = "100ms") -> tuple[str, pd.Timedelta]:
    """The finest bucket (not below ``minimum``) that keeps the series under :data:`MAX_BUCKETS`."""
    span = (times.max() - times.min()) if len(times) else pd.Timedelta(0)
    span = span if pd.notna(span) else pd.Timedelta(0)
    start = _FREQS.index(minimum)
    for freq in _FREQS[start:]:
        width = pd.Timedelta(freq)
        if span / width <= MAX_BUCKETS:
            return freq, width
    return _FREQS[-1], pd.Timedelta(_FREQS[-1])


def _bucket_label(width: pd.Timedelta) -> str:
    if width < pd.Timedelta("1s"):
        return f"{int(width / pd.Timedelta('1ms'))} ms"
    seconds = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _time_x(field: str, span: pd.Timedelta) -> alt.X:
    """A UTC time axis whose labels suit ``span`` (Vega's default shows bare ".500" on sub-minute spans)."""
    axis = alt.Axis(labelOverlap=True)
    if span < pd.Timedelta("20s"):
        axis = alt.Axis(format="%H:%M:%S.%L", labelOverlap=True, tickCount=5, labelFlush=False)
    elif span < pd.Timedelta("1h"):
        axis = alt.Axis(format="%H:%M:%S", labelOverlap=True, tickCount=6, labelFlush=False)
    return alt.X(f"{field}:T", title="time (UTC)", scale=_UTC, axis=axis)


def _span(times: pd.Series) -> pd.Timedelta:
    span = times.max() - times.min() if len(times) else pd.Timedelta(0)
    return span if pd.notna(span) else pd.Timedelta(0)


def _time_format(width: pd.Timedelta) -> str:
    """Tooltip time format for buckets of ``width`` (milliseconds only when buckets are sub-second)."""
    return "%Y-%m-%d %H:%M:%S.%L" if width < pd.Timedelta("1s") else "%Y-%m-%d %H:%M:%S"


def _byte_unit(max_bytes: float) -> tuple[str, float]:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if max_bytes >= size:
            return unit, float(size)
    return "bytes", 1.0


def _short(value: Any, width: int = 60) -> str:
    """One line of at most ``width`` characters (missing values give "")."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _event_color(events: Sequence[str], **kwargs: Any) -> alt.Color:
    """Event colours that match across charts (unknown events get a neutral gray)."""
    return alt.Color("event:N", scale=alt.Scale(domain=list(events),
                     range=[EVENT_COLORS.get(e, "#888888") for e in events]), **kwargs)  # fmt: skip


def _empty(title: str, message: str = "no data") -> alt.Chart:
    """A placeholder chart that still renders (and exports) when there is nothing to show."""
    return (
        alt.Chart(pd.DataFrame({"text": [message]}), title=title)
        .mark_text(size=14, color="gray")
        .encode(text="text:N")
        .properties(width=400, height=80)
    )


# --- charts -----------------------------------------------------------------------------------------
def counts(df: pd.DataFrame, *, title: str = "Jobs per state") -> alt.Chart:
    """Jobs per state per queue, as horizontal stacked bars.

    Takes ``Inspector.queues()`` (a ``queue`` column plus one column per state; its boolean ``paused``
    flag is ignored and ``paused_legacy`` counts as "paused"), or a long frame with ``queue``, ``state``
    and ``count``. A frame without ``queue`` (e.g. one queue's counts) is drawn as
    one bar.
    """
    _require(df, [], "counts")
    frame = df.copy()
    if "queue" not in frame.columns:
        frame["queue"] = frame["name"] if "name" in frame.columns else "queue"
    if {"state", "count"} <= set(frame.columns):
        long = frame[["queue", "state", "count"]].copy()
    else:
        if "paused" in frame.columns and pd.api.types.is_bool_dtype(frame["paused"]):
            frame = frame.drop(columns="paused")  # queues(): the paused flag, not a count
        frame = frame.rename(columns={"waiting_children": "waiting-children", "wait": "waiting",
                                      "paused_legacy": "paused"})  # fmt: skip
        states = [s for s in STATES if s in frame.columns]
        if not states:
            raise ValueError(f"charts.counts(): no state columns ({', '.join(STATES)}) in {list(df.columns)}")
        long = frame.melt(id_vars=["queue"], value_vars=states, var_name="state", value_name="count")
    long["state"] = long["state"].replace({"wait": "waiting", "waiting_children": "waiting-children"})
    long["count"] = pd.to_numeric(long["count"], errors="coerce").fillna(0).astype("int64")
    long = pd.DataFrame(long.groupby(["queue", "state"], as_index=False, observed=True)["count"].sum())
    long = long[long["count"] > 0]
    if long.empty:
        return _empty(title, "no jobs")
    order = [s for s in STATES if s in set(long["state"])] + sorted(set(long["state"]) - set(STATES))
    long["order"] = long["state"].map({s: i for i, s in enumerate(order)})
    colors = [STATE_COLORS.get(s, "#888888") for s in order]
    queues = long.groupby("queue")["count"].sum().sort_values(ascending=False).index.tolist()
    return (
        alt.Chart(long, title=title)
        .mark_bar()
        .encode(
            y=alt.Y("queue:N", sort=queues, title="queue"),
            x=alt.X("count:Q", title="jobs (count)", stack="zero"),
            color=alt.Color("state:N", scale=alt.Scale(domain=order, range=colors), sort=order, title="state"),
            order=alt.Order("order:Q"),
            tooltip=[alt.Tooltip("queue:N"), alt.Tooltip("state:N"), alt.Tooltip("count:Q", format=",")],
        )
        .properties(width=500, height=alt.Step(22))
    )


def _metrics_long(df: pd.DataFrame) -> pd.DataFrame:
    tcol = _first(df, _TIME_COLUMNS, "throughput")
    if {"completed", "failed"} & set(df.columns):
        kinds = [k for k in ("completed", "failed") if k in df.columns]
        long = df.melt(id_vars=[tcol], value_vars=kinds, var_name="kind", value_name="count")
    else:
        kcol = _first(df, ("kind", "metric", "type"), "throughput")
        ccol = _first(df, ("count", "jobs", "value"), "throughput")
        long = df[[tcol, kcol, ccol]].rename(columns={kcol: "kind", ccol: "count"})
    long = long.rename(columns={tcol: "t"})
    long["t"] = _utc(long["t"])
    long["count"] = pd.to_numeric(long["count"], errors="coerce").fillna(0)
    return long.dropna(subset=["t"])


def throughput(df: pd.DataFrame, *, title: str = "Throughput") -> AnyChart:
    """Completed and failed jobs per minute (lines) with the failure rate (dashed, right axis).

    Takes ``Inspector.metrics(queue)``: a time column (``ts``/``minute``) plus ``completed`` and
    ``failed`` columns, or long ``kind``/``count`` columns. Rows of several queues are summed. Long
    histories are summed into coarser buckets and still plotted as jobs per minute.
    """
    long = _metrics_long(df)
    if long.empty:
        return _empty(title)
    freq, width = _freq(long["t"], minimum="1min")
    long["t"] = long["t"].dt.floor(freq)
    per = long.pivot_table(index="t", columns="kind", values="count", aggfunc="sum", fill_value=0)
    per = per.reindex(columns=["completed", "failed"], fill_value=0)
    minutes = width / pd.Timedelta("1min")
    rate = per["failed"] / (per["completed"] + per["failed"]).replace(0, np.nan)
    out = pd.DataFrame({
        "time": _iso(pd.Series(per.index, index=per.index)),
        "completed": per["completed"] / minutes,
        "failed": per["failed"] / minutes,
        "failure_rate": rate.fillna(0.0),
    }).reset_index(drop=True)  # fmt: skip
    subtitle = f"per-minute rates, {_bucket_label(width)} buckets" if minutes > 1 else "per-minute counts"
    subtitle += "; dashed: failure rate (right axis)"
    base = alt.Chart(out).encode(x=alt.X("time:T", title="time (UTC)", scale=_UTC))
    tips = [
        alt.Tooltip("time:T", title="time (UTC)", format="%Y-%m-%d %H:%M"),
        alt.Tooltip("completed:Q", title="completed / min", format=",.1f"),
        alt.Tooltip("failed:Q", title="failed / min", format=",.1f"),
        alt.Tooltip("failure_rate:Q", title="failure rate", format=".1%"),
    ]
    jobs = (
        base.transform_fold(["completed", "failed"], as_=["kind", "jobs_per_min"])
        .mark_line(point=len(out) <= 60)
        .encode(
            y=alt.Y("jobs_per_min:Q", title="jobs / min"),
            color=alt.Color("kind:N", scale=alt.Scale(domain=["completed", "failed"],
                                                      range=[STATE_COLORS["completed"], STATE_COLORS["failed"]]),
                            title="jobs"),
            tooltip=tips,
        )
    )  # fmt: skip
    rate_line = base.mark_line(strokeDash=[4, 3], color="#333333").encode(
        y=alt.Y("failure_rate:Q", title="failure rate (%)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        tooltip=tips,
    )
    return (
        alt.layer(jobs, rate_line, title=alt.Title(title, subtitle=subtitle))
        .resolve_scale(y="independent")
        .properties(width=560, height=240)
    )


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


def failures(df: pd.DataFrame, *, top: int = 10, title: str = "Failures by signature") -> AnyChart:
    """Failures by error signature over time.

    With per-job rows (``failed_reason`` or ``signature`` plus ``finished_on``/``ts``, e.g.
    ``Inspector.jobs(queue, states="failed")``) it draws stacked bars of failures per time bucket for the
    ``top`` signatures (the rest summed as "other"). With ``Inspector.failures(queue)`` (one row per
    signature: ``count``, ``first_seen``, ``last_seen``) it draws each signature's first→last-seen span,
    sized by count.
    """
    _require(df, [], "failures")
    sig = _first(df, ("signature", "failed_reason", "reason"), "failures")
    if {"first_seen", "last_seen", "count"} <= set(df.columns):
        return _failure_spans(df, sig, top, title)
    tcol = _first(df, ("finished_on", "ts", "timestamp", "failed_at", "time"), "failures")
    frame = pd.DataFrame({"t": _utc(df[tcol]), "signature": df[sig].map(_short)}).dropna(subset=["t"])
    if frame.empty:
        return _empty(title, "no failures")
    ranking = frame["signature"].value_counts()
    keep = set(ranking.index[:top])
    frame.loc[~frame["signature"].isin(keep), "signature"] = "other"
    freq, width = _freq(frame["t"])
    span = _span(frame["t"])
    frame["t"] = frame["t"].dt.floor(freq)
    agg = frame.groupby(["t", "signature"], as_index=False).size().rename(columns={"size": "failures"})
    agg["time"] = _iso(agg["t"])
    agg = agg.drop(columns="t")
    order = [s for s in ranking.index[:top]] + (["other"] if "other" in set(agg["signature"]) else [])
    return (
        alt.Chart(agg, title=alt.Title(title, subtitle=f"{_bucket_label(width)} buckets; top {top} signatures"))
        .mark_bar()
        .encode(
            x=_time_x("time", span),
            y=alt.Y("failures:Q", title=f"failures (per {_bucket_label(width)})", stack="zero"),
            color=alt.Color("signature:N", sort=order, title="signature", legend=alt.Legend(labelLimit=360)),
            tooltip=[alt.Tooltip("time:T", title="time (UTC)", format=_time_format(width)),
                     alt.Tooltip("signature:N"), alt.Tooltip("failures:Q", format=",")],
        )
        .properties(width=560, height=240)
    )  # fmt: skip


def _failure_spans(df: pd.DataFrame, sig: str, top: int, title: str) -> AnyChart:
    frame = pd.DataFrame({
        "signature": df[sig].map(_short),
        "count": pd.to_numeric(df["count"], errors="coerce").fillna(0).astype("int64"),
        "first": _utc(df["first_seen"]),
        "last": _utc(df["last_seen"]),
        "names": df["names"].map(lambda v: ", ".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray))
                                 else _short(v)) if "names" in df.columns else "",
    }).dropna(subset=["first", "last"])  # fmt: skip
    if frame.empty:
        return _empty(title, "no failures")
    frame = frame.groupby("signature", as_index=False).agg(
        count=("count", "sum"), first=("first", "min"), last=("last", "max"), names=("names", "first")
    )
    frame = frame.sort_values("count", ascending=False).head(top)
    span = frame["last"].max() - frame["first"].min()
    frame["first_seen"], frame["last_seen"] = _iso(frame["first"]), _iso(frame["last"])
    frame = frame.drop(columns=["first", "last"])
    order = frame["signature"].tolist()
    tips = [alt.Tooltip("signature:N"), alt.Tooltip("count:Q", title="failures", format=","),
            alt.Tooltip("first_seen:T", title="first seen (UTC)", format="%Y-%m-%d %H:%M:%S"),
            alt.Tooltip("last_seen:T", title="last seen (UTC)", format="%Y-%m-%d %H:%M:%S"),
            alt.Tooltip("names:N", title="job names")]  # fmt: skip
    base = alt.Chart(frame).encode(y=alt.Y("signature:N", sort=order, title=None, axis=alt.Axis(labelLimit=360)))
    span = base.mark_rule(strokeWidth=3, color="#e45756").encode(
        x=_time_x("first_seen", span), x2="last_seen:T", tooltip=tips
    )
    dot = base.mark_circle(color="#e45756", opacity=0.8).encode(
        x="last_seen:T", size=alt.Size("count:Q", title="failures"), tooltip=tips
    )
    return alt.layer(span, dot, title=alt.Title(title, subtitle="first → last seen; size = failures")).properties(
        width=520, height=alt.Step(24)
    )


def timeline(df: pd.DataFrame, *, title: str | None = None, max_points: int = 500) -> AnyChart:
    """A job's lifecycle (one job: each event as a point on a time axis), or the event rate of a queue.

    Takes ``Inspector.timeline(queue, job_id)`` or ``Inspector.events(queue)`` (``event`` and ``ts``
    columns, ``job_id`` optional). With at most ``max_points`` rows for one job the events are drawn as
    they are; otherwise events are counted per time bucket and per event type.
    """
    _require(df, [], "timeline")
    ecol = _first(df, ("event", "kind", "state"), "timeline")
    tcol = _first(df, ("ts", "time", "timestamp"), "timeline")
    frame = pd.DataFrame({"t": _utc(df[tcol]), "event": df[ecol].astype(str)}, index=df.index)
    jobs = df["job_id"].dropna().astype(str).unique() if "job_id" in df.columns else np.array([])
    frame = frame.dropna(subset=["t"])
    one_job = len(jobs) <= 1 and len(frame) <= max_points
    if frame.empty:
        return _empty(title or "Events", "no events")
    if one_job:
        head = f"Job {jobs[0]} lifecycle" if len(jobs) == 1 else "Lifecycle"
        detail = df.loc[frame.index, [c for c in ("job_id", "detail", "failed_reason", "attempts_made",
                                                  "source") if c in df.columns]]  # fmt: skip
        detail = detail.map(lambda v: _short(v, 120))
        out = pd.concat([frame.assign(time=_iso(frame["t"])).drop(columns="t"), detail], axis=1)
        order = out["event"].drop_duplicates().tolist()
        tips = [alt.Tooltip("time:T", title="time (UTC)", format="%Y-%m-%d %H:%M:%S.%L"), alt.Tooltip("event:N")]
        tips += [alt.Tooltip(f"{c}:N") for c in detail.columns]
        base = alt.Chart(out).encode(
            x=_time_x("time", _span(frame["t"])),
            y=alt.Y("event:N", sort=order, title="event"),
        )
        path = base.mark_line(color="#bbbbbb").encode(order=alt.Order("time:T"))
        points = base.mark_point(filled=True, size=90).encode(color=_event_color(order, legend=None), tooltip=tips)
        return alt.layer(path, points, title=title or head).properties(width=560, height=alt.Step(26))
    freq, width = _freq(frame["t"])
    span = _span(frame["t"])
    frame["t"] = frame["t"].dt.floor(freq)
    grid = frame.pivot_table(index="t", columns="event", aggfunc="size", fill_value=0)
    grid = grid.reindex(pd.date_range(grid.index.min(), grid.index.max(), freq=freq), fill_value=0)
    grid.columns.name = None
    agg = grid.rename_axis(index="t").reset_index().melt(id_vars="t", var_name="event", value_name="events")
    agg["time"] = _iso(agg["t"])
    agg = agg.drop(columns="t")
    label = _bucket_label(width)
    return (
        alt.Chart(agg, title=alt.Title(title or "Events over time", subtitle=f"{label} buckets"))
        .mark_line(point=len(agg) <= 80)
        .encode(
            x=_time_x("time", span),
            y=alt.Y("events:Q", title=f"events (per {label})"),
            color=_event_color(sorted(set(agg["event"])), title="event"),
            tooltip=[alt.Tooltip("time:T", title="time (UTC)", format=_time_format(width)),
                     alt.Tooltip("event:N"), alt.Tooltip("events:Q", format=",")],
        )
        .properties(width=560, height=240)
    )  # fmt: skip


def memory(df: pd.DataFrame, *, top: int = 25, title: str | None = None) -> alt.Chart:
    """Memory by queue and key role (``Inspector.memory_by_queue()``), or the top keys (``bigkeys()``).

    A frame with a ``key`` column is drawn as the ``top`` largest keys; otherwise bytes are summed per
    ``queue`` and ``role`` and stacked. The unit (bytes/KiB/MiB/GiB) follows the largest bar.
    """
    _require(df, ["bytes"], "memory")
    frame = df.copy()
    frame["bytes"] = pd.to_numeric(frame["bytes"], errors="coerce").fillna(0)
    for col in ("queue", "role"):
        if col not in frame.columns:
            frame[col] = "(none)"
        frame[col] = frame[col].fillna("(none)").astype(str)
    if "key" in frame.columns:
        rows = frame.nlargest(top, "bytes")
        if rows.empty:
            return _empty(title or "Largest keys", "no keys")
        unit, size = _byte_unit(float(rows["bytes"].max()))
        out = pd.DataFrame({"key": rows["key"].astype(str), "queue": rows["queue"], "role": rows["role"],
                            "bytes": rows["bytes"].astype("int64"), "size": rows["bytes"] / size})  # fmt: skip
        for col in ("type", "length"):
            if col in rows.columns:
                out[col] = rows[col].astype(str).to_numpy()
        tips = [alt.Tooltip("key:N"), alt.Tooltip("queue:N"), alt.Tooltip("role:N"),
                alt.Tooltip("bytes:Q", format=",")] + [alt.Tooltip(f"{c}:N") for c in ("type", "length")
                                                        if c in out.columns]  # fmt: skip
        return (
            alt.Chart(out, title=title or f"Top {len(out)} keys by memory")
            .mark_bar()
            .encode(
                y=alt.Y("key:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320)),
                x=alt.X("size:Q", title=f"memory ({unit})"),
                color=alt.Color("role:N", title="key role"),
                tooltip=tips,
            )
            .properties(width=480, height=alt.Step(18))
        )
    agg = frame.groupby(["queue", "role"], as_index=False)["bytes"].sum()
    agg = agg[agg["bytes"] > 0]
    if agg.empty:
        return _empty(title or "Memory by queue", "no keys")
    totals = agg.groupby("queue")["bytes"].sum().sort_values(ascending=False)
    queues = totals.index[:top].tolist()
    agg = agg[agg["queue"].isin(queues)]
    unit, size = _byte_unit(float(totals.max()))
    agg = agg.assign(size=agg["bytes"] / size, bytes=agg["bytes"].astype("int64"))
    return (
        alt.Chart(agg, title=title or "Memory by queue and key role")
        .mark_bar()
        .encode(
            y=alt.Y("queue:N", sort=queues, title="queue"),
            x=alt.X("size:Q", title=f"memory ({unit})", stack="zero"),
            color=alt.Color("role:N", title="key role"),
            tooltip=[alt.Tooltip("queue:N"), alt.Tooltip("role:N"), alt.Tooltip("bytes:Q", format=","),
                     alt.Tooltip("size:Q", title=unit, format=",.2f")],
        )
        .properties(width=480, height=alt.Step(22))
    )  # fmt: skip


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


# --- export -----------------------------------------------------------------------------------------
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


def save(chart: AnyChart, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write ``chart`` to ``path``: ``.png``, ``.svg``, ``.html`` (self-contained, no CDN) or ``.json``.

    Rendering uses vl-convert (no browser, no network), so it works on a headless CI machine.
    Returns the path written; parent folders are created.
    """
    import vl_convert as vlc

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = chart.to_dict()
    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]
    suffix = out.suffix.lower()
    if suffix == ".png":
        out.write_bytes(vlc.vegalite_to_png(spec, vl_version=version, scale=scale))
    elif suffix == ".svg":
        out.write_text(vlc.vegalite_to_svg(spec, vl_version=version), encoding="utf-8")
    elif suffix in (".html", ".htm"):
        out.write_text(vlc.vegalite_to_html(spec, vl_version=version, bundle=True), encoding="utf-8")
    elif suffix == ".json":
        out.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    else:
        raise ValueError(f"charts.save(): unsupported file type {out.suffix!r}; use .png, .svg, .html or .json")
    return out
