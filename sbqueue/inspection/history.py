"""Reading a recorded dataset: :class:`History` (events, job attempts, percentiles, rates, comparisons, gaps)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from sbqueue._core.keys import validate_queue_name
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection._context import to_ms
from sbqueue.inspection.history_store import DATASET_SCHEMA, FILE_SCHEMA, PARTITION_SCHEMA, Store, hour_of, open_fs

log = logging.getLogger("sbqueue.history")

_TERMINAL = ("completed", "failed", "stalled")
_ATTEMPT_COLUMNS = ["queue", "job_id", "name", "attempt", "added", "ready", "started", "finished", "wait_s",
                    "run_s", "outcome", "failed_reason", "worker"]


def _window(since: Any, until: Any) -> tuple[float | None, float | None]:
    now = time.time() * 1000
    lo = to_ms(since, now_ms=int(now), option="since")
    hi = to_ms(until, now_ms=int(now), option="until")
    if lo is not None and hi is not None and hi < lo:
        raise InvalidOptionError(f"until ({until!r}) is before since ({since!r})", option="until")
    return lo, hi


class History:
    """A recorded queue history (written by :class:`sbqueue.Recorder` / ``sbqueue record``).

    ``path`` is a folder or an fsspec URL. Every method reads only the hour partitions its window needs and
    filters row groups by time (predicate pushdown). Times are UTC; ``since``/``until`` take a datetime, an
    ISO string, epoch ms or a ``timedelta`` back from now. Unreadable files (corrupt, foreign, an
    incompatible schema) are skipped, logged, and listed by :meth:`problems`.

    Example::

        h = sbqueue.History("/data/history")
        h.jobs("emails", since="2026-12-03 14:00", until="2026-12-03 14:20")
        h.percentiles("emails", by=["name"], freq="1min")
    """

    def __init__(self, path: Any, storage_options: dict[str, Any] | None = None) -> None:
        self.path = str(path)
        self.fs, self.root = open_fs(path, storage_options)
        self.store = Store(self.fs, self.root)
        self._problems: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<History {self.path!r}>"

    # --- raw access -----------------------------------------------------------------------------------
    def queues(self) -> list[str]:
        """The queues recorded in the dataset."""
        return self.store.queues()

    def problems(self) -> pd.DataFrame:
        """Files skipped so far (foreign names, unreadable or incompatible Parquet) and why."""
        self.store.queues()  # lists the top folder: its foreign entries
        rows = [{"path": p, "problem": "not a file of this dataset (ignored)"} for p in sorted(self.store.foreign)]
        rows += [{"path": p, "problem": why} for p, why in sorted(self._problems.items())]
        return pd.DataFrame(rows, columns=["path", "problem"])

    def _files(self, queues: Sequence[str], lo: float | None, hi: float | None) -> list[str]:
        first = hour_of(int(lo)) if lo is not None else None
        last = hour_of(int(hi)) if hi is not None else None
        return [f.path for q in queues for f in self.store.iter_files(q, first, last) if f.path not in self._problems]

    def table(self, queue: str | Sequence[str] | None = None, since: Any = None, until: Any = None,
              filter: Any = None, columns: Sequence[str] | None = None, *, sort: bool = True) -> pa.Table:
        """The rows of ``queue`` (a name, names, or None for all) with ``since <= ts < until`` as an Arrow
        table, sorted by queue and stream id; ``filter`` is an extra ``pyarrow.dataset`` expression."""
        lo, hi = _window(since, until)
        names = self.queues() if queue is None else [queue] if isinstance(queue, str) else list(queue)
        for name in names:
            validate_queue_name(name)
        expr = ds.scalar(True)
        if lo is not None:
            expr = expr & (ds.field("ts") >= pa.scalar(int(math.ceil(lo)), pa.timestamp("ms", tz="UTC")))
        if hi is not None:
            expr = expr & (ds.field("ts") < pa.scalar(int(math.ceil(hi)), pa.timestamp("ms", tz="UTC")))
        if filter is not None:
            expr = expr & filter
        cols = None if columns is None else list(dict.fromkeys([*columns, "queue", "ts", "id_seq"]))
        files = self._files(names, lo, hi)
        try:
            try:
                table = self._scan(files, expr, cols)
            except (OSError, pa.ArrowException):  # a compaction may have replaced files since the listing
                files = self._files(names, lo, hi)
                table = self._scan(files, expr, cols)
        except (OSError, pa.ArrowException) as exc:  # a bad file: find it, skip it, report it
            log.warning("history: reading %d files failed (%s); reading them one by one", len(files), exc)
            parts = []
            for path in files:
                try:
                    parts.append(self._scan([path], expr, cols))
                except (OSError, pa.ArrowException) as one:
                    self._problems[path] = f"unreadable: {one}"
                    log.error("history: skipping %s: %s", path, one)
            schema = DATASET_SCHEMA if cols is None else pa.schema([DATASET_SCHEMA.field(c) for c in cols])
            table = pa.concat_tables(parts) if parts else schema.empty_table()
        if sort and table.num_rows:
            table = table.sort_by([("queue", "ascending"), ("ts", "ascending"), ("id_seq", "ascending")])
        return table

    def _scan(self, files: list[str], expr: Any, columns: list[str] | None) -> pa.Table:
        if not files:
            schema = DATASET_SCHEMA if columns is None else pa.schema([DATASET_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        dataset = ds.dataset(files, schema=DATASET_SCHEMA, format="parquet", filesystem=self.fs,
                             partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
                             partition_base_dir=self.root)
        return dataset.to_table(columns=columns, filter=expr)

    # --- events and attempts --------------------------------------------------------------------------
    def events(self, queue: str | Sequence[str] | None = None, since: Any = None, until: Any = None, *,
               event: str | Sequence[str] | None = None, job_id: str | None = None,
               name: str | None = None) -> pd.DataFrame:
        """The recorded events stream entries (one row each, oldest first), optionally only some events,
        one job or one job name. Example: ``h.events("emails", since=timedelta(hours=1), event="failed")``"""
        expr = None
        if event is not None:
            expr = ds.field("event").isin([event] if isinstance(event, str) else list(event))
        if job_id is not None:
            e = ds.field("job_id") == str(job_id)
            expr = e if expr is None else expr & e
        if name is not None:
            e = ds.field("job_name") == name
            expr = e if expr is None else expr & e
        df = self.table(queue, since, until, filter=expr).to_pandas()
        return df[[*DATASET_SCHEMA.names[-2:], *FILE_SCHEMA.names]].reset_index(drop=True)

    def jobs(self, queue: str, since: Any = None, until: Any = None, *, name: str | Sequence[str] | None = None,
             margin: Any = "1h") -> pd.DataFrame:
        """One row per job attempt started in ``[since, until)``: ``added`` (the job's creation), ``ready``
        (when it last became waiting), ``started``, ``finished``, ``wait_s`` = started - ready, ``run_s`` =
        finished - started, ``outcome``, ``attempt``, ``failed_reason``, ``worker``. ``outcome`` is
        ``completed``, ``failed`` (final), ``retried`` (moved back to wait: a failed attempt with attempts left),
        ``delayed`` (moved to delayed: a failed attempt with a backoff, or a job that delayed itself),
        ``stalled``, or None while running or when its end lies beyond ``until + margin``. Events up to ``margin``
        before/after the window are read to find each attempt's start and end.

        Example: ``h.jobs("emails", "2026-12-03 14:00", "2026-12-03 14:20", name="send")``
        """
        lo, hi = _window(since, until)
        pad = pd.Timedelta(margin).total_seconds() * 1000
        ev = self.table(queue, None if lo is None else lo - pad, None if hi is None else hi + pad,
                        filter=ds.field("event").isin(["added", "waiting", "active", "delayed", *_TERMINAL]),
                        columns=["event", "prev", "job_id", "job_name", "attempt", "failed_reason", "worker",
                                 "job_timestamp"], sort=False)
        out = _attempts(ev)
        if lo is not None:
            out = out[out["started"] >= pd.Timestamp(int(lo), unit="ms", tz="UTC")]
        if hi is not None:
            out = out[out["started"] < pd.Timestamp(int(hi), unit="ms", tz="UTC")]
        if name is not None:
            out = out[out["name"].isin([name] if isinstance(name, str) else list(name))]
        return out.reset_index(drop=True)

    # --- analysis -------------------------------------------------------------------------------------
    def percentiles(self, queue: str, since: Any = None, until: Any = None, *, by: Sequence[str] = ("name",),
                    freq: str = "1min", q: Sequence[float] = (0.5, 0.95, 0.99), metric: str = "run_s"
                    ) -> pd.DataFrame:
        """Percentiles of ``metric`` (``run_s`` or ``wait_s``) of the attempts started in each ``freq`` bucket,
        per ``by`` columns: columns ``time``, the ``by`` columns, ``count``, ``p50``, ``p95``, ... .

        Example: ``h.percentiles("emails", since=timedelta(days=1), by=["name"], freq="5min")``
        """
        if metric not in ("run_s", "wait_s"):
            raise InvalidOptionError(f"metric must be 'run_s' or 'wait_s', got {metric!r}", option="metric")
        for value in q:
            if not 0 <= value <= 1:
                raise InvalidOptionError(f"percentiles must be within [0, 1], got {value!r}", option="q")
        jobs = self.jobs(queue, since, until)
        jobs = jobs[jobs[metric].notna()].assign(time=lambda d: d["started"].dt.floor(freq))
        keys = ["time", *by]
        names = [f"p{round(v * 100, 3):g}".replace(".", "_") for v in q]
        if jobs.empty:
            return pd.DataFrame(columns=[*keys, "count", *names])
        grouped = jobs.groupby(keys, sort=True, observed=True)[metric]
        out = grouped.quantile(np.asarray(q, dtype=float)).unstack()
        out.columns = names
        out.insert(0, "count", grouped.size())
        return out.reset_index()

    def throughput(self, queue: str, since: Any = None, until: Any = None, *, freq: str = "1min",
                   by: Sequence[str] = ()) -> pd.DataFrame:
        """Attempts finished per ``freq`` bucket: ``completed``, ``failed``, ``stalled``, ``total``,
        ``failure_rate`` (failed / (completed + failed)), per ``by`` columns.

        Example: ``h.throughput("emails", since=timedelta(hours=6), freq="5min")``
        """
        ev = self.events(queue, since, until, event=list(_TERMINAL))
        ev = ev.rename(columns={"job_name": "name"}).assign(time=lambda d: d["ts"].dt.floor(freq))
        keys = ["time", *by]
        counts = ev.groupby([*keys, "event"], observed=True).size().unstack("event", fill_value=0)
        for col in _TERMINAL:
            if col not in counts:
                counts[col] = 0
        counts = counts[list(_TERMINAL)].astype("int64")
        counts.columns.name = None
        counts["total"] = counts.sum(axis=1)
        done = counts["completed"] + counts["failed"]
        counts["failure_rate"] = (counts["failed"] / done.where(done > 0)).astype("float64")
        return counts.reset_index()

    def failure_rate(self, queue: str, since: Any = None, until: Any = None, *, freq: str = "1min",
                     by: Sequence[str] = ()) -> pd.Series:
        """failed / (completed + failed) per ``freq`` bucket (a Series indexed by time [and ``by``])."""
        t = self.throughput(queue, since, until, freq=freq, by=by)
        return t.set_index(["time", *by])["failure_rate"]

    def compare(self, queue: str, window_a: tuple[Any, Any], window_b: tuple[Any, Any], *,
                by: Sequence[str] = ("name",), metric: str = "run_s") -> pd.DataFrame:
        """Before/after: per ``by`` group, attempts, median and p95 of ``metric`` and failure rate in each
        window, ``slowdown`` (median ratio b/a), ``effect`` (Cliff's delta of ``metric``, -1..1: the share of
        pairs where b is slower minus the share where it is faster; |d| >= 0.474 is large), and
        ``failure_rate_diff`` with its two-proportion ``failure_z``. Sorted by effect, largest first.

        Example: ``h.compare("emails", ("2026-12-03 13:00", "2026-12-03 14:00"), ("2026-12-03 14:00", None))``
        """
        a = self.jobs(queue, *window_a)
        b = self.jobs(queue, *window_b)
        keys = list(by)
        rows = []
        groups = set(map(tuple, a[keys].astype(object).itertuples(index=False))) | set(
            map(tuple, b[keys].astype(object).itertuples(index=False)))
        for key in sorted(groups, key=str):
            ga = a[(a[keys].astype(object) == list(key)).all(axis=1)]
            gb = b[(b[keys].astype(object) == list(key)).all(axis=1)]
            xa, xb = ga[metric].dropna().to_numpy(float), gb[metric].dropna().to_numpy(float)
            fa, fb = _rate(ga), _rate(gb)
            row = dict(zip(keys, key, strict=True))
            row.update({
                "n_a": len(ga), "n_b": len(gb),
                "median_a": float(np.median(xa)) if len(xa) else math.nan,
                "median_b": float(np.median(xb)) if len(xb) else math.nan,
                "p95_a": float(np.quantile(xa, 0.95)) if len(xa) else math.nan,
                "p95_b": float(np.quantile(xb, 0.95)) if len(xb) else math.nan,
                "effect": _cliffs_delta(xa, xb),
                "failure_rate_a": fa[0], "failure_rate_b": fb[0],
                "failure_rate_diff": fb[0] - fa[0], "failure_z": _two_proportion_z(fa, fb),
            })
            row["slowdown"] = row["median_b"] / row["median_a"] if row["median_a"] else math.nan
            rows.append(row)
        cols = [*keys, "n_a", "n_b", "median_a", "median_b", "slowdown", "p95_a", "p95_b", "effect",
                "failure_rate_a", "failure_rate_b", "failure_rate_diff", "failure_z"]
        out = pd.DataFrame(rows, columns=cols)
        return out.sort_values("effect", ascending=False, na_position="last").reset_index(drop=True)

    def gaps(self, queue: str | None = None) -> pd.DataFrame:
        """The holes the recorder could not prevent (the stream was trimmed before it read them): ``queue``,
        ``ts``, ``gap_from``, ``gap_to``, ``lost_estimate`` (null when Redis cannot tell: 6.2)."""
        t = self.table(queue, filter=ds.field("event") == "gap",
                       columns=["gap_from", "gap_to", "lost_estimate"]).to_pandas()
        return t[["queue", "ts", "gap_from", "gap_to", "lost_estimate"]].reset_index(drop=True)


def _rate(group: pd.DataFrame) -> tuple[float, int]:
    done = group["outcome"].isin(["completed", "failed"])
    n = int(done.sum())
    return (float((group["outcome"] == "failed").sum() / n) if n else math.nan), n


def _two_proportion_z(a: tuple[float, int], b: tuple[float, int]) -> float:
    (pa_, na), (pb, nb) = a, b
    if not na or not nb:
        return math.nan
    pooled = (pa_ * na + pb * nb) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    return (pb - pa_) / se if se else 0.0


def _cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """P(b > a) - P(b < a) over all pairs, from ranks (O(n log n))."""
    if not len(a) or not len(b):
        return math.nan
    ranks = pd.Series(np.concatenate([a, b])).rank().to_numpy()
    u_b = ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2
    return float(2 * u_b / (len(a) * len(b)) - 1)


def _attempts(table: pa.Table) -> pd.DataFrame:
    """Pair each ``active`` entry with the first entry of the same job that ends the attempt (completed,
    failed, stalled, delayed, or waiting with prev=active) before the job's next ``active``. Vectorised over
    integer job codes (numpy), so a day of one queue (millions of entries) takes seconds."""
    table = table.filter(pc.is_valid(table["job_id"]))
    if table.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(_ATTEMPT_COLUMNS, [
            "object", "object", "object", "Int64", "datetime64[ms, UTC]", "datetime64[ms, UTC]",
            "datetime64[ms, UTC]", "datetime64[ms, UTC]", "float64", "float64", "object", "object", "object"],
            strict=True)})
    codes = table["job_id"].combine_chunks().dictionary_encode()
    job = codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ts = table["ts"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    seq = pc.fill_null(table["id_seq"], 0).combine_chunks().to_numpy(zero_copy_only=False)
    order = np.lexsort((seq, ts, job))
    job, ts = job[order], ts[order]

    def codes_of(name: str, values: Sequence[str]) -> list[np.ndarray]:
        """Per value, a boolean mask of the rows (sorted) whose column ``name`` equals it."""
        enc = table[name].combine_chunks().dictionary_encode()
        words = enc.dictionary.to_pylist()
        idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)[order]
        return [idx == words.index(v) if v in words else np.zeros(len(idx), dtype=bool) for v in values]

    is_active, is_added, is_waiting, is_delayed, *is_terminal = codes_of(
        "event", ["active", "added", "waiting", "delayed", *_TERMINAL])
    (prev_active,) = codes_of("prev", ["active"])
    n = len(job)
    new_job = np.ones(n, dtype=bool)
    new_job[1:] = job[1:] != job[:-1]
    group_start = np.maximum.accumulate(np.where(new_job, np.arange(n), 0))
    active_cum = np.cumsum(is_active)
    segment = active_cum - (active_cum[group_start] - is_active[group_start])  # actives so far in this job

    def ffill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Last valid value at or before each row, within the job (-1 when none)."""
        idx = np.maximum.accumulate(np.where(valid, np.arange(n), -1))
        return np.where(idx >= group_start, values[np.maximum(idx, 0)], -1)

    ready = ffill(ts, is_added | is_waiting)
    added = ffill(ts, is_added)
    ending = (np.logical_or.reduce(is_terminal) | is_delayed | (is_waiting & prev_active)) & (segment > 0)
    key = job * (n + 1) + segment  # nondecreasing along the sorted rows
    end_rows = np.flatnonzero(ending)
    end_keys, first = np.unique(key[end_rows], return_index=True)  # the first end of each attempt
    starts = np.flatnonzero(is_active)
    pos = np.minimum(np.searchsorted(end_keys, key[starts]), max(len(end_keys) - 1, 0))
    has_end = (len(end_keys) > 0) & (end_keys[pos] == key[starts]) if len(end_keys) else np.zeros(len(starts), bool)
    ends = np.where(has_end, end_rows[first[pos]] if len(end_keys) else 0, 0)

    def col(name: str, rows: np.ndarray) -> np.ndarray:
        return np.asarray(table[name].take(pa.array(order[rows])).to_pylist(), dtype=object)

    name_valid = pc.is_valid(table["job_name"]).to_numpy(zero_copy_only=False)[order]
    named_rows = np.flatnonzero(name_valid)
    named_jobs, first_named = np.unique(job[named_rows], return_index=True)
    name_of_job = dict(zip(named_jobs.tolist(), col("job_name", named_rows[first_named]).tolist(), strict=True))
    event_words = np.asarray(["completed", "failed", "stalled", "delayed", "retried", None], dtype=object)
    end_kind = np.select([is_terminal[0], is_terminal[1], is_terminal[2], is_delayed, is_waiting], [0, 1, 2, 3, 4], 5)
    job_ts = table["job_timestamp"].combine_chunks().cast(pa.int64()).take(pa.array(order[starts])).to_numpy(
        zero_copy_only=False).astype("float64")
    dictionary = np.asarray(codes.dictionary.to_pylist(), dtype=object)
    added_s = added[starts].astype("float64")
    added_s[added_s < 0] = np.nan
    added_s = np.where(np.isnan(added_s), job_ts, added_s)
    ready_s = ready[starts].astype("float64")
    ready_s[ready_s < 0] = np.nan
    ready_s = np.where(np.isnan(ready_s), added_s, ready_s)
    started = ts[starts].astype("float64")
    finished = np.where(has_end, ts[ends], np.nan).astype("float64")
    none = np.array(None, dtype=object)
    outcome = np.where(has_end, event_words[end_kind[ends]], none)
    att_start, att_end = col("attempt", starts), col("attempt", ends)
    wrk_start, wrk_end = col("worker", starts), col("worker", ends)
    att = np.where(att_start != none, att_start, np.where(has_end, att_end, none))
    wrk = np.where(wrk_start != none, wrk_start, np.where(has_end, wrk_end, none))

    def stamp(ms: np.ndarray) -> pd.Series:
        return pd.Series(pd.to_datetime(ms, unit="ms", utc=True)).astype("datetime64[ms, UTC]")

    queue = table["queue"][0].as_py() if "queue" in table.column_names else None
    out = pd.DataFrame({
        "queue": queue, "job_id": dictionary[job[starts]],
        "name": [name_of_job.get(j) for j in job[starts].tolist()],
        "attempt": pd.array(att, dtype="Int64"),
        "added": stamp(added_s), "ready": stamp(ready_s), "started": stamp(started), "finished": stamp(finished),
        "wait_s": (started - ready_s) / 1000, "run_s": (finished - started) / 1000,
        "outcome": outcome, "failed_reason": np.where(has_end, col("failed_reason", ends), none), "worker": wrk,
    })
    return out.sort_values(["started", "job_id"], kind="stable").reset_index(drop=True)
