"""The recorder: tails every queue's events stream and appends it to a Parquet dataset (``sbqueue record``).

One loop, one thread. Each pass reads, in one ``MULTI`` (so nothing is trimmed between the two), ``XINFO
STREAM`` and the next page of entries of every queue, enriches ``active``/``completed``/``failed`` entries from
their job hashes (one read-only script call per queue and page — the inspector's batched ``HMGET`` — or a
pipeline where scripts are refused), and buffers rows per queue and hour. The buffer is flushed to one file per
queue and hour when it holds ``max_rows`` rows or is ``flush_interval`` seconds old; while a flush fails
(permission, full disk, object store down) reading stops, so memory stays bounded and nothing is skipped.

The position per queue is the highest stream id in the dataset's file names (see
:mod:`sbqueue.inspection.history_store`), so a recorder killed at any moment resumes with no gap and no
duplicate. When the stream was trimmed past that position the recorder writes a ``gap`` row (from, to, entries
lost: counted on Redis 7 once the recorder has caught up with the stream since it started, else unknown, as
always on 6.2), logs a warning, and :meth:`sbqueue.History.gaps` lists it. Nothing is ever written to Redis.
Standalone Redis only (the ``MULTI`` spans every queue's stream).

Rows are built in :mod:`.recorder_rows`, per-queue progress and the status file live in :mod:`.recorder_state`,
and finished hours are compacted by :mod:`.recorder_compaction`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import redis

from sbqueue._core.keys import _glob_escape, validate_prefix, validate_queue_name
from sbqueue.connection import clients
from sbqueue.errors import ConfigurationError, ConnectionFailedError, InvalidOptionError
from sbqueue.inspection.history_store import FILE_SCHEMA, Store, format_id, hour_of, open_fs, parse_id
from sbqueue.ops import recorder_compaction
from sbqueue.ops.recorder_rows import ENRICH, EntryRows, int_field, read_job_hashes
from sbqueue.ops.recorder_state import QueueProgress, read_prior_gaps, write_status

log = logging.getLogger("sbqueue.history")

class Recorder:
    """Record the events streams of the queues under ``prefix`` into a Parquet dataset at ``path``.

    * ``connection``: None (``sbqueue.connect()``), a URL or a redis-py client (standalone Redis).
    * ``path``: a folder or an fsspec URL (``s3://bucket/history``); Hive-partitioned by ``queue`` and ``hour``.
    * ``queues``: names to record (default: every queue found, re-scanned every ``discovery_interval`` s).
    * ``data_fields``: dotted paths of job ``data`` kept with terminal events (when the hash still exists).
    * ``start``: where a queue never recorded before starts: ``"begin"`` (oldest entry kept) or ``"now"``.
    * ``storage_options``: passed to fsspec (credentials, ``endpoint_url``...; the usual environment variables
      such as ``AWS_ENDPOINT_URL`` work too).
    * ``max_rows``/``flush_interval``: a file per queue and hour is written when this many rows are buffered
      or the oldest is this old; ``compact_interval``: seconds between compactions of finished hours.

    Example::

        rec = sbqueue.Recorder("redis://localhost:6379", "bull", "/data/history")
        rec.run()                 # until rec.stop() or Ctrl-C; rec.run_once() does one pass
    """

    def __init__(
        self,
        connection: Any = None,
        prefix: str = "bull",
        path: Any = "history",
        *,
        queues: Sequence[str] | None = None,
        data_fields: Sequence[str] = (),
        start: str = "begin",
        page: int = 1000,
        max_rows: int = 20_000,
        flush_interval: float = 10.0,
        discovery_interval: float = 30.0,
        compact_interval: float = 300.0,
        poll_ms: int = 1000,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        validate_prefix(prefix)
        if start not in ("begin", "now"):
            raise InvalidOptionError(f"start must be 'begin' or 'now', got {start!r}", option="start")
        for name, value, low in (("page", page, 1), ("max_rows", max_rows, 1), ("poll_ms", poll_ms, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidOptionError(f"{name} must be an int >= {low}, got {value!r}", option=name)
        self.prefix = prefix
        self.client = clients.sync_client(connection, **clients.DECODED).client
        self.fs, self.root = open_fs(path, storage_options)
        self.store = Store(self.fs, self.root)
        self.path = str(path)
        self.fixed = [validate_queue_name(q) for q in queues] if queues else None
        self.data_fields = list(data_fields)
        self.start = start
        self.page = page
        self.max_rows = max_rows
        self.flush_interval = flush_interval
        self.discovery_interval = discovery_interval
        self.compact_interval = compact_interval
        self.poll_ms = poll_ms
        self.queues: dict[str, QueueProgress] = {}
        self._rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._buffered = 0
        self._oldest = 0.0
        self._discovered = -1e18
        self._discovered_once = False
        self._scripts = True
        self._compacted_hours: set[tuple[str, str]] = set()
        self._compacted = time.monotonic()
        self._stopped = False
        self._entry_rows = EntryRows(self.data_fields)
        self._check_writable()
        self._prior_gaps = read_prior_gaps(self.fs, self.root)

    # --- set-up ---------------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        probe = f".probe-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self.store.write_text(probe, "sbqueue")
            self.fs.rm(f"{self.root}/{probe}")
        except (OSError, PermissionError) as exc:
            raise ConfigurationError(f"cannot write the history dataset at {self.path!r}: {exc}") from exc

    def discover(self) -> list[str]:
        """Add the queues found under the prefix (or the given ones); returns the names added."""
        names = self.fixed
        if names is None:
            names = []
            pattern = f"{_glob_escape(self.prefix)}:*:events"
            for key in self.client.scan_iter(match=pattern, count=1000):
                name = key[len(self.prefix) + 1 : -len(":events")]
                if name and ":" not in name:
                    names.append(name)
        added = []
        first = not self._discovered_once
        self._discovered_once = True
        for name in sorted(set(names) - set(self.queues)):
            position = self.store.last_id(name)
            self.queues[name] = QueueProgress(name, f"{self.prefix}:{name}:events", position)
            # queues found later were created while we ran: every entry of theirs is new
            self.queues[name].from_now = first and self.start == "now" and position is None
            added.append(name)
            log.info("recording queue %r from %s", name, "its oldest entry" if position is None else
                     f"after {format_id(position)}")
        self._discovered = time.monotonic()
        return added

    # --- the loop -------------------------------------------------------------------------------------
    def run(self, duration: float | None = None) -> None:
        """Record until :meth:`stop` (or Ctrl-C, or ``duration`` seconds); flushes before returning."""
        deadline = None if duration is None else time.monotonic() + duration
        backoff = 0.5
        last_log = 0.0
        try:
            while not self._stopped and (deadline is None or time.monotonic() < deadline):
                try:
                    read = self.run_once()
                    if time.monotonic() - last_log >= 10:
                        last_log = time.monotonic()
                        log.info("%s", self.progress_line())
                    if not read and self._buffered < self.max_rows:
                        self._wait()
                    backoff = 0.5
                except (redis.ConnectionError, redis.TimeoutError, ConnectionFailedError, redis.ResponseError) as exc:
                    log.warning("Redis unreachable or refusing (%s); retrying in %.1fs", exc, backoff)
                    self.flush(force=False)  # what was read is written while Redis is away
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
        finally:
            self.flush(force=True)

    def close(self) -> None:
        """Write what is buffered and close the recorder's Redis connections."""
        self.flush(force=True)
        self.client.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after its current pass."""
        self._stopped = True

    def progress_line(self) -> str:
        """One log line: queues, rows recorded, buffered rows, the worst lag, gaps."""
        worst = max(self.queues.values(), key=lambda q: q.lag_s, default=None)
        lag = f"{worst.lag_s:.1f}s ({worst.name})" if worst else "0s"
        return (f"recorder: {len(self.queues)} queues, {sum(q.recorded for q in self.queues.values())} rows "
                f"recorded, {self._buffered} buffered, lag {lag}, gaps {sum(q.gaps for q in self.queues.values())}")

    def _wait(self) -> None:
        """Block until an entry arrives on any stream (or ``poll_ms``): a cheap XREAD used as a wake-up."""
        streams = {q.key: format_id(q.position) if q.position else "0-0" for q in self.queues.values()
                   if q.error is None}
        if not streams:
            time.sleep(self.poll_ms / 1000)
            return
        try:
            self.client.xread(streams, count=1, block=self.poll_ms)
        except redis.ResponseError:  # e.g. a key of another type: run_once reports it
            time.sleep(self.poll_ms / 1000)

    def run_once(self) -> int:
        """One pass: discover (when due), read a page of every queue, flush and compact when due.
        Returns the number of entries read."""
        now = time.monotonic()
        if now - self._discovered >= self.discovery_interval:
            self.discover()
        read = 0
        if self._buffered < self.max_rows:
            read = self._read()
        self.flush(force=False)
        if self.compact_interval and time.monotonic() - self._compacted >= self.compact_interval:
            self._compacted = time.monotonic()
            try:
                self.compact()
            except OSError as exc:
                log.error("compaction failed: %s", exc)
        return read

    def _read(self) -> int:
        queues = list(self.queues.values())
        if not queues:
            return 0
        per_queue = max(1, min(self.page, (self.max_rows - self._buffered) // len(queues)))
        pipe = self.client.pipeline(transaction=True)
        for q in queues:
            pipe.xinfo_stream(q.key)
            pipe.xrange(q.key, min="(" + format_id(q.position) if q.position else "-", max="+", count=per_queue)
        replies = pipe.execute(raise_on_error=False)
        readable: list[tuple[QueueProgress, Any, list[Any]]] = []
        for i, q in enumerate(queues):
            info, entries = replies[2 * i], replies[2 * i + 1]
            if isinstance(entries, Exception) or (isinstance(info, Exception) and "no such key" not in str(info)):
                err = str(entries if isinstance(entries, Exception) else info)
                if q.error != err:
                    log.error("queue %r: cannot read %s: %s (skipped until it is readable)", q.name, q.key, err)
                q.error = err
                continue
            q.error = None
            readable.append((q, None if isinstance(info, Exception) else info, entries))
        # every Redis read of this pass happens before any position moves: if Redis goes away while the job
        # hashes are read, the pass is retried from the same positions and nothing read so far is skipped
        hashes = self._hashes_for([(q, fields) for q, info, entries in readable
                                   if not (q.from_now and info and info.get("last-generated-id"))
                                   for _eid, fields in entries])
        total = 0
        for q, info, entries in readable:
            if q.from_now:
                q.from_now = False
                if info and info.get("last-generated-id"):
                    q.position = parse_id(info["last-generated-id"])
                    q.persisted = q.position
                    continue
            if info and q.position is not None:
                self._check_gap(q, info, entries)
            if entries:
                last = parse_id(entries[-1][0])
                q.position = last
            if info:
                tail = info.get("last-generated-id")
                q.tail = parse_id(tail) if tail else None
                added = int_field(info.get("entries-added"))
                if len(entries) < per_queue and added is not None:
                    q.seq = added  # caught up: every entry ever added is at or before the position
                elif q.seq is not None:
                    q.seq += len(entries)
            if q.tail and q.position:
                q.lag_s = max(0.0, (q.tail[0] - q.position[0]) / 1000)
            total += len(entries)
            for eid, fields in entries:
                self._add(q.name, self._entry_rows.row(q.name, eid, fields, hashes))
                q.recorded += 1
        return total

    def _check_gap(self, q: QueueProgress, info: dict[str, Any], entries: list[Any]) -> None:
        """Record a gap row when entries after ``q.position`` were trimmed before being read."""
        assert q.position is not None
        first = info.get("first-entry")
        last_generated = info.get("last-generated-id")
        first_id = parse_id(first[0]) if first else None
        if first_id is not None:
            if first_id <= q.position:
                return
            gap_to = first_id
        elif last_generated and parse_id(last_generated) > q.position:
            gap_to = parse_id(last_generated)  # emptied stream: everything after us is gone
        else:
            return
        # Redis 7 counts entries ever added: those deleted beyond the ones we read were lost. (Trimming does
        # not move max-deleted-entry-id, only XDEL does.) Redis 6.2 cannot tell: the estimate stays unknown.
        added, length = int_field(info.get("entries-added")), int_field(info.get("length"))
        lost = None
        if added is not None and length is not None and q.seq is not None:
            lost = added - length - q.seq
            if lost <= 0:
                return  # trimmed exactly up to our position
        q.gaps += 1
        log.warning("queue %r: events stream trimmed past the last id read: entries after %s up to %s lost "
                    "(estimate: %s)", q.name, format_id(q.position), format_id(gap_to),
                    "unknown" if lost is None else lost)
        self._add(q.name, {"stream_id": format_id(gap_to), "ts": gap_to[0], "id_seq": gap_to[1], "event": "gap",
                           "gap_from": format_id(q.position), "gap_to": format_id(gap_to), "lost_estimate": lost})
        if first_id is None:
            q.position = gap_to
        q.seq = None

    # --- rows -----------------------------------------------------------------------------------------
    def _hashes_for(self, entries: list[tuple[QueueProgress, dict[str, str]]]) -> dict[tuple[str, str], list[Any]]:
        """The job-hash fields the rows of these entries need, keyed by (queue, job id); only reads."""
        wanted = [(q, fields.get("jobId")) for q, fields in entries
                  if fields.get("event") in ENRICH and fields.get("jobId")]
        hashes: dict[tuple[str, str], list[Any]] = {}
        by_queue: dict[str, list[str]] = {}
        for q, job in wanted:
            by_queue.setdefault(q.name, []).append(str(job))
        for name, jobs in by_queue.items():
            ids = list(dict.fromkeys(jobs))
            for job, reply in zip(ids, self._hmget(f"{self.prefix}:{name}:", ids), strict=True):
                if reply is not None:
                    hashes[(name, job)] = reply
        return hashes

    def _hmget(self, base: str, ids: list[str]) -> list[list[Any] | None]:
        """The job-hash fields of ``base + id`` for each id (see :func:`read_job_hashes`); once the server
        refuses scripts, pipelines from then on."""
        replies, self._scripts = read_job_hashes(self.client, base, ids, self._scripts)
        return replies

    def _add(self, queue: str, row: dict[str, Any]) -> None:
        if not self._buffered:
            self._oldest = time.monotonic()
        self._rows.setdefault((queue, hour_of(row["ts"])), []).append(row)
        self._buffered += 1

    # --- writing --------------------------------------------------------------------------------------
    def flush(self, force: bool = True) -> int:
        """Write the buffered rows (one file per queue and hour); returns the rows written. Without
        ``force`` only when the buffer is full or old enough. A failed write keeps the rows and is retried."""
        if not self._buffered or (not force and self._buffered < self.max_rows
                                  and time.monotonic() - self._oldest < self.flush_interval):
            return 0
        written = 0
        for (queue, hour), rows in sorted(self._rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            first, last = parse_id(rows[0]["stream_id"]), parse_id(rows[-1]["stream_id"])
            table = pa.Table.from_pylist(rows, schema=FILE_SCHEMA)
            try:
                self.store.write_table(table, self.store.path_for(queue, hour, first, last))
            except OSError as exc:
                log.error("cannot write %d rows of queue %r to %s: %s (kept, retrying)", len(rows), queue,
                          self.path, exc)
                self._oldest = time.monotonic()
                break
            del self._rows[(queue, hour)]
            self._buffered -= len(rows)
            written += len(rows)
            q = self.queues.get(queue)
            if q is not None:
                q.persisted = last
        else:
            write_status(self.store, self.prefix, self.queues.values(), self._prior_gaps)
        return written

    def compact(self, target_rows: int = 1_000_000) -> int:
        """Merge runs of small files of each finished hour into files of up to ``target_rows`` rows; delete
        files left covered by an interrupted compaction. Returns the number of files removed."""
        return recorder_compaction.compact(self.store, target_rows, self._compacted_hours, self._moved_past)

    def _moved_past(self, queue: str, hour: str) -> bool:
        """Whether everything recorded for ``queue`` is after ``hour`` (nothing will be written there again)."""
        q = self.queues.get(queue)
        return q is not None and q.persisted is not None and hour < hour_of(q.persisted[0])
