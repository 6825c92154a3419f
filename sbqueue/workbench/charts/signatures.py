"""Charts of failures by error signature: failures per time bucket for the top signatures, or each signature's
first-to-last-seen span (:func:`failures`).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from sbqueue.workbench.charts.prepare import _bucket_label, _first, _freq, _iso, _require, _short, _span, _utc
from sbqueue.workbench.charts.theme import AnyChart, _empty, _time_format, _time_x


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
