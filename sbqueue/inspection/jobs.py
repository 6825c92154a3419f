"""Job rows: batched reads of job hashes, tolerant decoding, and the filtered scan behind jobs().

Filters run as close to the data as Redis allows without writing anything:

* ``since``/``until`` on completed/failed jobs are score ranges of the finished sets (server-side);
* filters on plain-text fields (``name``, ``failed_reason``, ``processed_by``, ``scheduler_id``,
  ``dedup_id``, ``parent``, ``deferred_failure``, ``id``) and the creation time of unfinished jobs are
  checked on a first, narrow read of just those fields; full hashes are read only for matches;
* the rest (``data.<path>``, numbers, ``returnvalue`` …) is checked batch by batch after decoding, and
  ``limit`` stops the scan as soon as enough rows matched.
"""

from __future__ import annotations

import json
import json.scanner
import math
import queue as _queue
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import redis

from .._core.states import STATE_KEYS, check_states
from ..errors import InvalidOptionError
from ._context import BatchSizer, Context, column_bytes, gc_paused, to_ms
from .query import JSON_COLUMNS, Condition, compile_query, late_mask
from .schemas import MAX_MS, SCHEMAS, build_frame, empty_frame

#: Job-hash fields read for a job row, in reply order.
FIELDS = (
    "name", "timestamp", "delay", "priority", "atm", "attemptsMade", "ats", "stc", "processedOn", "finishedOn",
    "progress", "failedReason", "returnvalue", "data", "opts", "pb", "parentKey", "rjk", "deid", "defa",
)  # fmt: skip
_I = {f: i for i, f in enumerate(FIELDS)}
#: Row order of jobs(): live states first, finished last.
STATE_ORDER = ("active", "waiting", "prioritized", "delayed", "waiting-children", "paused", "failed", "completed")
_FINISHED = ("completed", "failed")
_NAN = math.nan
_INT_COLUMNS = [c for c, dtype in SCHEMAS["jobs"].items() if dtype == "int64"]


# --- ids -----------------------------------------------------------------------------------------------
def state_ids(
    ctx: Context,
    queue: str,
    state: str,
    sizer: BatchSizer,
    since: float | None = None,
    until: float | None = None,
    errors: list[tuple[str, str]] | None = None,
) -> tuple[int, Iterator[list[str]]]:
    """``(total, pages of ids)`` of one state: newest first, except delayed/prioritized (next to run first).

    ``since``/``until`` (epoch ms) narrow completed/failed by their finish time, server-side. A state key
    holding the wrong type gives no ids and ``(state, problem)`` in ``errors`` instead of an exception.
    """
    suffix, kind = STATE_KEYS[state]
    key = ctx.keys(queue).key(suffix)
    client = ctx.client
    ascending = state in ("delayed", "prioritized")
    skip = 0
    try:
        if kind == "list":
            total = int(client.llen(key))
        elif state in _FINISHED and (since is not None or until is not None):
            lo = "-inf" if since is None else repr(float(since))
            hi = "+inf" if until is None else repr(float(until))
            total = int(client.zcount(key, lo, hi))
            skip = 0 if until is None else int(client.zcount(key, f"({float(until)!r}", "+inf"))
        else:
            total = int(client.zcard(key))
    except redis.ResponseError as exc:
        if errors is None:
            raise
        errors.append((state, f"{key} is unreadable as a {kind}: {exc}"))
        return 0, iter(())

    def pages() -> Iterator[list[str]]:
        done = 0
        while done < total:
            stop = skip + min(done + sizer.size, total) - 1
            try:
                if kind == "list":
                    page = client.lrange(key, skip + done, stop)
                else:
                    page = (client.zrange if ascending else client.zrevrange)(key, skip + done, stop)
            except redis.ResponseError as exc:  # the key changed type while we read it
                if errors is None:
                    raise
                errors.append((state, f"{key} became unreadable: {exc}"))
                return
            if not page:
                return
            done += len(page)
            yield page

    return total, pages()


# --- decoding ------------------------------------------------------------------------------------------
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


def _json_col(col: Sequence[Any], label: str, errors: list[Any], share: bool = False) -> list[Any]:
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


