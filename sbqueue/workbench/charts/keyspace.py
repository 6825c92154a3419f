"""Charts of Redis memory: bytes by queue and key role, or the largest keys (:func:`memory`).

The unit (bytes, KiB, MiB, GiB) follows the largest bar, so the axis reads "12.5 MiB" rather than 13107200.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from sbqueue.workbench.charts.prepare import _byte_unit, _require
from sbqueue.workbench.charts.theme import _empty


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
