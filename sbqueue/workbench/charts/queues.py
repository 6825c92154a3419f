"""Charts of queue state and activity: jobs per state per queue (:func:`counts`) and completions/failures per
minute with the failure rate (:func:`throughput`).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from sbqueue.workbench.charts.prepare import _TIME_COLUMNS, _bucket_label, _first, _freq, _iso, _require, _utc
from sbqueue.workbench.charts.theme import _UTC, STATE_COLORS, STATES, AnyChart, _empty


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
    if len(out) <= FEW_BUCKETS:
        return _few_buckets(out, title, subtitle, width)
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


#: up to this many time buckets, lines would read as lone dots: bars side by side per bucket instead
FEW_BUCKETS = 3


def _few_buckets(out: pd.DataFrame, title: str, subtitle: str, width: pd.Timedelta) -> AnyChart:
    """Throughput of one to three buckets (a queue that ran for a minute): grouped bars per bucket, labelled in
    24-hour UTC time, and the failure rate as a diamond on the right axis."""
    fmt = "%H:%M" if width < pd.Timedelta("1D") else "%Y-%m-%d"
    out = out.assign(bucket=pd.to_datetime(out["time"], utc=True).dt.strftime(fmt))
    x = alt.X("bucket:O", title="time (UTC)", axis=alt.Axis(labelAngle=0))
    tips = [alt.Tooltip("bucket:O", title="time (UTC)"),
            alt.Tooltip("completed:Q", title="completed / min", format=",.1f"),
            alt.Tooltip("failed:Q", title="failed / min", format=",.1f"),
            alt.Tooltip("failure_rate:Q", title="failure rate", format=".1%")]  # fmt: skip
    base = alt.Chart(out)
    bars = base.transform_fold(["completed", "failed"], as_=["kind", "jobs_per_min"]).mark_bar().encode(
        x=x, xOffset=alt.XOffset("kind:N", scale=alt.Scale(domain=["completed", "failed"])),
        y=alt.Y("jobs_per_min:Q", title="jobs / min"),
        color=alt.Color("kind:N", scale=alt.Scale(domain=["completed", "failed"],
                                                  range=[STATE_COLORS["completed"], STATE_COLORS["failed"]]),
                        title="jobs"),
        tooltip=tips,
    )  # fmt: skip
    rate = base.mark_point(shape="diamond", filled=True, size=90, color="#333333").encode(
        x=x, y=alt.Y("failure_rate:Q", title="failure rate (%)", axis=alt.Axis(format="%"),
                     scale=alt.Scale(domain=[0, 1])), tooltip=tips)  # fmt: skip
    return (
        alt.layer(bars, rate, title=alt.Title(title, subtitle=subtitle + "; diamond: failure rate (right axis)"))
        .resolve_scale(y="independent")
        .properties(width=min(560, 200 * len(out) + 160), height=240)
    )
