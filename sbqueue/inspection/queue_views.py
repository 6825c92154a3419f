"""The queue views of :class:`sbqueue.inspection.Inspector`: jobs, failures, stalled jobs, flows, events,
metrics, workers, schedulers and consistency of the queues under its prefix, and the operators' audit trail.

A mixin: each method checks its arguments and hands the inspector's :class:`Context` to the module that builds
the frame (:mod:`.jobs`, :mod:`.failures`, :mod:`.stalled`, :mod:`.flows`, :mod:`.events`, :mod:`.queues`,
:mod:`.consistency`), so the class itself stays a readable table of contents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from sbqueue.errors import InvalidOptionError
from sbqueue.inspection import audit_trail, consistency, dead_letters, events, failures, flows, jobs, queues, stalled
from sbqueue.inspection._context import Context, count_option


class QueueViews:
    """Per-queue DataFrame views; mixed into :class:`sbqueue.inspection.Inspector`."""

    _ctx: Context

    def queues(self, window_min: int = 60) -> pd.DataFrame:
        """Every queue under the prefix (found by SCAN): counts per state, paused, global concurrency and
        rate limit, workers connected, oldest waiting job and its age, the failure rate over the last
        ``window_min`` minutes of BullMQ metrics, and ``dead_letter``: True for a dead-letter queue (one an
        sbqueue worker has dead-lettered into, named in ``<prefix>:sbqueue:dead-letter-queues``, or whose next
        job is a letter; see :meth:`dead_letters`).

        Example: ``insp.queues().sort_values("waiting", ascending=False)``
        """
        return queues.queues(self._ctx, window_min=count_option(window_min, "window_min", 1))

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
        *,
        dtype_backend: str | None = None,
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
        * ``dtype_backend``: None (default) as documented in :data:`SCHEMAS`; ``"numpy_nullable"``: numbers
          and flags as pandas' nullable ``Int64``/``Float64``/``boolean`` (NaN becomes ``<NA>``);
          ``"pyarrow"``: every column ``pd.ArrowDtype`` (text as ``string``, times as ``timestamp[ns, UTC]``),
          built from the batches as Arrow tables, and ``data``/``returnvalue``/``progress``/``opts`` keep
          their stored JSON text (``json.loads`` it; ``data_fields`` still extracts values) — same rows,
          about half the memory and faster on big queues. Needs pyarrow (``pip install 'sbqueue[history]'``).

        Malformed hashes give a row with ``parse_error``; ids whose hash is gone give a row saying so.

        Example: ``insp.jobs("emails", "failed", query={"failed_reason": "timeout", "data.to": "@acme"})``
        """
        limit = count_option(limit, "limit", 0, none_ok=True)
        return jobs.jobs(self._ctx, queue, states, limit, name, since, until, query, data_fields, dtype_backend)

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
        limit = count_option(limit, "limit", 0, none_ok=True)
        examples = count_option(examples, "examples", 0)
        return failures.failures(self._ctx, queue, limit, name, since, until, query, examples)

    def dead_letters(self, queue: str, limit: int | None = None) -> pd.DataFrame:
        """The dead letters of dead-letter queue ``queue`` (jobs sbqueue workers added there when their source
        job failed for good), newest first: letter id, state in the DLQ, name, source queue/prefix/job id,
        failed reason, attempts made, created/processed/dead-lettered times and the stack trace. Replay them
        with ``sbqueue.Queue(queue).replay_dead_letters(...)``.

        Example: ``insp.dead_letters("emails-dlq").groupby("failed_reason").size()``
        """
        return dead_letters.dead_letters(self._ctx, queue, count_option(limit, "limit", 1, none_ok=True))

    def stalled(self, queue: str, max_stalled_count: int = 1) -> pd.DataFrame:
        """Every active job with its lock TTL, whether a worker that could hold it is connected,
        stalled count, attempts, ``processed_by`` and a verdict: ``processing``, ``lock lost — will be
        requeued``, ``orphaned`` (no lock, no worker) or ``hash missing``; ``detail`` explains it.

        Example: ``insp.stalled("emails").verdict.value_counts()``
        """
        return stalled.stalled(self._ctx, queue, count_option(max_stalled_count, "max_stalled_count", 0))

    def flow(self, queue: str, job_id: str, depth: int = 10) -> pd.DataFrame:
        """One flow as rows, parents before children: every job under ``job_id`` (children in any queue)
        with its ``depth``, ``parent_id``/``parent_queue``, ``state``, ``pending``/``processed``/``ignored``/
        ``failed`` child counts, ``deferred_failure`` and ``stuck`` (why nothing will release a
        waiting-children parent, else missing).

        Example: ``insp.flow("orders", root_id)[["depth", "name", "state", "pending"]]``
        """
        if not isinstance(job_id, str) or not job_id:
            raise InvalidOptionError(f"job_id must be a non-empty string, got {job_id!r}", option="job_id")
        return flows.flow(self._ctx, queue, job_id, count_option(depth, "depth", 0))

    def flows(self, queue: str, limit: int | None = None) -> pd.DataFrame:
        """Every flow whose root is a parent job of ``queue``, one row per job (see :meth:`flow`); ``limit``
        bounds the number of flows.

        Example: ``insp.flows("orders").query("stuck.notna()")``
        """
        return flows.flows(self._ctx, queue, count_option(limit, "limit", 1, none_ok=True))

    def events(self, queue: str, since: Any = None, count: int | None = None) -> pd.DataFrame:
        """The events stream as rows, oldest first: ``since`` (time, timedelta or stream id) reads forward
        from there; with only ``count``, the latest ``count`` events.

        Example: ``insp.events("emails", count=100).event.value_counts()``
        """
        return events.events(self._ctx, queue, since, count_option(count, "count", 1, none_ok=True))

    def audit(self, since: Any = None, until: Any = None, *, action: str | None = None, queue: str | None = None,
              limit: int = 1_000) -> pd.DataFrame:  # fmt: skip
        """The audit trail of the prefix, newest first: every change an operator made through sbqueue — from a
        runbook, a widget or the command line — with when, who (user, host, process, runbook/widget/command,
        notebook), action, queue, job count and ids (the first 50), parameters, dry run or applied, result.

        Example: ``insp.audit(since=timedelta(hours=1), action="retry")``
        """
        return audit_trail.audit(self._ctx, since, until, action=action, queue=queue,
                                 limit=count_option(limit, "limit", 1))  # fmt: skip

    def timeline(self, queue: str, job_id: str) -> pd.DataFrame:
        """One job's lifecycle: created/processed/finished from its hash, every event naming it, and its
        state now, in time order. Creation comes first and the state now last even when clocks differ
        (a producer's clock ahead of Redis): the created row's detail then says by how much, and
        ``since_created_s`` is negative for the rows the skew put before it.

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
