"""Read side of the widgets: the :class:`sbqueue.Inspector` when it is there, Queue getters otherwise.

Every function returns a DataFrame with the columns the panels draw (a subset of the Inspector's
schemas, so either source fits). The fallbacks only call read-only :class:`sbqueue.Queue` getters,
except queue discovery, which has no Queue method and SCANs for ``<prefix>:*:meta`` / ``:id`` keys.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from sbqueue.engine._sync.queue import Queue

#: Columns of a job page (Inspector.jobs names).
JOB_COLUMNS = ["id", "name", "state", "timestamp", "processed_on", "finished_on", "run_at", "attempts_made",
               "max_attempts", "delay_ms", "failed_reason"]  # fmt: skip
#: Columns of a failure group (Inspector.failures names).
FAILURE_COLUMNS = ["signature", "count", "first_seen", "last_seen", "names", "ids"]
#: Count columns of the queue overview.
COUNT_STATES = ["waiting", "active", "delayed", "prioritized", "waiting-children", "completed", "failed"]
#: Jobs read per pipeline when the fallbacks walk a state.
BATCH = 1000

_TS = ("timestamp", "processed_on", "finished_on")


def inspector(queue_or_client: Any, prefix: str | None = None) -> Any | None:
    """An ``Inspector`` on the same client and prefix, or None while the inspection SDK is missing."""
    try:
        module = importlib.import_module("sbqueue.inspection")
    except ImportError:
        return None
    cls = getattr(module, "Inspector", None)
    if cls is None:
        return None
    if isinstance(queue_or_client, Queue):
        client, prefix = queue_or_client.client, queue_or_client.prefix
    else:
        client, prefix = queue_or_client, prefix or "bull"
    # no tqdm bars from button callbacks: they would land in the log console, not the panel
    return cls(client, prefix, progress=False) if _accepts(cls, "progress") else cls(client, prefix)


def _accepts(fn: Any, *names: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(n in params for n in names) or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _utc(values: pd.Series) -> pd.Series:
    """Epoch ms / datetimes / None as ``datetime64[ns, UTC]`` (one resolution, so columns combine)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out = pd.to_datetime(values, unit="ms", utc=True)
    else:
        out = pd.to_datetime(values, utc=True)
    return out.astype("datetime64[ns, UTC]")


# --- jobs -------------------------------------------------------------------------------------------
def jobs_frame(jobs: Iterable[Any], state: str) -> pd.DataFrame:
    """Rows of :data:`JOB_COLUMNS` from :class:`sbqueue.Job` objects."""
    rows = [{
        "id": j.id, "name": j.name, "state": state, "timestamp": j.timestamp, "processed_on": j.processed_on,
        "finished_on": j.finished_on, "attempts_made": j.attempts_made, "max_attempts": j.max_attempts,
        "delay_ms": j.delay, "failed_reason": j.failed_reason,
    } for j in jobs]  # fmt: skip
    return normalise_jobs(pd.DataFrame(rows, columns=[c for c in JOB_COLUMNS if c != "run_at"]))


