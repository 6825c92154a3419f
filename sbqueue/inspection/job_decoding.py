"""Job rows from raw hash fields: tolerant, column-wise decoding of HMGET replies into a typed ``jobs`` frame.

Numbers are parsed by numpy in one go (a bad value falls back to a per-item parse), JSON columns by the C
scanner with short texts shared; whatever is malformed becomes ``parse_error`` text on its row, never an
exception, so one broken job cannot hide the others.
"""

from __future__ import annotations

import json
import json.scanner
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sbqueue.inspection.query import Condition
from sbqueue.inspection.schemas import MAX_MS, build_frame, empty_frame

#: Job-hash fields read for a job row, in reply order.
FIELDS = (
    "name", "timestamp", "delay", "priority", "atm", "attemptsMade", "ats", "stc", "processedOn", "finishedOn",
    "progress", "failedReason", "returnvalue", "data", "opts", "pb", "parentKey", "rjk", "deid", "defa",
)  # fmt: skip
#: Position of each field in :data:`FIELDS` (and so in the columns of an HMGET reply).
FIELD_INDEX = {f: i for i, f in enumerate(FIELDS)}
_I = FIELD_INDEX  # short: the decoder below looks fields up often
_NAN = math.nan


def _floats(col: Sequence[Any], label: str, errors: list[Any]) -> np.ndarray:
    try:
        return np.array(col, dtype=np.float64)  # numpy parses the strings; None -> NaN
    except (ValueError, TypeError):
        out = np.full(len(col), _NAN)
        for i, v in enumerate(col):
            if v is None or v == "":
                continue
            try:
                out[i] = float(v)
            except (ValueError, TypeError):
                _err(errors, i, f"{label}: not a number: {str(v)[:40]!r}")
        return out


def _ints(arr: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.trunc(arr), nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)


def _err(errors: list[Any], i: int, msg: str) -> None:
    if errors[i] is None:
        errors[i] = [msg]
    else:
        errors[i].append(msg)


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _loads(raw: str) -> Any:
    """``json.loads`` without its per-call overhead (the C scanner); the slow path reports errors."""
    try:
        obj, end = _scan_once(raw, 0)
        if end == len(raw):
            return obj
    except (StopIteration, ValueError):
        pass
    except RecursionError:  # valid JSON nested deeper than Python's parser goes: reported as a parse error
        raise ValueError("nested too deeply to parse") from None
    return json.loads(raw)


def json_column(col: Sequence[Any], label: str, errors: list[Any], share: bool = False) -> list[Any]:
    """Parse a JSON column; ``share`` memoises short texts (same value object for equal texts)."""
    out: list[Any] = [None] * len(col)
    cache: dict[str, Any] = {}
    for i, raw in enumerate(col):
        if raw is None or raw == "":
            continue
        if share and len(raw) <= 64 and raw in cache:
            out[i] = cache[raw]
            continue
        try:
            out[i] = _loads(raw)
        except ValueError as exc:
            out[i] = raw
            _err(errors, i, f"{label}: invalid JSON ({exc})")
            continue
        if share and len(raw) <= 64:
            cache[raw] = out[i]
    return out


def _opts_col(col: Sequence[Any], errors: list[Any]) -> tuple[list[Any], list[int]]:
    cache: dict[str, tuple[Any, int, str | None]] = {}
    opts: list[Any] = []
    attempts: list[int] = []
    for i, raw in enumerate(col):
        if raw is None or raw == "":
            opts.append(None)
            attempts.append(1)
            continue
        hit = cache.get(raw)
        if hit is None:
            problem = None
            try:
                obj = _loads(raw)
            except ValueError as exc:
                obj, problem = raw, f"opts: invalid JSON ({exc})"
            if not isinstance(obj, dict):
                problem = problem or "opts: not a JSON object"
                att = 1
            else:
                value: Any = obj.get("attempts")
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                att = max(int(value), 1) if ok else 1
            hit = cache[raw] = (obj, att, problem)
        opts.append(hit[0])
        attempts.append(hit[1])
        if hit[2]:
            _err(errors, i, hit[2])
    return opts, attempts


def _merged(parsed: tuple[list[Any], list[Any]], errors: list[Any]) -> list[Any]:
    """Pre-parsed column values, their error messages added to ``errors`` (in decode order)."""
    values, problems = parsed
    for i, found in enumerate(problems):
        if found:
            for msg in found:
                _err(errors, i, msg)
    return values


