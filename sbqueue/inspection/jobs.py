"""The filtered scan behind jobs(): which ids each state holds, which of them match, and their rows.

Rows are decoded by :mod:`sbqueue.inspection.job_decoding`; Redis is read one page ahead of the decoding
(:mod:`sbqueue.inspection.read_ahead`).

Filters run as close to the data as Redis allows without writing anything:

* ``since``/``until`` on completed/failed jobs are score ranges of the finished sets (server-side);
* filters on plain-text fields (``name``, ``failed_reason``, ``processed_by``, ``scheduler_id``,
  ``dedup_id``, ``parent``, ``deferred_failure``, ``id``) and the creation time of unfinished jobs are
  checked on a first, narrow read of just those fields; full hashes are read only for matches;
* the rest (``data.<path>``, numbers, ``returnvalue`` …) is checked batch by batch after decoding, and
  ``limit`` stops the scan as soon as enough rows matched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import redis

from sbqueue._core.states import STATE_KEYS, check_states
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection._context import BatchSizer, Context, column_bytes, gc_paused, to_ms
from sbqueue.inspection.arrow_frames import ArrowJobRows, arrow_table, check_backend, nullable
from sbqueue.inspection.job_decoding import FIELD_INDEX, FIELDS, add_data_fields, decode_jobs, json_column
from sbqueue.inspection.query import JSON_COLUMNS, Condition, compile_query, late_mask
from sbqueue.inspection.read_ahead import read_ahead
from sbqueue.inspection.schemas import SCHEMAS, build_frame, empty_frame

#: Row order of jobs(): live states first, finished last.
STATE_ORDER = ("active", "waiting", "prioritized", "delayed", "waiting-children", "paused", "failed", "completed")
_FINISHED = ("completed", "failed")
_NAN = math.nan
_INT_COLUMNS = [c for c, dtype in SCHEMAS["jobs"].items() if dtype == "int64"]
#: ids per read at most: a script call reading 20 fields of 1000 hashes took ~10 ms of Redis time (p99 ~20 ms)
#: on a loaded 2-core VM, 500 take half that at the same total speed — headroom under the 50 ms per call budget
JOB_BATCH = 500


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
    dtype_backend: str | None = None,
) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.jobs` (runs with the cyclic GC paused: see gc_paused)."""
    backend = check_backend(dtype_backend)
    wanted = _states(states)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidOptionError(f"limit must be a non-negative int or None, got {limit!r}", option="limit")
    now = ctx.now_ms()
    lo, hi = to_ms(since, now_ms=now, option="since"), to_ms(until, now_ms=now, option="until")
    conds = compile_query(query, name)
    early = [c for c in conds if c.early]
    late = [c for c in conds if not c.early]
    base = ctx.keys(queue).base
    sizer = BatchSizer(maximum=JOB_BATCH)
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
    # dtype_backend="pyarrow": rows go to Arrow tables a chunk at a time instead of the lists above
    arrow = ArrowJobRows(now, data_fields) if backend == "pyarrow" else None
    # Redis reads the next pages while this thread decodes the last ones (see read_ahead)
    reader = read_ahead(batches())
    try:
        for state, examined, ids, status, cols in reader:
            bar.update(examined)
            if not ids:
                continue
            if late:
                df = decode_jobs(ids, [state] * len(ids), status, cols, now)
                raw_json = {c: cols[FIELD_INDEX[c]] for c in JSON_COLUMNS}
                keep = np.flatnonzero(late_mask(df, raw_json, late))
                if limit is not None:
                    keep = keep[: limit - got]
                if arrow is not None:
                    pick = keep.tolist()
                    arrow.add([ids[i] for i in pick], state, [status[i] for i in pick],
                              [[col[i] for i in pick] for col in cols])  # fmt: skip
                elif len(keep):
                    frames.append(df.iloc[keep])
                got += len(keep)
            elif arrow is not None:
                take = len(ids) if limit is None else min(len(ids), limit - got)
                arrow.add(ids[:take], state, status[:take], [col[:take] for col in cols])
                got += take
            else:
                take = len(ids) if limit is None else min(len(ids), limit - got)
                acc_ids += ids[:take]
                acc_states += [state] * take
                acc_status += status[:take]
                for acc, col in zip(acc_cols, cols, strict=True):
                    acc += col[:take]
                # the costliest column, parsed now: overlaps with Redis answering the next read
                problems: list[Any] = [None] * take
                acc_data += json_column(cols[FIELD_INDEX["data"]][:take], "data", problems)
                acc_data_errors += problems
                got += take
            if limit is not None and got >= limit:
                break
    finally:
        reader.close()  # stops and joins the reading thread before anything else uses the client
        bar.close()
    # a state key of the wrong type: one row saying so (no job id)
    bad_rows = {"state": [s for s, _ in key_errors], "parse_error": [e for _, e in key_errors],
                **{c: [0] * len(key_errors) for c in _INT_COLUMNS}}  # fmt: skip
    if arrow is not None:
        if key_errors:
            arrow.add_table(arrow_table("jobs", bad_rows, len(key_errors)))
        return arrow.frame()
    if late:
        out = pd.concat(frames, ignore_index=True) if frames else empty_frame("jobs")
    else:
        out = decode_jobs(acc_ids, acc_states, acc_status, acc_cols, now, data=(acc_data, acc_data_errors))
    if key_errors:
        bad = build_frame("jobs", bad_rows, len(key_errors))
        out = pd.concat([out, bad], ignore_index=True) if len(out) else bad
    out = add_data_fields(out, data_fields)
    return nullable(out, "jobs") if backend == "numpy_nullable" else out


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