def normalise_jobs(df: pd.DataFrame) -> pd.DataFrame:
    """Make any jobs frame (Inspector or ours) fit :data:`JOB_COLUMNS` with UTC datetimes."""
    df = df.rename(columns={"job_id": "id"}).copy()
    for col in JOB_COLUMNS:
        if col not in df.columns:
            df[col] = None
    df["id"] = df["id"].astype(str)
    for col in _TS:
        df[col] = _utc(df[col])
    delay = pd.to_numeric(df["delay_ms"], errors="coerce").fillna(0)
    df["run_at"] = df["timestamp"] + pd.to_timedelta(delay, unit="ms")
    for col in ("attempts_made", "max_attempts"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype("int64")
    df["failed_reason"] = df["failed_reason"].astype("object").where(df["failed_reason"].notna(), None)
    return df[JOB_COLUMNS].reset_index(drop=True)


def list_jobs(queue: Queue, state: str, limit: int) -> tuple[pd.DataFrame, int]:
    """Up to ``limit`` jobs in ``state`` (newest first; delayed/prioritized next-to-run first) and the
    state's total count."""
    total = int(queue.get_job_counts(state)[state])
    insp = inspector(queue)
    if insp is not None and _accepts(insp.jobs, "states", "limit"):
        df = insp.jobs(queue.name, states=[state], limit=limit)
        if "id" in df.columns or "job_id" in df.columns:
            return order_jobs(normalise_jobs(df), state).head(limit), total
    asc = state in ("delayed", "prioritized")
    ids = queue.get_job_ids(state, 0, max(limit, 1) - 1, asc=asc)
    found: list[Any] = []
    for i in range(0, len(ids), BATCH):
        found += queue.get_jobs_by_ids(ids[i : i + BATCH])
    return order_jobs(jobs_frame(found, state), state), total


def order_jobs(df: pd.DataFrame, state: str) -> pd.DataFrame:
    """Delayed: next to run first; prioritized: as stored; others: most recent activity first."""
    if df.empty or state == "prioritized":
        return df
    if state == "delayed":
        return df.sort_values("run_at", kind="stable").reset_index(drop=True)
    latest = df["finished_on"].fillna(df["processed_on"]).fillna(df["timestamp"])
    return df.assign(_k=latest).sort_values("_k", ascending=False, kind="stable").drop(columns="_k")


def filter_jobs(df: pd.DataFrame, name: str = "", text: str = "", window_s: float | None = None) -> pd.DataFrame:
    """Name substring, error text (substring, or ``/regex/``), and "active in the last ``window_s``"."""
    mask = pd.Series(True, index=df.index)
    if name.strip():
        mask &= df["name"].fillna("").astype(str).str.contains(name.strip(), case=False, regex=False)
    if text.strip():
        pattern = text.strip()
        reasons = df["failed_reason"].fillna("").astype(str)
        if len(pattern) > 2 and pattern.startswith("/") and pattern.endswith("/"):
            mask &= reasons.str.contains(re.compile(pattern[1:-1], re.IGNORECASE), regex=True)
        else:
            mask &= reasons.str.contains(pattern, case=False, regex=False)
    if window_s:
        since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=window_s)
        latest = df["finished_on"].fillna(df["processed_on"]).fillna(df["timestamp"])
        mask &= latest >= since
    return df[mask]


# --- failures ---------------------------------------------------------------------------------------
_VOLATILE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"0x[0-9a-f]+", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]


def signature(reason: Any) -> str:
    """A failure's reason with ids, numbers and quoted values masked (for grouping)."""
    text = " ".join(str(reason or "(no reason)").split())
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text[:200]


def failure_groups(queue: Queue, limit: int) -> pd.DataFrame:
    """Failed jobs grouped by error signature, biggest group first (:data:`FAILURE_COLUMNS`)."""
    insp = inspector(queue)
    if insp is not None and hasattr(insp, "failures"):
        df = insp.failures(queue.name, limit=limit) if _accepts(insp.failures, "limit") else insp.failures(queue.name)
        if {"signature", "count"} <= set(df.columns) and ("ids" in df.columns or "example_ids" in df.columns):
            df = df.copy()
            if "ids" not in df.columns:  # only examples: not enough to act on a whole group
                return _fallback_failures(queue, limit)
            for col in ("first_seen", "last_seen"):
                df[col] = _utc(df[col]) if col in df.columns else pd.NaT
            if "names" not in df.columns:
                df["names"] = [[] for _ in range(len(df))]
            df["ids"] = df["ids"].map(lambda v: [str(x) for x in v] if v is not None else [])
            return df[FAILURE_COLUMNS].sort_values("count", ascending=False, kind="stable").reset_index(drop=True)
    return _fallback_failures(queue, limit)


def _fallback_failures(queue: Queue, limit: int) -> pd.DataFrame:
    jobs, _total = list_jobs(queue, "failed", limit)
    if jobs.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FAILURE_COLUMNS})
    jobs = jobs.assign(signature=jobs["failed_reason"].map(signature))
    groups = jobs.groupby("signature", sort=False).agg(
        count=("id", "size"), first_seen=("finished_on", "min"), last_seen=("finished_on", "max"),
        names=("name", lambda s: sorted(set(map(str, s)))), ids=("id", list),
    )  # fmt: skip
    return groups.reset_index()[FAILURE_COLUMNS].sort_values("count", ascending=False, kind="stable")


