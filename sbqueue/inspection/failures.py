"""Failed jobs grouped by error signature: normalised ``failedReason`` + the top stack frame."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from sbqueue.errors import InvalidOptionError
from sbqueue.inspection._context import BatchSizer, Context, row_bytes, to_ms
from sbqueue.inspection.jobs import state_ids
from sbqueue.inspection.query import compile_query
from sbqueue.inspection.schemas import from_records

_FIELDS = ("name", "failedReason", "stacktrace", "finishedOn", "timestamp", "pb", "rjk", "deid", "defa", "parentKey")
_RAW = {"name": 0, "failed_reason": 1, "finished_on": 3, "processed_by": 5, "scheduler_id": 6, "dedup_id": 7,
        "deferred_failure": 8, "parent": 9}  # fmt: skip

#: (pattern, placeholder) applied in order to a failedReason to get its signature
NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.I), "<hex>"),
    (re.compile(r"(?<![A-Za-z_<])-?\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)
_PY_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_JS_FRAME = re.compile(r"^\s*at (?:(.+?) \()?(.+?):(\d+):\d+\)?\s*$", re.M)


def normalise_reason(reason: str | None) -> str:
    """``"timeout after 5003 ms for job 42"`` -> ``"timeout after <n> ms for job <n>"``."""
    if not reason:
        return "(no failedReason)"
    text = reason.strip().splitlines()[0] if reason.strip() else reason
    for pattern, placeholder in NORMALISERS:
        text = pattern.sub(placeholder, text)
    return text.strip()[:200]


def top_frame(stacktrace: Any) -> str:
    """The innermost frame of the latest attempt's trace: ``"file.py:12 in fn"`` (Python or Node)."""
    if isinstance(stacktrace, list) and stacktrace:
        trace = str(stacktrace[-1])
    elif isinstance(stacktrace, str):
        trace = stacktrace
    else:
        return ""
    py = _PY_FRAME.findall(trace)
    if py:
        path, line, func = py[-1]
        return f"{path.rsplit('/', 1)[-1]}:{line} in {func}"
    js = _JS_FRAME.search(trace)
    if js:
        func, path, line = js.groups()
        return f"{path.rsplit('/', 1)[-1]}:{line} in {func or '<anonymous>'}"
    return ""


def failures(
    ctx: Context,
    queue: str,
    limit: int | None = None,
    name: Any = None,
    since: Any = None,
    until: Any = None,
    query: Mapping[str, Any] | None = None,
    examples: int = 5,
) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.failures`."""
    now = ctx.now_ms()
    lo, hi = to_ms(since, now_ms=now, option="since"), to_ms(until, now_ms=now, option="until")
    conds = compile_query(query, name)
    for cond in conds:
        if cond.column not in _RAW and cond.column != "id":
            raise InvalidOptionError(
                f"failures() can filter on {sorted(_RAW) + ['id']}, not {cond.key!r}; use jobs(states='failed')",
                option="query",
            )
    base = ctx.keys(queue).base
    sizer = BatchSizer()
    key_errors: list[tuple[str, str]] = []
    total, pages = state_ids(ctx, queue, "failed", sizer, lo, hi, key_errors)
    groups: dict[str, dict[str, Any]] = {}
    seen = 0
    bar = ctx.bar(total, f"failures {queue}")
    try:
        for page in pages:
            bar.update(len(page))
            rows = ctx.hmget_many(base, page, _FIELDS)
            sizer.feed(len(rows), row_bytes(rows))
            for job_id, row in zip(page, rows, strict=True):
                if not isinstance(row, list) or not any(row):
                    continue  # hash gone or unreadable: consistency() reports those
                if not all(c.test(job_id if c.column == "id" else row[_RAW[c.column]]) for c in conds):
                    continue
                _add(groups, job_id, row)
                seen += 1
                if limit is not None and seen >= limit:
                    break
            if limit is not None and seen >= limit:
                break
    finally:
        bar.close()
    records: list[dict[str, Any]] = [
        {"signature": "(failed set unreadable)", "count": 0, "names": [], "ids": [], "example_ids": [],
         "first_seen": math.nan, "last_seen": math.nan, "parse_error": problem} for _, problem in key_errors
    ]  # fmt: skip
    for g in sorted(groups.values(), key=lambda g: (-g["count"], g["signature"])):
        g["names"] = sorted(g["names"])
        g["example_ids"] = g["ids"][:examples]
        records.append(g)
    return from_records("failures", records)


def _add(groups: dict[str, dict[str, Any]], job_id: str, row: list[Any]) -> None:
    reason = row[1]
    problem = None
    try:
        stack = json.loads(row[2]) if row[2] else []
    except ValueError as exc:
        stack, problem = row[2], f"stacktrace: invalid JSON ({exc})"
    error = normalise_reason(reason)
    frame = top_frame(stack)
    signature = f"{error} @ {frame}" if frame else error
    try:
        finished = float(row[3]) if row[3] else math.nan
    except ValueError:
        finished, problem = math.nan, problem or f"finishedOn: not a number: {row[3][:40]!r}"
    group = groups.get(signature)
    if group is None:
        group = groups[signature] = {
            "signature": signature, "error": error, "top_frame": frame, "count": 0, "first_seen": math.nan,
            "last_seen": math.nan, "names": set(), "ids": [], "example_reason": reason, "parse_error": None,
        }  # fmt: skip
    group["count"] += 1
    group["ids"].append(job_id)
    group["names"].add(row[0] or "")
    if not math.isnan(finished):
        first, last = group["first_seen"], group["last_seen"]
        group["first_seen"] = finished if math.isnan(first) else min(first, finished)
        group["last_seen"] = finished if math.isnan(last) else max(last, finished)
    if problem and group["parse_error"] is None:
        group["parse_error"] = problem
