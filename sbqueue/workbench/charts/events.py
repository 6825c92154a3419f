"""Charts of queue events: one job's lifecycle as points on a time axis, or a queue's event rate per time bucket
(:func:`timeline`).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from sbqueue.workbench.charts.prepare import _bucket_label, _first, _freq, _iso, _require, _short, _span, _utc
from sbqueue.workbench.charts.theme import AnyChart, _empty, _event_color, _time_format, _time_x


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
