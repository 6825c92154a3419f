"""Human units for report text: bytes as KB/MB, durations as "850 ms"/"3 min", times as 24-hour UTC (and local).

Every value that reaches a report goes through :func:`cell_text`, which never lets a missing value (``None``,
``NaN``, ``NaT``, ``pd.NA``) or a negative zero through as text: those read as "—". :func:`column_kind` picks the
unit of a column from its dtype and name (``*_s`` seconds, ``bytes`` sizes, datetimes and ``*_on`` epoch ms).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

#: what a missing value reads as
MISSING = "—"

_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB")


def is_missing(value: Any) -> bool:
    """True for ``None``, ``NaN``, ``NaT`` and ``pd.NA`` (and nothing else: not ``0``, ``""`` or a list)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    return False


#: how pandas/Python spell a missing value inside a sentence, and a negative zero
_MISSING_WORDS = re.compile(r"<NA>|\bNaN\b|\bnan\b|\bNaT\b|\bNone\b")
_NEGATIVE_ZERO = re.compile(r"(?<![\w.])-0(\.0+)?(?![\d.])")


def tidy(text: str) -> str:
    """Prose from elsewhere (evidence strings, causes) without ``None``/``NaN``/``NaT``/``<NA>`` or ``-0.0``."""
    return _NEGATIVE_ZERO.sub("0", _MISSING_WORDS.sub(MISSING, text))


def _number(value: float) -> str:
    if value == 0:
        return "0"  # also -0.0
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def human_bytes(n: Any) -> str:
    """``1536`` → ``"1.5 KB"`` (powers of 1024, as Redis's ``used_memory_human``)."""
    if is_missing(n):
        return MISSING
    size = float(n)
    for unit in _BYTE_UNITS:
        if abs(size) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{_number(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: Any) -> str:
    """``0.85`` → ``"850 ms"``, ``42`` → ``"42 s"``, ``180`` → ``"3 min"``, ``7200`` → ``"2 h"``, days as ``"3 d"``."""
    if is_missing(seconds):
        return MISSING
    if isinstance(seconds, (dt.timedelta, pd.Timedelta)):
        seconds = seconds.total_seconds()
    s = float(seconds)
    sign, s = ("-" if s < 0 else ""), abs(s)
    if s == 0:
        return "0 s"
    if s < 1:
        text = f"{s * 1000:.3g} ms"
    elif s < 90:
        text = f"{s:.3g} s"
    elif s < 90 * 60:
        text = f"{s / 60:.0f} min"
    elif s < 48 * 3600:
        text = f"{s / 3600:.1f} h".replace(".0 h", " h")
    else:
        text = f"{s / 86400:.1f} d".replace(".0 d", " d")
    return sign + text


def to_utc(value: Any) -> pd.Timestamp | None:
    """A datetime, Timestamp, ISO string or epoch milliseconds as a UTC Timestamp (None when missing)."""
    if is_missing(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        ts = pd.Timestamp(float(value), unit="ms", tz="UTC")
    else:
        ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def human_time(value: Any) -> str:
    """``"2026-12-05 14:03:07 UTC"``, followed by ``" (15:03:07 local)"`` when this machine's clock is not UTC."""
    ts = to_utc(value)
    if ts is None:
        return MISSING
    text = ts.strftime("%Y-%m-%d %H:%M:%S UTC")
    local = dt.datetime.fromtimestamp(ts.timestamp()).astimezone()
    if local.utcoffset() != dt.timedelta(0):
        fmt = "%H:%M:%S" if local.date() == ts.date() else "%Y-%m-%d %H:%M:%S"
        text += f" ({local.strftime(fmt)} {time.strftime('%Z') or 'local'})"
    return text


#: column names (without a unit suffix) that hold epoch milliseconds
_TIME_NAMES = ("timestamp", "first_seen", "last_seen", "time", "when", "since", "until")
_BYTE_NAMES = ("bytes", "memory", "used_memory", "size")


def column_kind(name: Any, series: pd.Series) -> str:
    """How a column's values read: ``"time"``, ``"duration"``, ``"bytes"``, ``"percent"`` (a fraction),
    ``"bool"``, ``"number"`` or ``"text"``, from its dtype and its name (``wait_s`` seconds, ``bytes`` sizes,
    ``finished_on`` epoch ms)."""
    col = str(name).lower()
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "time"
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        return "duration"
    if pd.api.types.is_bool_dtype(series.dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(series.dtype):
        if col.endswith(("_s", "_seconds")) or col in ("age", "ttl", "duration"):
            return "duration"
        if col in _BYTE_NAMES or col.endswith(("_bytes", "bytes")):
            return "bytes"
        if col in ("share", "failure_rate") or col.endswith(("_share", "_pct_of_1")):
            return "percent"
        if col.endswith(("_on", "_at", "_ms_epoch")) or col in _TIME_NAMES:
            return "time"
        return "number"
    return "text"


def cell_text(value: Any, kind: str = "text") -> str:
    """One value as report text in the unit of its column ``kind`` (see :func:`column_kind`)."""
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        items: Iterable[Any] = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        parts = [cell_text(v, kind) for v in items if not is_missing(v)]
        return ", ".join(parts) if parts else MISSING
    if is_missing(value):
        return MISSING
    if kind == "time":
        return human_time(value)
    if kind == "duration":
        return human_duration(value)
    if kind == "bytes":
        return human_bytes(value)
    if kind == "percent" and isinstance(value, (int, float, np.integer, np.floating)):
        return f"{float(value) * 100:.1f}%".replace("-0.0%", "0.0%")
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _number(float(value))
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return human_time(value)
    if isinstance(value, (dt.timedelta, pd.Timedelta)):
        return human_duration(value)
    text = tidy(str(value))
    return text if text.strip() else MISSING


def header_text(name: Any, kind: str) -> str:
    """A column header for people: ``wait_s`` → ``wait``, ``finished_on`` → ``finished``, ``_`` → space."""
    col = str(name)
    if kind == "duration" and col.endswith("_s"):
        col = col[:-2]
    elif kind == "time" and col.endswith(("_on", "_at")):
        col = col[:-3]
    return col.replace("_", " ")


def shorten(values: Any, items: int = 4, width: int = 60) -> str:
    """A long argument list for a table cell: the first ``items`` values, each at most ``width`` characters, and
    how much was left out in words ("(+12 more)", "(2,048 chars)") — never a bare ellipsis."""
    if is_missing(values):
        return MISSING
    seq = list(values) if isinstance(values, (list, tuple, np.ndarray)) else [values]
    parts = []
    for v in seq[:items]:
        text = v.decode(errors="replace") if isinstance(v, bytes) else str(v)
        parts.append(text if len(text) <= width else f"{text[:width]} ({len(text):,} chars)")
    more = f" (+{len(seq) - items:,} more)" if len(seq) > items else ""
    return " ".join(parts) + more