def decode_columns(
    ids: Sequence[str],
    states: Sequence[str],
    status: Sequence[Any],
    cols: Sequence[Sequence[Any]],
    now_ms: int,
    data: tuple[list[Any] | None, list[Any]] | None = None,
    json_text: bool = False,
) -> dict[str, Any]:
    """Column-wise HMGET replies of :data:`FIELDS` (see :meth:`Context.hmget_columns`) -> the ``jobs`` columns
    as :func:`build_frame` takes them (timestamps as epoch ms); malformed values become ``parse_error`` text,
    never exceptions. ``data``: the ``data`` column already parsed by :func:`json_column` as ``(values,
    errors)``, aligned with ``ids``. ``json_text``: the JSON columns keep their stored text (still checked, so
    ``parse_error`` is the same) instead of the parsed values; ``data``'s values may then be None."""
    n = len(ids)
    errors: list[Any] = [None] * n
    for i, st in enumerate(status):
        if st == 1:
            continue
        if st == 0:
            _err(errors, i, "job hash missing (id is listed in a state key but the hash is gone)")
        else:
            _err(errors, i, f"job key unreadable: {str(st)[:80]}")
    ts = _floats(cols[_I["timestamp"]], "timestamp", errors)
    processed = _floats(cols[_I["processedOn"]], "processedOn", errors)
    finished = _floats(cols[_I["finishedOn"]], "finishedOn", errors)
    for arr, label in ((ts, "timestamp"), (processed, "processedOn"), (finished, "finishedOn")):
        with np.errstate(invalid="ignore"):
            for bad in np.flatnonzero(np.abs(arr) >= MAX_MS).tolist():
                _err(errors, bad, f"{label}: out of range: {arr[bad]!r}")
                arr[bad] = _NAN
    atm_raw = [a if a is not None else b for a, b in zip(cols[_I["atm"]], cols[_I["attemptsMade"]], strict=True)]
    opts, max_attempts = _opts_col(cols[_I["opts"]], errors)
    data_raw = cols[_I["data"]]
    data_bytes = [None if d is None else (len(d) if d.isascii() else len(d.encode())) for d in data_raw]
    # the order below is the order of the messages in parse_error (numbers, then progress, returnvalue, data)
    out: dict[str, Any] = {
        "id": list(ids),
        "name": cols[_I["name"]],
        "state": list(states),
        "priority": _ints(_floats(cols[_I["priority"]], "priority", errors)),
        "delay_ms": _ints(_floats(cols[_I["delay"]], "delay", errors)),
        "attempts_made": _ints(_floats(atm_raw, "atm", errors)),
        "attempts_started": _ints(_floats(cols[_I["ats"]], "ats", errors)),
        "stalled_count": _ints(_floats(cols[_I["stc"]], "stc", errors)),
        "max_attempts": np.asarray(max_attempts, dtype=np.int64),
        "timestamp": ts,
        "processed_on": processed,
        "finished_on": finished,
    }
    with np.errstate(invalid="ignore"):
        out["wait_s"] = (processed - ts) / 1000.0
        out["run_s"] = (finished - processed) / 1000.0
        out["age_s"] = (now_ms - ts) / 1000.0
    out["progress"] = json_column(cols[_I["progress"]], "progress", errors, share=True)
    out["failed_reason"] = cols[_I["failedReason"]]
    out["returnvalue"] = json_column(cols[_I["returnvalue"]], "returnvalue", errors, share=True)
    if data is None:
        out["data"] = json_column(data_raw, "data", errors)
    else:
        out["data"] = _merged((data[0] or [], data[1]), errors)
    out["data_bytes"] = data_bytes
    out["opts"] = opts
    if json_text:  # the stored text, as json_column reads it ("" is missing); checked above all the same
        for column, field in (("progress", "progress"), ("returnvalue", "returnvalue"), ("data", "data"),
                              ("opts", "opts")):  # fmt: skip
            out[column] = [None if v == "" else v for v in cols[_I[field]]]
    out["processed_by"] = cols[_I["pb"]]
    out["parent"] = cols[_I["parentKey"]]
    out["scheduler_id"] = cols[_I["rjk"]]
    out["dedup_id"] = cols[_I["deid"]]
    out["deferred_failure"] = cols[_I["defa"]]
    out["parse_error"] = [None if e is None else "; ".join(e) for e in errors]
    return out


def decode_jobs(
    ids: Sequence[str],
    states: Sequence[str],
    status: Sequence[Any],
    cols: Sequence[Sequence[Any]],
    now_ms: int,
    data: tuple[list[Any], list[Any]] | None = None,
) -> pd.DataFrame:
    """:func:`decode_columns` as a typed ``jobs`` frame (object columns hold the parsed JSON)."""
    n = len(ids)
    if n == 0:
        return empty_frame("jobs")
    return build_frame("jobs", decode_columns(ids, states, status, cols, now_ms, data), n)


def add_data_fields(df: pd.DataFrame, data_fields: Sequence[str] | None) -> pd.DataFrame:
    """Append ``data.<field>`` columns (dotted paths into the parsed data; object dtype)."""
    for field in data_fields or ():
        getter = Condition(f"data.{field}", None)
        df[f"data.{field}"] = pd.Series([getter.value(d) for d in df["data"].tolist()], index=df.index, dtype=object)
    return df
