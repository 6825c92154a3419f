"""The public entry points: :class:`Inspector` (a prefix), :class:`QueueInspector` (one queue), :func:`bind`.

:class:`Inspector` holds the connection and its lifecycle; its views come from two mixins, the queue views
(:mod:`.queue_views`) and the Redis server views (:mod:`.server_views`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sbqueue import connection as _connection
from sbqueue._core.keys import validate_prefix, validate_queue_name
from sbqueue.connection import clients
from sbqueue.errors import ConfigurationError, InvalidOptionError
from sbqueue.inspection import queues
from sbqueue.inspection._context import Context
from sbqueue.inspection.queue_views import QueueViews
from sbqueue.inspection.server_views import ServerViews

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
#:   add ``+config|get`` (``sbqueue.ops.acl.INSPECTOR_CONFIG_RULE``) only where those settings hold no secret.
#: * ``+eval +evalsha`` run one read-only Lua script (HMGET only) per batch of jobs. ACL rules apply to
#:   commands inside scripts too, so this grants no write; without them job reads fall back to pipelines
#:   (same results, about 2x slower).
INSPECTOR_ACL = (
    "resetkeys ~* resetchannels -@all +@read +ping +select +info +client|list +slowlog|get +latency|latest "
    "+latency|doctor +memory|stats +memory|doctor +eval +evalsha"
)


class Inspector(QueueViews, ServerViews):
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

    def __init__(self, connection: Any = None, prefix: str = "bull", *, progress: bool | None = None,
                 history: Any = None) -> None:
        validate_prefix(prefix)
        self.history_path = history  # a dataset written by `sbqueue record` (see history())
        client = clients.sync_client(connection, **clients.DECODED).client  # always its own pool
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

    def history(self, path: Any = None, **storage_options: Any) -> Any:
        """The recorded history (:class:`sbqueue.History`) of ``path``, else of the ``history=`` given to the
        inspector, else of ``$SBQUEUE_HISTORY``: what Redis has forgotten (``sbqueue record`` writes it).

        Example: ``Inspector(history="/data/history").history().jobs("emails", since=timedelta(hours=2))``
        """
        import os

        from sbqueue.inspection.history import History

        path = path or self.history_path or os.environ.get("SBQUEUE_HISTORY")
        if not path:
            raise ConfigurationError("no history dataset: pass Inspector(history=PATH) or set SBQUEUE_HISTORY")
        return History(path, storage_options or None)

    def queue(self, name: str) -> QueueInspector:
        """The same views bound to one queue. Example: ``insp.queue("emails").jobs(states="failed")``"""
        return bind(self, name)

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
             data_fields: Sequence[str] | None = None, *,
             dtype_backend: str | None = None) -> pd.DataFrame:  # fmt: skip
        """See :meth:`Inspector.jobs`. Example: ``qi.jobs("failed", limit=100)``"""
        return self.inspector.jobs(self.name, states, limit, name, since, until, query, data_fields,
                                   dtype_backend=dtype_backend)  # fmt: skip

    def failures(self, limit: int | None = None, name: Any = None, since: Any = None, until: Any = None,
                 query: Mapping[str, Any] | None = None, examples: int = 5) -> pd.DataFrame:  # fmt: skip
        """See :meth:`Inspector.failures`. Example: ``qi.failures().head()``"""
        return self.inspector.failures(self.name, limit, name, since, until, query, examples)

    def dead_letters(self, limit: int | None = None) -> pd.DataFrame:
        """See :meth:`Inspector.dead_letters`. Example: ``q.inspector.dead_letters()`` on a DLQ"""
        return self.inspector.dead_letters(self.name, limit)

    def stalled(self, max_stalled_count: int = 1) -> pd.DataFrame:
        """See :meth:`Inspector.stalled`. Example: ``qi.stalled()``"""
        return self.inspector.stalled(self.name, max_stalled_count)

    def flow(self, job_id: str, depth: int = 10) -> pd.DataFrame:
        """See :meth:`Inspector.flow`. Example: ``qi.flow(root_id)``"""
        return self.inspector.flow(self.name, job_id, depth)

    def flows(self, limit: int | None = None) -> pd.DataFrame:
        """See :meth:`Inspector.flows`. Example: ``qi.flows().query("stuck.notna()")``"""
        return self.inspector.flows(self.name, limit)

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
