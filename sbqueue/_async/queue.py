"""The async queue (hand-written source; ``sbqueue/_sync/queue.py`` is generated from it)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from .. import _cluster
from .. import connection as _connection
from .._core import options as _opts
from .._core import schedule as _sched
from .._core.keys import QueueKeys
from .._core.states import CLEANABLE
from .._scripting import ScriptRunner
from .._version import __version__
from ..errors import InvalidOptionError, JobStateError, UnknownOptionError, error_from_code
from ..job import Job
from .reads import AsyncQueueReads

ADD_BATCH = 500  # jobs per add_jobs call (~5-10 ms of Redis time)
CLEAN_SCAN = 1000  # entries a clean/drain/obliterate call examines: keeps each call well under ~50 ms


def _now() -> int:
    return int(time.time() * 1000)


class AsyncQueue(AsyncQueueReads):
    """Producer and management API of one queue (BullMQ 6 layout).

    ``connection`` is None (``sbqueue.connect()``), a URL, or a redis client. ``default_job_options``
    (snake_case or BullMQ camelCase) apply to every add unless overridden.

    On Redis Cluster (a cluster client, or a URL of a cluster) every key of the queue must hash to one slot:
    put a ``{hash tag}`` in ``prefix`` (``"{bull}"``) or in ``name``, or :class:`ClusterKeyError` is raised here.
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
    ) -> None:
        self.keys = QueueKeys(prefix, name)
        self.name = name
        self.prefix = prefix
        self.default_job_options = _opts.normalise_opts(default_job_options)
        _opts.prepare_job("default", None, self.default_job_options)  # validate now, not at the first add
        self.max_job_bytes = _opts.validate_count(max_job_bytes, "max_job_bytes", minimum=1, maximum=512 * 2**20)
        self.max_len_events = _opts.validate_count(max_len_events, "max_len_events", minimum=1)
        self._client = _connection.coerce_async(connection)
        self._owns_client = self._client is not connection
        # on Redis Cluster every key of the queue must share one slot: refuse now, before any write
        _cluster.check_queue(self._client, self.keys, owned=self._owns_client)
        self._run = ScriptRunner(self._client, self.keys)
        self._meta_written = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} prefix={self.prefix!r}>"

    @property
    def client(self) -> Any:
        """The underlying redis client."""
        return self._client

    async def close(self) -> None:
        """Close the queue's connections. A Redis Cluster client passed in by the caller is left open (redis-py
        cannot reopen a closed cluster client; the caller closes it)."""
        if self._owns_client or not _cluster.is_cluster(self._client):
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
                await pipe.execute()
            self._meta_written = True

    # --- adding -------------------------------------------------------------------------------
    def _prepare(self, name: Any, data: Any, options: Mapping[str, Any]) -> _opts.PreparedJob:
        merged = {**self.default_job_options, **{k: v for k, v in options.items() if v is not None}}
        return _opts.prepare_job(name, data, merged, max_bytes=self.max_job_bytes)

    def _add_args(self, job: _opts.PreparedJob, now: int) -> list[Any]:
        return [job.job_id, job.name, job.data, job.opts, now, job.delay, job.priority,
                "1" if job.lifo else "0", job.dedup_id, job.dedup_ttl, ""]  # fmt: skip

    def _added(self, job: _opts.PreparedJob, now: int, result: list[Any]) -> Job:
        job_id, status = str(result[0]), int(result[1])
        if status != 1:  # duplicate or deduplicated: nothing of ours was written; report the owner
            return Job(queue=self, id=job_id, name=job.name)
        return Job(queue=self, id=job_id, name=job.name, data=_loads(job.data), opts=dict(job.opts_dict),
                   timestamp=now, delay=job.delay, priority=job.priority)  # fmt: skip

    async def add(
        self,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        delay: Any = None,
        lifo: bool | None = None,
        attempts: int | None = None,
        backoff: Any = None,
        timeout: Any = None,
        remove_on_complete: Any = None,
        remove_on_fail: Any = None,
        deduplication: Mapping[str, Any] | None = None,
        repeat: Mapping[str, Any] | None = None,
        stack_trace_limit: int | None = None,
        keep_logs: int | None = None,
        **unknown: Any,
    ) -> Job:
        """Add a job and return it. Re-adding an existing ``job_id`` keeps the first job (a no-op that
        emits ``duplicated``); a deduplicated add returns the owning job. ``repeat={"every": ms}`` or
        ``{"pattern": cron}`` creates/updates a job scheduler instead and returns its first iteration.
        """
        if unknown:
            raise UnknownOptionError(
                f"unknown job option(s) {sorted(unknown)}; allowed: {', '.join(_opts.OPTION_NAMES)}",
                option=sorted(unknown)[0],
            )
        options = {
            "job_id": job_id, "priority": priority, "delay": delay, "lifo": lifo, "attempts": attempts,
            "backoff": backoff, "timeout": timeout, "remove_on_complete": remove_on_complete,
            "remove_on_fail": remove_on_fail, "deduplication": deduplication, "repeat": repeat,
            "stack_trace_limit": stack_trace_limit, "keep_logs": keep_logs,
        }  # fmt: skip
        prepared = self._prepare(name, data, options)
        if prepared.repeat is not None:
            return await self._add_repeat(prepared)
        await self._ensure_meta()
        now = _now()
        result = await self._run("add_job", self._add_args(prepared, now))
        return self._added(prepared, now, result)

    async def add_bulk(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Add many jobs in one round trip (each add is atomic). Every entry is validated first:
        one bad entry raises before anything is written. Entries: ``{"name", "data", "opts"}``."""
        prepared = []
        for i, entry in enumerate(jobs):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise InvalidOptionError(f"add_bulk entry {i} must be a dict with 'name'", option="jobs")
            unknown = set(entry) - {"name", "data", "opts"}
            if unknown:
                raise InvalidOptionError(f"add_bulk entry {i} has unknown keys {sorted(unknown)}", option="jobs")
            job = self._prepare(entry["name"], entry.get("data"), _opts.normalise_opts(entry.get("opts")))
            if job.repeat is not None:
                raise InvalidOptionError("add_bulk does not take 'repeat'; use upsert_job_scheduler", option="repeat")
            prepared.append(job)
        if not prepared:
            return []
        await self._ensure_meta()
        now = _now()
        # one round trip; add_jobs takes ADD_BATCH jobs per call, so no single call blocks Redis for long
        async with self._client.pipeline(transaction=False) as pipe:
            for start in range(0, len(prepared), ADD_BATCH):
                batch = prepared[start : start + ADD_BATCH]
                args: list[Any] = [len(batch)]
                for job in batch:
                    args += self._add_args(job, now)
                await self._run("add_jobs", args, client=pipe)
            replies = await pipe.execute()
        results = [res for reply in replies for res in reply]
        return [self._added(job, now, res) for job, res in zip(prepared, results, strict=True)]

    async def _add_repeat(self, prepared: _opts.PreparedJob) -> Job:
        repeat = dict(prepared.repeat or {})
        unknown = set(repeat) - {"every", "pattern", "tz", "start_date", "end_date", "limit"}
        if unknown:
            raise InvalidOptionError(f"repeat has unknown keys {sorted(unknown)}", option="repeat")
        # scheduler ids may not contain ':' (that is the shape of v5 legacy repeat keys)
        sid = prepared.job_id or f"{prepared.name}-{repeat.get('pattern') or repeat.get('every')}".replace(":", "-")
        opts = {k: v for k, v in prepared.opts_dict.items() if k not in ("jobId", "repeat", "delay")}
        return await self.upsert_job_scheduler(
            sid, every=repeat.get("every"), pattern=repeat.get("pattern"), tz=repeat.get("tz"),
            name=prepared.name, data=_loads(prepared.data), opts=opts, start_date=repeat.get("start_date"),
            end_date=repeat.get("end_date"), limit=repeat.get("limit"),
        )  # fmt: skip

    # --- job schedulers -------------------------------------------------------------------------
    async def upsert_job_scheduler(
        self,
        scheduler_id: str,
        every: Any = None,
        pattern: str | None = None,
        tz: str | None = None,
        name: str | None = None,
        data: Any = None,
        opts: Mapping[str, Any] | None = None,
        *,
        start_date: Any = None,
        end_date: Any = None,
        limit: int | None = None,
    ) -> Job:
        """Create or replace a job scheduler (``every`` ms or a cron ``pattern``); returns the pending
        iteration. Workers create each next iteration when they fetch the current one."""
        if not isinstance(scheduler_id, str) or not scheduler_id or ":" in scheduler_id:
            raise InvalidOptionError(
                f"scheduler_id must be a non-empty string without ':', got {scheduler_id!r}", option="scheduler_id"
            )
        if (every is None) == (pattern is None):
            raise InvalidOptionError("give exactly one of every= (ms) or pattern= (cron)", option="every")
        every_ms = _opts.to_ms(every, "every", allow_zero=False) if every is not None else None
        if pattern is not None:
            _sched.validate_pattern(pattern, tz)
        elif tz is not None:
            _sched.zone(tz)
        start = _sched.to_epoch_ms(start_date, "start_date")
        end = _sched.to_epoch_ms(end_date, "end_date")
        if limit is not None:
            _opts.validate_count(limit, "limit", minimum=1)
        template = _opts.normalise_opts(opts)
        job = self._prepare(name or scheduler_id, data, {k: v for k, v in template.items() if k != "job_id"})
        if job.delay or job.dedup_id or job.repeat is not None:
            raise InvalidOptionError("scheduler templates may not set delay, deduplication or repeat", option="opts")
        now = _now()
        first = _sched.first_run(every=every_ms, pattern=pattern, tz=tz, now=now, start_date=start)
        if end is not None and first > end:
            raise InvalidOptionError("end_date is before the first run", option="end_date")
        fields = _sched.scheduler_fields(
            every=every_ms, pattern=pattern, tz=tz, start_date=start, end_date=end, limit=limit, first=first
        )
        repeat = _repeat_opts(every_ms, pattern, tz, limit, start, end)
        job_opts = _iteration_opts(job.opts_dict, scheduler_id, repeat, count=1, millis=first)
        # the stored template holds only what was asked for (BullMQ omits `opts` when it is {})
        template_opts = dict(job.opts_dict)
        if "attempts" not in template and "attempts" not in self.default_job_options:
            template_opts.pop("attempts", None)
        flat = [item for pair in fields for item in pair]
        await self._ensure_meta()
        job_id = await self._run(
            "upsert_scheduler",
            [scheduler_id, first, now, job.name, job.data, _opts.dumps(template_opts, "opts"), job_opts,
             job.priority, len(fields), *flat],
        )  # fmt: skip
        due = _iteration_millis(str(job_id)) or first  # an unchanged `every` keeps the pending slot
        return Job(
            queue=self, id=str(job_id), name=job.name, data=_loads(job.data), opts=_loads(job_opts),
            timestamp=now, delay=max(due - now, 0), priority=job.priority, scheduler_id=scheduler_id,
        )  # fmt: skip

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Delete a scheduler and its pending iteration. False if it did not exist."""
        return bool(await self._run("remove_scheduler", [str(scheduler_id)]))

    async def _schedule_next(self, job: Job, now: int) -> str | None:
        """Called by workers when they fetch a scheduler iteration: enqueue the following one."""
        sid = job.scheduler_id
        if not sid:
            return None
        spec = await self._client.hgetall(self.keys.scheduler(sid))
        prev_ms = _iteration_millis(job.id)
        if not spec or prev_ms is None:
            return None
        try:
            nxt = _sched.next_run(spec, prev_ms, now)
        except (ValueError, InvalidOptionError):
            return None
        if nxt is None:
            return None
        opts = _loads(spec.get("opts") or "{}")
        opts = opts if isinstance(opts, dict) else {}
        every = int(float(spec["every"])) if spec.get("every") else None
        repeat = _repeat_opts(
            every, spec.get("pattern"), spec.get("tz"), _int_or_none(spec.get("limit")),
            _int_or_none(spec.get("startDate")), _int_or_none(spec.get("endDate")),
        )  # fmt: skip
        prev_count = (job.opts.get("repeat") or {}).get("count") if isinstance(job.opts.get("repeat"), dict) else None
        base = prev_count if _is_count(prev_count) else _int_or_none(spec.get("ic"))
        count = int(base or 0) + 1
        job_opts = _iteration_opts(opts, sid, repeat, count=count, millis=nxt)
        priority = opts.get("priority") if isinstance(opts.get("priority"), int) else 0
        new_id = await self._run("schedule_next", [sid, job.id, nxt, now, job_opts, priority])
        return str(new_id) or None

    # --- pause / limits --------------------------------------------------------------------------
    async def pause(self) -> None:
        """Pause the queue: workers stop fetching; jobs stay in wait (BullMQ 6 semantics)."""
        await self._run("pause", ["pause"])

    async def resume(self) -> None:
        """Resume a paused queue (also migrates a legacy v5 ``paused`` list into wait)."""
        while int(await self._run("pause", ["resume"])) > 0:
            pass

    async def set_global_concurrency(self, concurrency: int | None) -> None:
        """Cap active jobs across all workers (``meta.concurrency``); None removes the cap."""
        meta = self.keys.key("meta")
        if concurrency is None:
            await self._client.hdel(meta, "concurrency")
            return
        await self._client.hset(meta, "concurrency", _opts.validate_count(concurrency, "concurrency", minimum=1))

    async def set_global_rate_limit(self, max: int | None, duration_ms: Any = None) -> None:
        """Queue-wide rate limit: at most ``max`` jobs per ``duration_ms`` (``meta.max/duration``)."""
        meta = self.keys.key("meta")
        if max is None:
            await self._client.hdel(meta, "max", "duration")
            return
        limit = _opts.validate_count(max, "max", minimum=1)
        window = _opts.to_ms(duration_ms, "duration_ms", allow_zero=False)
        await self._client.hset(meta, mapping={"max": limit, "duration": window})

    async def rate_limit(self, ms: Any) -> None:
        """Block fetching for ``ms`` (like BullMQ's ``queue.rateLimit``)."""
        await self._client.set(self.keys.key("limiter"), 9007199254740991, px=_opts.to_ms(ms, "ms", allow_zero=False))

    # --- maintenance ------------------------------------------------------------------------------
    async def clean(self, grace_ms: Any = 0, limit: int = 1000, state: str = "completed") -> list[str]:
        """Remove up to ``limit`` jobs of ``state`` older than ``grace_ms``; returns their ids.
        ``limit=0`` means no limit (as BullMQ). Works in bounded batches, so Redis is never blocked
        for long."""
        grace = _opts.to_ms(grace_ms, "grace_ms")
        limit = _opts.validate_count(limit, "limit", minimum=0) or 2**62
        if state not in CLEANABLE:
            from ..errors import InvalidStateError

            raise InvalidStateError(
                f"cannot clean state {state!r}; allowed: {', '.join(CLEANABLE)}", option="state", state=str(state)
            )
        state = "wait" if state == "waiting" else state
        cutoff = _now() - grace
        removed: list[str] = []
        cursor = 0
        while len(removed) < limit:
            ids, cursor, more = await self._run(
                "clean", [state, cutoff, min(limit - len(removed), CLEAN_SCAN), cursor, CLEAN_SCAN]
            )
            removed += [str(i) for i in ids]
            if not int(more):
                break
        return removed

    async def drain(self, delayed: bool = False) -> int:
        """Delete every waiting/prioritized job, a legacy ``paused`` list's jobs too (and delayed ones
        if ``delayed``); returns how many. Current scheduler iterations are kept. Removal is by id
        (no BullMQ 6.7 trim bug)."""
        total, cursor = 0, "0,0,0,0"
        while True:
            removed, cursor, more = await self._run("drain", ["1" if delayed else "0", CLEAN_SCAN, cursor])
            total += int(removed)
            if not int(more):
                return total

    async def obliterate(self, force: bool = False) -> None:
        """Delete the whole queue: jobs, schedulers, events, meta, limiter and dedup keys.
        Refuses while jobs are active unless ``force``."""
        await self.pause()
        while True:
            left = int(await self._run("obliterate", ["1" if force else "0", CLEAN_SCAN]))
            if left == -12:
                raise JobStateError(f"queue {self.name!r} has active jobs; obliterate(force=True) to delete anyway")
            if left == 0:
                break
        for pattern in (self.keys.glob("de:*"), self.keys.glob("dn:*")):
            batch = [key async for key in self._client.scan_iter(match=pattern, count=1000)]
            for i in range(0, len(batch), 500):
                await self._client.unlink(*batch[i : i + 500])
        self._meta_written = False

    async def remove(self, job_id: str) -> bool:
        """Delete a job. False if a worker holds its lock (nothing changed); raises for a current
        scheduler iteration (remove the scheduler) and returns False for an unknown id."""
        code = int(await self._run("remove_job", [str(job_id)]))
        if code == -8:
            raise error_from_code(code, job_id=str(job_id), command="remove")
        return code == 1

    async def retry_job(self, job_id: str, state: str = "failed", *, reset_attempts: bool = False) -> None:
        """Move one failed (or completed) job back to run again."""
        if state not in ("failed", "completed"):
            from ..errors import InvalidStateError

            raise InvalidStateError(
                f"state must be 'failed' or 'completed' to retry, got {state!r}", option="state", state=str(state)
            )
        _ids, codes = await self._run("retry_jobs", [state, 1, 0, "1" if reset_attempts else "0", 1, str(job_id)])
        if int(codes[0]) != 1:
            raise error_from_code(int(codes[0]), job_id=str(job_id), command=f"retry from {state}")

    async def retry_jobs(self, state: str = "failed", count: int = 1000, timestamp: Any = None) -> int:
        """Retry every job in ``state`` finished at or before ``timestamp`` (ms; default now),
        ``count`` per batch. Returns how many were retried."""
        if state not in ("failed", "completed"):
            from ..errors import InvalidStateError

            raise InvalidStateError(
                f"state must be 'failed' or 'completed' to retry, got {state!r}", option="state", state=str(state)
            )
        count = _opts.validate_count(count, "count", minimum=1)
        before = _now() if timestamp is None else _sched.to_epoch_ms(timestamp, "timestamp")
        total = 0
        while True:
            ids, codes = await self._run("retry_jobs", [state, count, before, "0", 0])
            total += len(ids)
            if len(codes) < count:  # codes: one per job examined (ids whose hash is gone are dropped)
                return total

    async def promote_job(self, job_id: str) -> None:
        """Run one delayed job now."""
        _ids, codes = await self._run("promote", [1, 1, str(job_id)])
        if int(codes[0]) != 1:
            raise error_from_code(int(codes[0]), job_id=str(job_id), command="promote")

    async def promote_jobs(self, count: int = 1000) -> int:
        """Promote every delayed job, ``count`` per batch. Returns how many."""
        count = _opts.validate_count(count, "count", minimum=1)
        total = 0
        while True:
            ids, codes = await self._run("promote", [count, 0])
            total += len(ids)
            if len(codes) < count:  # codes: one per job examined (ids whose hash is gone are dropped)
                return total

    # --- per-job updates (also reached through Job methods) --------------------------------------
    async def add_job_log(self, job_id: str, line: str, keep_logs: int = 0) -> int:
        """Append a log line to a job; returns the number of lines kept."""
        n = int(await self._run("update_job", [str(job_id), "log", str(line), int(keep_logs or 0)]))
        if n < 0:
            raise error_from_code(n, job_id=str(job_id), command="log")
        return n

    async def update_job_data(self, job_id: str, data: Any) -> None:
        code = int(
            await self._run("update_job", [str(job_id), "data", _opts.dumps(data, "data", self.max_job_bytes), 0])
        )
        if code < 0:
            raise error_from_code(code, job_id=str(job_id), command="update_data")

    async def update_job_progress(self, job_id: str, progress: Any) -> None:
        code = int(await self._run("update_job", [str(job_id), "progress", _opts.dumps(progress, "progress"), 0]))
        if code < 0:
            raise error_from_code(code, job_id=str(job_id), command="update_progress")

    async def _set_job_field(self, job: Job, field: str, value: Any) -> None:
        if field == "data":
            await self.update_job_data(job.id, value)
            job.data = value
        else:
            await self.update_job_progress(job.id, value)
            job.progress = value

    async def _change_priority(self, job: Job, priority: int, lifo: bool) -> None:
        priority = _opts.validate_priority(priority)
        code = int(await self._run("reschedule_job", [job.id, "priority", priority, _now(), "1" if lifo else "0"]))
        if code < 0:
            raise error_from_code(code, job_id=job.id, command="change_priority")
        job.priority = priority

    async def _change_delay(self, job: Job, delay: Any) -> None:
        ms = _opts.to_ms(delay, "delay")
        code = int(await self._run("reschedule_job", [job.id, "delay", ms, _now(), "0"]))
        if code < 0:
            raise error_from_code(code, job_id=job.id, command="change_delay")
        job.delay = ms

    async def _move_to_delayed(self, job: Job, timestamp_ms: int) -> None:
        due = _opts.to_ms(timestamp_ms, "timestamp_ms")
        group = [job.id, job.token or "0", "delay", "", "", due, -1, 0, "s"]
        codes, _jobs, _ttl, _next = await self._run("finish_and_fetch", [_now(), "", "", 0, 0, 0, 0, 0, 1, *group])
        if int(codes[0]) != 1:
            raise error_from_code(int(codes[0]), job_id=job.id, command="move_to_delayed")


def _loads(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _iteration_millis(job_id: str) -> int | None:
    try:
        return int(job_id.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _int_or_none(raw: Any) -> int | None:
    try:
        return int(float(raw)) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _repeat_opts(
    every: int | None, pattern: str | None, tz: str | None, limit: int | None, start: int | None, end: int | None
) -> dict[str, Any]:
    """An iteration's ``opts.repeat``: what a Node worker reads to schedule the next iteration."""
    repeat: dict[str, Any] = {"every": every} if every else {"pattern": pattern}
    for key, value in (("tz", tz), ("limit", limit), ("startDate", start), ("endDate", end)):
        if value is not None and value != "":
            repeat[key] = value
    return repeat


def _iteration_opts(opts: Mapping[str, Any], sid: str, repeat: Mapping[str, Any], *, count: int, millis: int) -> str:
    """The stored opts of a scheduler iteration, as BullMQ writes them: the template opts plus
    ``repeatJobKey``, ``repeat`` (with ``count``, the iteration number Node's limit check uses) and,
    for cron patterns, ``prevMillis`` (Node computes the next cron time after it)."""
    stored = dict(opts)
    stored["repeatJobKey"] = sid
    stored["repeat"] = {**repeat, "count": count}
    if "pattern" in repeat:
        stored["prevMillis"] = millis
    return _opts.dumps(stored, "opts")
