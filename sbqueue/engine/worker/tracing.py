"""The worker's parts when tracing is on: each job's run inside BullMQ's ``process <queue>`` span.

:class:`TracedJobRuns` runs :meth:`JobRuns._process` inside a CONSUMER span that continues the trace the job's
``opts.tm`` carries (the span that added it, in Python or in Node with bullmq-otel); :class:`TracedSettler`
records how the attempt ended on that span (``job completed`` / ``job failed`` events and
``bullmq.job.attempts.made``, as Node's worker does); :class:`ContextThreadRunner` runs a sync processor in the
job's context, so spans the processor opens are children of the process span. The worker uses these classes
only when its ``telemetry`` is enabled: the untraced parts carry no tracing code at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Any

from sbqueue.engine._async.queue import AsyncQueue
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.job import Job
from sbqueue.engine.telemetry import Attr, SpanKind, Telemetry, TracedSpan, record_outcome
from sbqueue.engine.worker.job_runs import JobRuns
from sbqueue.engine.worker.outcomes import Settler
from sbqueue.engine.worker.runners import JobRunner, LoopRunner, ThreadRunner, is_async_processor
from sbqueue.engine.worker.state import WorkerState


class TracedSettler(Settler):
    """A :class:`Settler` that also records each outcome on the job's process span."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spans: dict[str, TracedSpan] = {}  # job id -> its open process span

    def completed(self, job: Job, result: Any, returnvalue: str) -> None:
        super().completed(job, result, returnvalue)
        record_outcome(self.spans.get(job.id), "completed", returnvalue, job.attempts_made)

    def failed(self, job: Job, exc: BaseException, *, final: bool) -> None:
        queued = len(self._state.pending)
        super().failed(job, exc, final=final)
        if len(self._state.pending) > queued:  # recorded (a broken backoff option records nothing, as in Node)
            record_outcome(self.spans.get(job.id), "failed", job.failed_reason or "", job.attempts_made)


class TracedJobRuns(JobRuns):
    """:class:`JobRuns` whose every run is one ``process <queue>`` span (CONSUMER)."""

    def __init__(
        self,
        state: WorkerState,
        settler: TracedSettler,
        runner: JobRunner,
        emit: Callable[..., None],
        *,
        queue: Queue,
        aqueue: AsyncQueue,
        telemetry: Telemetry,
        worker_id: str,
        worker_name: str | None,
    ) -> None:
        super().__init__(state, settler, runner, emit, queue=queue, aqueue=aqueue)
        self._spans = settler.spans
        self._telemetry = telemetry
        self._queue_name = aqueue.name
        self._worker = {Attr.WORKER_ID: worker_id, Attr.WORKER_NAME: worker_name}

    async def _process(self, job: Job, fetched_at: int) -> None:
        tm = job.opts.get("tm")
        metadata = tm if isinstance(tm, str) else None  # Node stores tm: false when the context was omitted
        name = self._queue_name
        with self._telemetry.span(SpanKind.CONSUMER, name, "process", name, metadata=metadata) as span:
            span.set_attributes({**self._worker, Attr.JOB_ID: job.id, Attr.JOB_NAME: job.name})
            self._spans[job.id] = span
            try:
                await super()._process(job, fetched_at)
            finally:
                self._spans.pop(job.id, None)
                span.set_attributes({Attr.JOB_ATTEMPT_FINISHED_TIMESTAMP: job.finished_on or int(time.time() * 1000),
                                     Attr.JOB_PROCESSED_TIMESTAMP: job.processed_on})  # fmt: skip


class ContextThreadRunner(ThreadRunner):
    """A :class:`ThreadRunner` whose thread runs the processor in the job's context (its process span)."""

    def _submit(self, job: Job) -> asyncio.Future[Any]:
        context = contextvars.copy_context()
        return self._threads.submit(asyncio.get_running_loop(), context.run, self._call, job)


def traced_runner_for(processor: Callable[[Job], Any], thread_name: str) -> JobRunner:
    """:func:`~sbqueue.engine.worker.runners.runner_for` with tracing: an ``async def`` processor already runs in
    its job's task (and context); a sync one gets a :class:`ContextThreadRunner`."""
    if is_async_processor(processor):
        return LoopRunner(processor)
    return ContextThreadRunner(processor, thread_name)
