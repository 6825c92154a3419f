"""The async queue (hand-written source; ``sbqueue/engine/_sync/queue.py`` is generated from it).

:class:`AsyncQueue` composes the queue's mixins — adding jobs (``adding``), job schedulers (``schedulers``),
queue management (``admin``), per-job updates (``job_updates``), the read-only getters (``reads``), flow
methods (``parents``) and replaying dead letters (``dead_letters``) — and owns what they share: the
connection, the key names, the script runner and the queue's ``meta`` record.
Backup and restore of the queue start here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sbqueue._core import options as _opts
from sbqueue._core import prepare as _prep
from sbqueue._core.backup import BackupSummary, RestoreReport
from sbqueue._core.keys import QueueKeys
from sbqueue._version import __version__
from sbqueue.connection import clients
from sbqueue.connection import cluster as _cluster
from sbqueue.connection import full as _full
from sbqueue.engine._async.adding import AsyncQueueAdds
from sbqueue.engine._async.admin import AsyncQueueAdmin
from sbqueue.engine._async.backup import export_queues
from sbqueue.engine._async.dead_letters import AsyncQueueDeadLetters
from sbqueue.engine._async.job_updates import AsyncQueueJobUpdates
from sbqueue.engine._async.parents import AsyncQueueFlows
from sbqueue.engine._async.reads import AsyncQueueReads
from sbqueue.engine._async.restore import restore_backup, single_source
from sbqueue.engine._async.schedulers import AsyncQueueSchedulers
from sbqueue.engine.scripting import ScriptRunner
from sbqueue.engine.telemetry import Telemetry, checked_telemetry


class AsyncQueue(
    AsyncQueueAdds,
    AsyncQueueSchedulers,
    AsyncQueueAdmin,
    AsyncQueueJobUpdates,
    AsyncQueueReads,
    AsyncQueueFlows,
    AsyncQueueDeadLetters,
):
    """Producer and management API of one queue (BullMQ 6 layout).

    ``connection`` is None (``sbqueue.connect()``), a URL, or a redis client. ``default_job_options``
    (snake_case or BullMQ camelCase) apply to every add unless overridden.

    On Redis Cluster (a cluster client, or a URL of a cluster) every key of the queue must hash to one slot:
    put a ``{hash tag}`` in ``prefix`` (``"{bull}"``) or in ``name``, or :class:`ClusterKeyError` is raised here.

    ``min_replicas=n`` makes :meth:`add` and :meth:`add_bulk` wait (Redis ``WAIT``, up to ``replica_timeout``
    ms) until ``n`` replicas have the new jobs, else raise :class:`ReplicationTimeoutError` (the jobs exist on
    the master; retrying with the same ``job_id`` is safe). Without it, an add acknowledged just before the
    master dies can be lost at a Sentinel failover (asynchronous replication). For a single server or Sentinel
    (not Redis Cluster).

    A Redis that reached ``maxmemory`` (policy ``noeviction``) refuses adds: :class:`RedisFullError`, nothing
    written (see the ``redis-memory`` runbook).

    ``telemetry=sbqueue.OtelTelemetry(...)`` traces adds as BullMQ does and writes the trace context into each
    job's ``opts.tm`` (README, "Tracing"); off by default.
    """

    def __init__(
        self,
        name: str,
        connection: Any = None,
        prefix: str = "bull",
        default_job_options: Mapping[str, Any] | None = None,
        *,
        max_job_bytes: int = _opts.MAX_JOB_BYTES,
        max_len_events: int = 10_000,
        min_replicas: int = 0,
        replica_timeout: Any = 1_000,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.keys = QueueKeys(prefix, name)
        self.name = name
        self.prefix = prefix
        self.default_job_options = _prep.normalise_opts(default_job_options)
        _prep.prepare_job("default", None, self.default_job_options)  # validate now, not at the first add
        self.max_job_bytes = _opts.validate_count(max_job_bytes, "max_job_bytes", minimum=1, maximum=512 * 2**20)
        self.max_len_events = _opts.validate_count(max_len_events, "max_len_events", minimum=1)
        self.min_replicas = _opts.validate_count(min_replicas, "min_replicas", minimum=0, maximum=1_000)
        self.replica_timeout = _opts.to_ms(replica_timeout, "replica_timeout", allow_zero=False)
        self.telemetry = checked_telemetry(telemetry)
        self._client, self._owns_client = clients.async_client(connection)
        # on Redis Cluster every key of the queue must share one slot: refuse now, before any write
        _cluster.check_queue(self._client, self.keys, owned=self._owns_client, min_replicas=self.min_replicas)
        self._run = ScriptRunner(self._client, self.keys)
        self._meta_written = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} prefix={self.prefix!r}>"

    @property
    def client(self) -> Any:
        """The underlying redis client."""
        return self._client

    async def close(self) -> None:
        """Close the connections the queue made. A client passed in by the caller is left open (the caller
        closes it; redis-py cannot reopen a closed cluster client)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure_meta(self) -> None:
        # like Node's Queue constructor: record who writes here and the events stream length
        if not self._meta_written:
            meta = self.keys.key("meta")
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(meta, "version", f"sbqueue:{__version__}")
                pipe.hset(meta, "opts.maxLenEvents", self.max_len_events)  # as Node: the latest Queue's setting
                with _full.refused("the add"):  # Redis at maxmemory: RedisFullError, nothing written
                    await pipe.execute()
            self._meta_written = True

    # --- backup / restore (the logic lives in sbqueue/engine/_async/backup.py; format: docs/backup-format.md) ----
    async def export(
        self, path: Any, *, events: bool = False, pause: bool = False, pause_timeout: float = 30.0,
        progress: bool = False,
    ) -> BackupSummary:  # fmt: skip
        """Back up every key of this queue (jobs in every state with their logs and flow keys, schedulers,
        meta, id counter, dedup keys, limiter; the events stream when ``events``) into one gzip file.

        Read in short batches while producers and workers keep running: each job's state and data come from
        one atomic read, so a job appears once, in the state it had when its batch was read. ``pause=True``
        pauses the queue (unless it already is), waits up to ``pause_timeout`` s for active jobs to finish,
        and resumes it afterwards: then no job moves during the backup. ``progress`` shows a progress bar
        (tqdm; a widget in notebooks). Raises :class:`~sbqueue.errors.QueueNotFoundError` when the queue does
        not exist.
        """
        try:
            version = str((await self._client.info("server")).get("redis_version", ""))
        except Exception:  # informational only (e.g. a cluster client returns one reply per node)
            version = ""
        return await export_queues(
            self._client, self.prefix, [self.name], path, events=events, pause=pause, pause_timeout=pause_timeout,
            redis_version=version, progress=progress,
        )  # fmt: skip

    async def import_(
        self, path: Any, *, queue: str | None = None, overwrite: bool = False, dry_run: bool = False,
        events: bool = True, progress: bool = False,
    ) -> RestoreReport:  # fmt: skip
        """Restore a backup into this queue (its name and prefix; they may differ from the backup's: job keys
        inside values are rewritten). ``queue`` picks the backup's queue when the file holds several.

        States, ids, scores, priorities, delays, attempts and schedulers come back as they were; active jobs
        come back waiting (their locks are gone), and the marker is set so idle workers wake. Refuses with
        :class:`~sbqueue.errors.QueueExistsError` when this queue already has keys unless ``overwrite`` (which
        deletes them first). ``dry_run`` validates and reports what would be written without writing.
        A truncated, foreign or newer-version file raises before anything is written.
        """
        source = single_source(path, queue, self.name)
        return await restore_backup(
            self._client, path, prefix=self.prefix, queues={source: self.name}, overwrite=overwrite,
            dry_run=dry_run, events=events, progress=progress,
        )  # fmt: skip