# --- queues -----------------------------------------------------------------------------------------
def discover_queues(client: Any, prefix: str) -> list[str]:
    """Names of the queues under ``prefix`` (SCAN for their ``meta``/``id`` keys; never KEYS)."""
    names: set[str] = set()
    for suffix in ("meta", "id"):
        for key in client.scan_iter(match=f"{prefix}:*:{suffix}", count=1000):
            key = key.decode() if isinstance(key, bytes) else key
            middle = key[len(prefix) + 1 : -(len(suffix) + 1)]
            if middle and ":" not in middle:
                names.add(middle)
    return sorted(names)


def queue_overview(client: Any, prefix: str) -> pd.DataFrame:
    """One row per queue: counts per state, paused, workers."""
    insp = inspector(client, prefix)
    if insp is not None and hasattr(insp, "queues"):
        df = insp.queues().rename(columns={"name": "queue", "waiting_children": "waiting-children"}).copy()
        if "queue" in df.columns:
            for col in [*COUNT_STATES, "workers"]:
                if col not in df.columns:
                    df[col] = 0
            df["paused"] = df["paused"].astype(bool) if "paused" in df.columns else False
            return df[["queue", *COUNT_STATES, "paused", "workers"]].reset_index(drop=True)
    rows = []
    for name in discover_queues(client, prefix):
        q = Queue(name, client, prefix)
        counts = q.get_job_counts(*COUNT_STATES)
        rows.append({"queue": name, **counts, "paused": q.is_paused(), "workers": len(q.get_workers())})
    return pd.DataFrame(rows, columns=["queue", *COUNT_STATES, "paused", "workers"])


# --- one job ----------------------------------------------------------------------------------------
def job_timeline(queue: Queue, job: Any) -> pd.DataFrame:
    """``ts``, ``event``, ``detail`` rows for one job: the Inspector's timeline, else from its hash."""
    insp = inspector(queue)
    if insp is not None and hasattr(insp, "timeline"):
        df = insp.timeline(queue.name, job.id)
        if {"ts", "event"} <= set(df.columns):
            out = df.copy()
            if "detail" not in out.columns:
                out["detail"] = ""
            return out[["ts", "event", "detail"]]
    rows = [(job.timestamp, "added", f"delay {job.delay} ms" if job.delay else ""),
            (job.processed_on, "processed", f"attempt {job.attempts_made or 1}"),
            (job.finished_on, "failed" if job.failed_reason else "finished", job.failed_reason or "")]  # fmt: skip
    df = pd.DataFrame([r for r in rows if r[0] is not None], columns=["ts", "event", "detail"])
    df["ts"] = _utc(df["ts"]) if not df.empty else pd.Series(dtype="datetime64[ns, UTC]")
    return df


def clean_candidates(queue: Queue, state: str, cutoff_ms: int, limit: int) -> list[tuple[str, int]]:
    """What ``queue.clean`` would remove at ``cutoff_ms``: ``(id, time_ms)`` oldest first, up to ``limit``.

    Same rule as the clean script: ``finishedOn`` for completed/failed (sorted, so the walk stops at the
    first newer job), ``processedOn`` or ``timestamp`` otherwise; active jobs a worker holds are kept by
    the script, so the real count may be lower for ``active``.
    """
    out: list[tuple[str, int]] = []
    sorted_by_time = state in ("completed", "failed")
    start = 0
    while len(out) < limit:
        ids = queue.get_job_ids(state, start, start + BATCH - 1, asc=True)
        if not ids:
            break
        start += len(ids)
        for job in queue.get_jobs_by_ids(ids):
            t = job.finished_on if sorted_by_time else (job.processed_on or job.timestamp)
            t = int(t or 0)
            if t <= cutoff_ms:
                out.append((job.id, t))
                if len(out) >= limit:
                    break
            elif sorted_by_time:
                return out
    return out
