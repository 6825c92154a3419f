"""Turning an input frame into chart data: column checks, UTC timestamps, time buckets, units and short labels.

Inputs are aggregated in pandas *before* charting (time buckets, histogram bins, top-N), so a 100k-row frame still
gives a spec of a few kilobytes: :func:`_freq` picks the finest time bucket that stays under :data:`MAX_BUCKETS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

#: Most time buckets a time-series chart draws; finer data is summed into coarser buckets.
MAX_BUCKETS = 240
_FREQS = ("100ms", "250ms", "500ms", "1s", "5s", "10s", "30s", "1min", "5min", "15min", "30min", "1h", "3h", "6h",
          "12h", "1D", "7D")  # fmt: skip
_TIME_COLUMNS = ("ts", "minute", "time", "timestamp", "finished_on", "last_seen")


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


def _span(times: pd.Series) -> pd.Timedelta:
    span = times.max() - times.min() if len(times) else pd.Timedelta(0)
    return span if pd.notna(span) else pd.Timedelta(0)


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