def decode_jobs(
    ids: Sequence[str],
    states: Sequence[str],
    status: Sequence[Any],
    cols: Sequence[Sequence[Any]],
    now_ms: int,
    data: tuple[list[Any], list[Any]] | None = None,
) -> pd.DataFrame:
    """Column-wise HMGET replies of :data:`FIELDS` (see :meth:`Context.hmget_columns`) -> a typed ``jobs``
    frame; malformed values become ``parse_error`` text, never exceptions. ``data``: the ``data`` column
    already parsed by :func:`_json_col` as ``(values, errors)``, both aligned with ``ids``."""
    n = len(ids)
    if n == 0:
        return empty_frame("jobs")
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
    with np.errstate(invalid="ignore"):
        frame = build_frame(
            "jobs",
            {
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
                "wait_s": (processed - ts) / 1000.0,
                "run_s": (finished - processed) / 1000.0,
                "age_s": (now_ms - ts) / 1000.0,
                "progress": _json_col(cols[_I["progress"]], "progress", errors, share=True),
                "failed_reason": cols[_I["failedReason"]],
                "returnvalue": _json_col(cols[_I["returnvalue"]], "returnvalue", errors, share=True),
                "data": _json_col(data_raw, "data", errors) if data is None else _merged(data, errors),
                "data_bytes": data_bytes,
                "opts": opts,
                "processed_by": cols[_I["pb"]],
                "parent": cols[_I["parentKey"]],
                "scheduler_id": cols[_I["rjk"]],
                "dedup_id": cols[_I["deid"]],
                "deferred_failure": cols[_I["defa"]],
                "parse_error": [None if e is None else "; ".join(e) for e in errors],
            },
            n,
        )
    return frame


def add_data_fields(df: pd.DataFrame, data_fields: Sequence[str] | None) -> pd.DataFrame:
    """Append ``data.<field>`` columns (dotted paths into the parsed data; object dtype)."""
    for field in data_fields or ():
        getter = Condition(f"data.{field}", None)
        df[f"data.{field}"] = pd.Series([getter.value(d) for d in df["data"].tolist()], index=df.index, dtype=object)
    return df


