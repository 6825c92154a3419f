"""The look every chart shares: state and event colours, the UTC time axis, tooltips' time format, placeholders.

Colours match across charts (a failed job is the same red in counts, throughput and a timeline); a chart with
nothing to show still renders and exports (a gray "no data" placeholder instead of an empty spec).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

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
_UTC = alt.Scale(type="utc")
#: What the chart functions return: a single chart, a layer (e.g. bars + quantile rules), a facet or panels.
AnyChart = alt.Chart | alt.LayerChart | alt.FacetChart | alt.HConcatChart


def _time_x(field: str, span: pd.Timedelta) -> alt.X:
    """A UTC time axis whose labels suit ``span`` (Vega's default shows bare ".500" on sub-minute spans)."""
    axis = alt.Axis(labelOverlap=True)
    if span < pd.Timedelta("20s"):
        axis = alt.Axis(format="%H:%M:%S.%L", labelOverlap=True, tickCount=5, labelFlush=False)
    elif span < pd.Timedelta("1h"):
        axis = alt.Axis(format="%H:%M:%S", labelOverlap=True, tickCount=6, labelFlush=False)
    return alt.X(f"{field}:T", title="time (UTC)", scale=_UTC, axis=axis)


def _time_format(width: pd.Timedelta) -> str:
    """Tooltip time format for buckets of ``width`` (milliseconds only when buckets are sub-second)."""
    return "%Y-%m-%d %H:%M:%S.%L" if width < pd.Timedelta("1s") else "%Y-%m-%d %H:%M:%S"


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
