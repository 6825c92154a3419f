"""The public entry points: :class:`Inspector` (a prefix), :class:`QueueInspector` (one queue), :func:`bind`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .. import connection as _connection
from .._core.keys import validate_prefix, validate_queue_name
from .._core.options import validate_count
from ..errors import InvalidOptionError
from . import audit, consistency, events, failures, jobs, keyspace, queues, server, stalled
from ._context import Context

#: ACL rules for a read-only inspecting user, the same on Redis 6.2 and 7.x:
#: ``ACL SETUSER <name> reset on ><password> <INSPECTOR_ACL>``.
#:
#: * ``+@read`` covers every key read (SCAN, HMGET, LRANGE, XRANGE, MEMORY USAGE, ...); no write command
#:   is granted, so the user cannot change data.
#: * ``+ping +info`` are needed to connect (sbqueue checks the server version); ``+select`` only for db != 0.
#: * ``+client|list`` (workers, clients, queues), ``+slowlog|get`` (slowlog, alerts), ``+latency|latest
#:   +latency|doctor``, ``+memory|stats +memory|doctor`` (Redis 7 splits MEMORY; 6.2 has it in @read).
#: * not ``+config|get``: CONFIG GET also returns ``requirepass`` and ``masterauth`` (the admin password of a
#:   password-only server) and ACLs cannot grant it per setting. Without it config_audit reports "unknown" rows;
#:   add ``+config|get`` (``sbqueue.acl.INSPECTOR_CONFIG_RULE``) only where those settings hold no secret.
#: * ``+eval +evalsha`` run one read-only Lua script (HMGET only) per batch of jobs. ACL rules apply to
#:   commands inside scripts too, so this grants no write; without them job reads fall back to pipelines
#:   (same results, about 2x slower).
INSPECTOR_ACL = (
    "resetkeys ~* resetchannels -@all +@read +ping +select +info +client|list +slowlog|get +latency|latest "
    "+latency|doctor +memory|stats +memory|doctor +eval +evalsha"
)


def _count(value: Any, option: str, minimum: int, *, none_ok: bool = False) -> Any:
    """A user-given count: an int >= ``minimum`` (None when ``none_ok``), else :class:`InvalidOptionError`."""
    return None if value is None and none_ok else validate_count(value, option, minimum=minimum)


class Inspector:
    """Read-only pandas views of the queues under ``prefix`` and of their Redis.

    ``connection`` is None (``sbqueue.connect()``), a URL or a redis-py client; the inspector keeps its
    own connection pool (decoded replies, invalid UTF-8 replaced) on the same server. ``progress``
    shows tqdm bars (default: only inside Jupyter). Every method returns a :class:`pandas.DataFrame`
    whose columns and dtypes are declared in :data:`sbqueue.inspection.SCHEMAS` and hold for empty
    results; timestamps are UTC, durations float seconds (``*_s``). Parsed JSON values (``data``,
    ``opts``…) may be shared between rows: treat them as read-only.

    Redis Cluster (a cluster URL or a ``redis.cluster.RedisCluster``): discovery, ``bigkeys()`` and
    ``memory_by_queue()`` scan every master, ``workers()``/``clients()`` list every node's connections, and
    the server views (``info()``, ``slowlog()``, ``latency()``, ``memory()``, ``config_audit()``…) describe
    the first master.

    Example: ``Inspector("redis://localhost:6379/0").queues()``
    """

    def __init__(self, connection: Any = None, prefix: str = "bull", *, progress: bool | None = None) -> None:
        validate_prefix(prefix)
        base = _connection.coerce(connection)
        client = _connection.sync_twin(base, decode_responses=True, encoding_errors="replace")
        if connection is None or isinstance(connection, str):
            base.close()  # we made it only to resolve and check the URL
        self.prefix = prefix
        self._ctx = Context(client, prefix, progress=progress)

    def __repr__(self) -> str:
        return f"<Inspector prefix={self.prefix!r} url={_connection.mask_url(_connection.url_of(self.client))!r}>"

    @property
    def client(self) -> Any:
        """The inspector's own redis client."""
        return self._ctx.client

    def close(self) -> None:
        """Close the inspector's connections. Example: ``insp.close()``"""
        self._ctx.client.close()

    def __enter__(self) -> Inspector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def queue(self, name: str) -> QueueInspector:
        """The same views bound to one queue. Example: ``insp.queue("emails").jobs(states="failed")``"""
        return bind(self, name)

    # --- queues --------------------------------------------------------------------------------------
    def queues(self, window_min: int = 60) -> pd.DataFrame:
        """Every queue under the prefix (found by SCAN): counts per state, paused, global concurrency and
        rate limit, workers connected, oldest waiting job and its age, and the failure rate over the last
        ``window_min`` minutes of BullMQ metrics.

        Example: ``insp.queues().sort_values("waiting", ascending=False)``
        """
        return queues.queues(self._ctx, window_min=_count(window_min, "window_min", 1))

    def jobs(
        self,
        queue: str,
        states: str | Sequence[str] | None = None,
        limit: int | None = None,
        name: Any = None,
        since: Any = None,
        until: Any = None,
        query: Mapping[str, Any] | None = None,
        data_fields: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """One row per job (states default: all; live states first, each newest first except delayed and
        prioritized, which list the next to run first).

        * ``name``: a job name filter (same matching as ``query`` values).
        * ``since``/``until``: datetime, ISO string, epoch ms, or a ``timedelta`` back from now; the finish
          time for completed/failed jobs (a server-side range), the creation time for the others.
        * ``query``: ``{column or "data.<path>": test}``, all must hold. A test is a string (regex
          ``re.search``; an invalid regex is matched literally; on ``data``/``returnvalue``/``opts`` it
          searches the stored JSON text), a compiled pattern, a list/set (membership), a callable
          (predicate), None (missing) or any other value (equality). Paths reach into parsed JSON:
          ``{"data.customer.id": 42}``.
        * ``data_fields``: add a ``data.<field>`` column per dotted path.
        * ``limit``: stop after this many matching rows.

        Malformed hashes give a row with ``parse_error``; ids whose hash is gone give a row saying so.

        Example: ``insp.jobs("emails", "failed", query={"failed_reason": "timeout", "data.to": "@acme"})``
        """
        return jobs.jobs(self._ctx, queue, states, _count(limit, "limit", 0, none_ok=True), name, since, until, query,
                         data_fields)

    def failures(
        self,
        queue: str,
        limit: int | None = None,
        name: Any = None,
        since: Any = None,
        until: Any = None,
        query: Mapping[str, Any] | None = None,
        examples: int = 5,
    ) -> pd.DataFrame:
        """Failed jobs grouped by error signature (``failedReason`` with numbers, ids, uuids, times and
        emails normalised + the innermost frame of the last stack trace), biggest group first: count,
        first/last seen, job names, example ids and all ids. Filters as in :meth:`jobs` (text columns).

        Example: ``insp.failures("emails", since=timedelta(hours=1)).head()``
        """
        return failures.failures(self._ctx, queue, _count(limit, "limit", 0, none_ok=True), name, since, until, query,
                                 _count(examples, "examples", 0))

    def stalled(self, queue: str, max_stalled_count: int = 1) -> pd.DataFrame:
        """Every active job with its lock TTL, whether a worker that could hold it is connected,
        stalled count, attempts, ``processed_by`` and a verdict: ``processing``, ``lock lost — will be
        requeued``, ``orphaned`` (no lock, no worker) or ``hash missing``; ``detail`` explains it.

        Example: ``insp.stalled("emails").verdict.value_counts()``
        """
        return stalled.stalled(self._ctx, queue, _count(max_stalled_count, "max_stalled_count", 0))

    def events(self, queue: str, since: Any = None, count: int | None = None) -> pd.DataFrame:
        """The events stream as rows, oldest first: ``since`` (time, timedelta or stream id) reads forward
        from there; with only ``count``, the latest ``count`` events.

        Example: ``insp.events("emails", count=100).event.value_counts()``
        """
        return events.events(self._ctx, queue, since, _count(count, "count", 1, none_ok=True))

    def timeline(self, queue: str, job_id: str) -> pd.DataFrame:
        """One job's lifecycle: created/processed/finished from its hash, every event naming it, and its
        state now, in time order.

        Example: ``insp.timeline("emails", "42")``
        """
        if not isinstance(job_id, str) or not job_id:
            raise InvalidOptionError(f"job_id must be a non-empty string, got {job_id!r}", option="job_id")
        return events.timeline(self._ctx, queue, job_id)

    def metrics(self, queue: str) -> pd.DataFrame:
        """Per-minute completed/failed counts from BullMQ's metrics keys (every minute in the covered
        range; ``partial`` marks the current minute).

        Example: ``insp.metrics("emails").set_index("minute")[["completed", "failed"]].plot()``
        """
        return queues.metrics(self._ctx, queue)

    def workers(self, queue: str | None = None) -> pd.DataFrame:
        """Connected workers and event readers from CLIENT LIST (Node's base64 queue names and plain
        names). Unnamed connections (e.g. py-bullmq workers) cannot be attributed and are not listed.

        Example: ``insp.workers("emails")``
        """
        return queues.workers(self._ctx, queue)

    def schedulers(self, queue: str) -> pd.DataFrame:
        """Job schedulers: next run, pattern/every, iteration count, template, and whether the pending
        iteration's job exists.

        Example: ``insp.schedulers("reports")[["scheduler_id", "next_run", "iteration_count"]]``
        """
        return queues.schedulers(self._ctx, queue)

    def consistency(self, queue: str) -> pd.DataFrame:
        """fsck: ids whose hash is gone, hashes no state refers to, ids in two states, hash fields that
        contradict the state, marker/meta/scheduler problems — one row each with a suggested fix.

        Example: ``insp.consistency("emails").query("severity == 'error'")``
        """
        return consistency.consistency(self._ctx, queue)

    # --- Redis itself --------------------------------------------------------------------------------
    def info(self, section: str | None = None) -> pd.DataFrame:
        """INFO as rows (section, field, typed value, numeric value); nested values are flattened
        (``db0.keys``). Example: ``insp.info("memory").set_index("field").value``"""
        if section is not None and not isinstance(section, str):
            raise InvalidOptionError(f"section must be an INFO section name or None, got {section!r}", option="section")
        return server.info(self._ctx, section)

    def clients(self) -> pd.DataFrame:
        """CLIENT LIST, typed, with the queue/role of queue connections. Example: ``insp.clients()``"""
        return server.clients(self._ctx)

    def persistence(self) -> pd.DataFrame:
        """One row: RDB/AOF status, last save and its age, rewrite state. Example: ``insp.persistence().T``"""
        return server.persistence(self._ctx)

    def slowlog(self, n: int = 128) -> pd.DataFrame:
        """SLOWLOG GET n, with EVALSHA digests mapped to sbqueue script names. Example: ``insp.slowlog(20)``"""
        return server.slowlog(self._ctx, _count(n, "n", 0))

    def latency(self) -> pd.DataFrame:
        """LATENCY LATEST as rows; the LATENCY DOCTOR text is in ``df.attrs["doctor"]``.
        Example: ``print(insp.latency().attrs["doctor"])``"""
        return server.latency(self._ctx)

    def memory(self) -> pd.DataFrame:
        """MEMORY STATS as rows plus a ``doctor`` row (also ``df.attrs["doctor"]``).
        Example: ``insp.memory().set_index("metric").number``"""
        return server.memory(self._ctx)

    def commandstats(self) -> pd.DataFrame:
        """Per-command calls and time (with p50/p99 on Redis 7+), most time first.
        Example: ``insp.commandstats().head(10)``"""
        return server.commandstats(self._ctx)

    def bigkeys(self, match: str = "*", top: int = 50, sample: int | None = None) -> pd.DataFrame:
        """The ``top`` keys by MEMORY USAGE among keys matching ``match`` (or the first ``sample`` keys
        scanned): key, type, length, bytes, ttl, queue and role. ``df.attrs["scanned"]`` = keys examined.
        Example: ``insp.bigkeys(top=20)``"""
        if not isinstance(match, str):
            raise InvalidOptionError(f"match must be a glob pattern (str), got {match!r}", option="match")
        return keyspace.bigkeys(self._ctx, match, _count(top, "top", 1), _count(sample, "sample", 1, none_ok=True))

    def memory_by_queue(self) -> pd.DataFrame:
        """Bytes and keys per queue and key role under the prefix, biggest first.
        Example: ``insp.memory_by_queue().groupby("queue").bytes.sum()``"""
        return keyspace.memory_by_queue(self._ctx)

    def config_audit(self) -> pd.DataFrame:
        """Settings a queue Redis needs (eviction policy, persistence, limits, slow log…) and per-queue
        events length and retention: scope, setting, value, recommended, severity, why.
        Example: ``insp.config_audit().query("severity != 'ok'")``"""
        return audit.config_audit(self._ctx)

    def alerts(self, window_s: float = 10) -> pd.DataFrame:
        """The seed guide's 10 Redis alerts (+ persistence, evictions) and queue alerts, evaluated now;
        rates come from two INFO samples ``window_s`` apart. Example: ``insp.alerts(2).query("firing")``"""
        return audit.alerts(self._ctx, window_s)

    @staticmethod
    def export(df: pd.DataFrame, path: str | Path) -> Path:
        """Write ``df`` as CSV, Parquet, JSON or JSON lines (by suffix); see :func:`export`.
        Example: ``Inspector.export(df, "failed.parquet")``"""
        return export(df, path)


class QueueInspector:
    """An :class:`Inspector`'s queue views bound to one queue (same methods, no ``queue`` argument)."""

    def __init__(self, inspector: Inspector, name: str) -> None:
        self.inspector = inspector
        self.name = validate_queue_name(name)

    def __repr__(self) -> str:
        return f"<QueueInspector {self.name!r} prefix={self.inspector.prefix!r}>"

    def summary(self, window_min: int = 60) -> pd.DataFrame:
        """This queue's :meth:`Inspector.queues` row. Example: ``qi.summary()``"""
        return queues.queues(self.inspector._ctx, window_min=window_min, names=[self.name])

    def jobs(self, states: str | Sequence[str] | None = None, limit: int | None = None, name: Any = None,
             since: Any = None, until: Any = None, query: Mapping[str, Any] | None = None,
             data_fields: Sequence[str] | None = None) -> pd.DataFrame:  # fmt: skip
        """See :meth:`Inspector.jobs`. Example: ``qi.jobs("failed", limit=100)``"""
        return self.inspector.jobs(self.name, states, limit, name, since, until, query, data_fields)

    def failures(self, limit: int | None = None, name: Any = None, since: Any = None, until: Any = None,
                 query: Mapping[str, Any] | None = None, examples: int = 5) -> pd.DataFrame:  # fmt: skip
        """See :meth:`Inspector.failures`. Example: ``qi.failures().head()``"""
        return self.inspector.failures(self.name, limit, name, since, until, query, examples)

    def stalled(self, max_stalled_count: int = 1) -> pd.DataFrame:
        """See :meth:`Inspector.stalled`. Example: ``qi.stalled()``"""
        return self.inspector.stalled(self.name, max_stalled_count)

    def events(self, since: Any = None, count: int | None = None) -> pd.DataFrame:
        """See :meth:`Inspector.events`. Example: ``qi.events(count=50)``"""
        return self.inspector.events(self.name, since, count)

    def timeline(self, job_id: str) -> pd.DataFrame:
        """See :meth:`Inspector.timeline`. Example: ``qi.timeline("42")``"""
        return self.inspector.timeline(self.name, job_id)

    def metrics(self) -> pd.DataFrame:
        """See :meth:`Inspector.metrics`. Example: ``qi.metrics().tail(60)``"""
        return self.inspector.metrics(self.name)

    def workers(self) -> pd.DataFrame:
        """See :meth:`Inspector.workers`. Example: ``qi.workers()``"""
        return self.inspector.workers(self.name)

    def schedulers(self) -> pd.DataFrame:
        """See :meth:`Inspector.schedulers`. Example: ``qi.schedulers()``"""
        return self.inspector.schedulers(self.name)

    def consistency(self) -> pd.DataFrame:
        """See :meth:`Inspector.consistency`. Example: ``qi.consistency()``"""
        return self.inspector.consistency(self.name)


def bind(inspector: Inspector, queue_name: str) -> QueueInspector:
    """An inspector's queue views for one queue. Example: ``bind(Inspector(r), "emails").stalled()``"""
    return QueueInspector(inspector, queue_name)


def _jsonable(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    return json.dumps(value, ensure_ascii=False, default=str)


def export(df: pd.DataFrame, path: str | Path) -> Path:
    """Write an inspection frame to ``.csv``, ``.parquet``, ``.json`` (records) or ``.jsonl``; object
    columns (parsed JSON, id lists) are stored as JSON text for CSV/Parquet. Returns the path.

    Example: ``export(insp.jobs("emails", "failed"), "failed.csv")``
    """
    path = Path(path)
    suffix = path.suffix.lower()
    out = df.copy()
    if suffix in (".csv", ".parquet"):
        for col in out.columns:
            if out[col].dtype == object:
                out[col] = out[col].map(_jsonable).astype("string")
    if suffix == ".csv":
        out.to_csv(path, index=False)
    elif suffix == ".parquet":
        out.to_parquet(path, index=False)
    elif suffix in (".json", ".jsonl"):
        out.to_json(path, orient="records", lines=suffix == ".jsonl", date_format="iso", date_unit="ms",
                    default_handler=str)  # fmt: skip
    else:
        raise InvalidOptionError(f"export supports .csv, .parquet, .json and .jsonl, not {suffix!r}", option="path")
    return path