# --- jobs() --------------------------------------------------------------------------------------------
@gc_paused()
def jobs(
    ctx: Context,
    queue: str,
    states: str | Sequence[str] | None = None,
    limit: int | None = None,
    name: Any = None,
    since: Any = None,
    until: Any = None,
    query: Mapping[str, Any] | None = None,
    data_fields: Sequence[str] | None = None,
) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.jobs` (runs with the cyclic GC paused: see gc_paused)."""
    wanted = _states(states)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidOptionError(f"limit must be a non-negative int or None, got {limit!r}", option="limit")
    now = ctx.now_ms()
    lo, hi = to_ms(since, now_ms=now, option="since"), to_ms(until, now_ms=now, option="until")
    conds = compile_query(query, name)
    early = [c for c in conds if c.early]
    late = [c for c in conds if not c.early]
    base = ctx.keys(queue).base
    sizer = BatchSizer()
    key_errors: list[tuple[str, str]] = []
    sources = [(state, *state_ids(ctx, queue, state, sizer, lo, hi, key_errors)) for state in wanted]
    bar = ctx.bar(sum(total for _, total, _ in sources), f"jobs {queue}")

    def batches() -> Iterator[tuple[str, int, list[str], list[Any], list[list[Any]]]]:
        """(state, ids examined, ids kept, status, columns) per page: the Redis side of the scan."""
        for state, _total, pages in sources:
            time_early = state not in _FINISHED and (lo is not None or hi is not None)
            for page in pages:
                ids = _early_filter(ctx, base, page, state, early, lo if time_early else None,
                                    hi if time_early else None)  # fmt: skip
                if not ids:
                    yield state, len(page), [], [], []
                    continue
                status, cols = ctx.hmget_columns(base, ids, FIELDS)
                sizer.feed(len(ids), column_bytes(cols))
                yield state, len(page), ids, status, cols

    got = 0
    acc_ids: list[str] = []
    acc_states: list[str] = []
    acc_status: list[Any] = []
    acc_cols: list[list[Any]] = [[] for _ in FIELDS]
    acc_data: list[Any] = []
    acc_data_errors: list[Any] = []
    frames: list[pd.DataFrame] = []
    # Redis reads the next pages while this thread decodes the last ones (see _prefetched)
    reader = _prefetched(batches())
    try:
        for state, examined, ids, status, cols in reader:
            bar.update(examined)
            if not ids:
                continue
            if late:
                df = decode_jobs(ids, [state] * len(ids), status, cols, now)
                raw_json = {c: cols[_I[c]] for c in JSON_COLUMNS}
                df = df[late_mask(df, raw_json, late)]
                if limit is not None:
                    df = df.iloc[: limit - got]
                if len(df):
                    frames.append(df)
                got += len(df)
            else:
                take = len(ids) if limit is None else min(len(ids), limit - got)
                acc_ids += ids[:take]
                acc_states += [state] * take
                acc_status += status[:take]
                for acc, col in zip(acc_cols, cols, strict=True):
                    acc += col[:take]
                # the costliest column, parsed now: overlaps with Redis answering the next read
                problems: list[Any] = [None] * take
                acc_data += _json_col(cols[_I["data"]][:take], "data", problems)
                acc_data_errors += problems
                got += take
            if limit is not None and got >= limit:
                break
    finally:
        reader.close()  # stops and joins the reading thread before anything else uses the client
        bar.close()
    if late:
        out = pd.concat(frames, ignore_index=True) if frames else empty_frame("jobs")
    else:
        out = decode_jobs(acc_ids, acc_states, acc_status, acc_cols, now, data=(acc_data, acc_data_errors))
    if key_errors:  # a state key of the wrong type: one row saying so (no job id)
        bad = build_frame("jobs", {"state": [s for s, _ in key_errors], "parse_error": [e for _, e in key_errors],
                                   **{c: [0] * len(key_errors) for c in _INT_COLUMNS}})  # fmt: skip
        out = pd.concat([out, bad], ignore_index=True) if len(out) else bad
    return add_data_fields(out, data_fields)


_T = TypeVar("_T")
_END = object()


def _prefetched(items: Iterator[_T], depth: int = 2) -> Generator[_T, None, None]:
    """Iterate ``items`` in a helper thread, up to ``depth`` ahead of the consumer.

    The helper spends its time waiting on Redis (the socket wait releases the GIL), so the consumer's
    decoding overlaps with the next reads. The helper is the only user of the client while this runs; an
    error there is raised here, and stopping early (``break``, ``limit``, an exception) stops the helper
    after its current read — it is joined before this generator returns, so the client is free again.
    """
    handoff: _queue.Queue[tuple[str, Any]] = _queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.05)
                return True
            except _queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", _END)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)

    helper = threading.Thread(target=run, name="sbqueue-inspect-read", daemon=True)
    helper.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "item":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        helper.join()


def _states(states: str | Sequence[str] | None) -> list[str]:
    if states is None:
        return list(STATE_ORDER)
    names = ["waiting" if s == "wait" else s for s in check_states(states)]
    return list(dict.fromkeys(names))


def _early_filter(
    ctx: Context, base: str, ids: list[str], state: str, conds: Sequence[Condition], lo: float | None, hi: float | None
) -> list[str]:
    """Ids passing the cheap tests (id/state/raw text fields, creation time) on a narrow read."""
    if not conds and lo is None and hi is None:
        return ids
    fields = list(dict.fromkeys([c.raw_field for c in conds if c.raw_field] + ["timestamp"]))
    rows = ctx.hmget_many(base, ids, fields) if len(fields) > 1 or lo is not None or hi is not None else None
    keep = []
    for i, job_id in enumerate(ids):
        row = rows[i] if rows is not None else None
        values = dict(zip(fields, row, strict=True)) if isinstance(row, list) else {}
        ok = True
        for cond in conds:
            if cond.column == "id":
                value: Any = job_id
            elif cond.column == "state":
                value = state
            else:
                value = values.get(cond.raw_field or "")
            if not cond.test(value):
                ok = False
                break
        if ok and (lo is not None or hi is not None):
            try:
                ts = float(values.get("timestamp") or "nan")
            except ValueError:
                ts = _NAN
            ok = not math.isnan(ts) and (lo is None or ts >= lo) and (hi is None or ts <= hi)
        if ok:
            keep.append(job_id)
    return keep
