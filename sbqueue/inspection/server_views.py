"""The Redis views of :class:`sbqueue.inspection.Inspector`: INFO, clients, persistence, slow log, latency,
memory, command stats, big keys, memory per queue, the configuration audit and alerts.

A mixin: each method checks its arguments and hands the inspector's :class:`Context` to :mod:`.server`,
:mod:`.keyspace` or :mod:`.audit`, which build the frame.
"""

from __future__ import annotations

import pandas as pd

from sbqueue.errors import InvalidOptionError
from sbqueue.inspection import audit, keyspace, server
from sbqueue.inspection._context import Context, count_option


class ServerViews:
    """Views of the Redis server behind the queues; mixed into :class:`sbqueue.inspection.Inspector`."""

    _ctx: Context

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
        return server.slowlog(self._ctx, count_option(n, "n", 0))

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
        top, sample = count_option(top, "top", 1), count_option(sample, "sample", 1, none_ok=True)
        return keyspace.bigkeys(self._ctx, match, top, sample)

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
