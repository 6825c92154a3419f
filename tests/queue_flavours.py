"""Run the queue tests once per flavour: ``sbqueue.Queue`` (sync) and ``sbqueue.AsyncQueue`` (async).

The async flavour is wrapped in :class:`AsyncProxy`, which runs every awaitable a method returns on a
private event loop thread, so each test is written once, synchronously. Jobs returned by the async
flavour (whose ``job.queue`` is the ``AsyncQueue``) are wrapped too, so ``job.update_data(...)`` works
the same in both flavours.

Also here: helpers that move jobs into active/completed/failed through the ``finish_and_fetch``
script (as a worker would), without using :class:`sbqueue.Worker`.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import sbqueue
from sbqueue._core.finish import Finish, FinishFlag, FinishKind
from sbqueue._core.scripts import FINISH_FIELDS

FLAVOURS = ("sync", "async")


class LoopThread:
    """An event loop running in a daemon thread; :meth:`run` blocks until a coroutine finishes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="queue-flavour-loop", daemon=True)
        self._thread.start()

    def run(self, awaitable: Any, timeout: float = 60.0) -> Any:
        async def wrapper() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def close(self) -> None:
        async def shutdown_tasks() -> None:
            await self.loop.shutdown_asyncgens()

        self.run(shutdown_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class AsyncProxy:
    """Synchronous face of an async object: calls that return awaitables are run to completion.

    Results are wrapped again (jobs, lists of jobs, the queue itself), so a whole test can be written
    against the sync API. ``isinstance(proxy, sbqueue.Job)`` holds for a wrapped job.
    """

    def __init__(self, target: Any, runner: LoopThread, queue_proxy: AsyncProxy | None = None) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_queue_proxy", queue_proxy or self)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the wrapped object's class
        return type(self._target)

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, sbqueue.AsyncQueue):
            return self._queue_proxy if value is self._queue_proxy._target else AsyncProxy(value, self._runner)
        if isinstance(value, sbqueue.Job):
            return AsyncProxy(value, self._runner, self._queue_proxy)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        return value

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not isinstance(value, type):
            return self._caller(value)
        return self._wrap(value)

    def _caller(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            if inspect.isawaitable(out):
                out = self._runner.run(out)
            return self._wrap(out)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"AsyncProxy({self._target!r})"


class QueueFactory:
    """Builds queues of one flavour on the test Redis under the test's prefix; closes them after."""

    def __init__(self, flavour: str, redis_url: str, prefix: str) -> None:
        self.flavour = flavour
        self.redis_url = redis_url
        self.prefix = prefix
        self._runner = LoopThread() if flavour == "async" else None
        self._made: list[Any] = []

    def __call__(self, name: str = "q", **kwargs: Any) -> Any:
        kwargs.setdefault("prefix", self.prefix)
        kwargs.setdefault("connection", self.redis_url)
        if self._runner is None:
            queue: Any = sbqueue.Queue(name, **kwargs)
        else:
            queue = AsyncProxy(self._runner.run(_make_async(name, kwargs)), self._runner)
        self._made.append(queue)
        return queue

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the async flavour's loop (sync flavour: a fresh loop)."""
        if self._runner is None:
            return asyncio.run(coro)
        return self._runner.run(coro)

    def close(self) -> None:
        for queue in self._made:
            queue.close()
        if self._runner is not None:
            self._runner.close()


async def _make_async(name: str, kwargs: dict[str, Any]) -> sbqueue.AsyncQueue:
    return sbqueue.AsyncQueue(name, **kwargs)  # the client binds to the loop that first uses it


@pytest.fixture(params=FLAVOURS, name="queue_factory")
def queue_factory_fixture(request: pytest.FixtureRequest, redis_url: str, prefix: str) -> Iterator[QueueFactory]:
    """Fixture ``queue_factory``: ``queue_factory(name="q", **queue_kwargs)`` → a sync ``Queue`` or a
    proxied ``AsyncQueue``. Import ``queue_factory_fixture`` into a test module to use it."""
    factory = QueueFactory(request.param, redis_url, prefix)
    try:
        yield factory
    finally:
        factory.close()


# --- moving jobs like a worker would (finish_and_fetch) --------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def run_finish(
    queue: Any,
    groups: list[list[Any]] | None = None,
    *,
    fetch: int = 0,
    worker_id: str = "tw",
    worker_name: str = "",
    lock_ms: int = 30_000,
    now: int | None = None,
    limit_max: int = 0,
    limit_ms: int = 0,
    metrics_points: int = 0,
) -> tuple[list[int], list[tuple[str, str, dict[str, str]]], int, int]:
    """Call ``finish_and_fetch``; returns ``(codes, [(id, token, hash)], rate_limit_ttl, next_delayed)``."""
    groups = groups or []
    flat: list[Any] = []
    for group in groups:
        assert len(group) == len(FINISH_FIELDS), group
        flat += group
    now = now_ms() if now is None else now
    codes, jobs, ttl, nxt = queue._run(
        "finish_and_fetch",
        [now, worker_id, worker_name, lock_ms, fetch, limit_max, limit_ms, metrics_points, len(groups), *flat],
    )
    fetched = [(str(j[0]), str(j[1]), dict(zip(j[2][0::2], j[2][1::2], strict=True))) for j in jobs]
    return [int(c) for c in codes], fetched, int(ttl), int(nxt)


def fetch(queue: Any, n: int = 1, **kwargs: Any) -> list[tuple[str, str]]:
    """Move up to ``n`` jobs to active (locked with a token, as a worker does); returns ``[(id, token)]``."""
    _codes, jobs, _ttl, _next = run_finish(queue, fetch=n, **kwargs)
    return [(job_id, token) for job_id, token, _raw in jobs]


def finish_group(
    job_id: str,
    token: str,
    kind: str = "completed",
    value: str = '"ok"',
    *,
    stacktrace: str = "",
    due: int = 0,
    keep_count: int = -1,
    keep_age_s: int = 0,
    keep_limit: int = 1000,
    flags: str = "",
) -> list[Any]:
    """One finish group for ``finish_and_fetch``, encoded by the worker's record (``flags``: letters, e.g. "e")."""
    finish = Finish(job_id, token, FinishKind(kind), value, stacktrace, due, (keep_count, keep_age_s, keep_limit),
                    frozenset(FinishFlag(letter) for letter in flags))  # fmt: skip
    return finish.argv()


def complete(queue: Any, job_id: str, token: str, value: str = '"ok"', **kwargs: Any) -> int:
    """Complete an active job; returns the script's code (1 = ok)."""
    codes, _jobs, _ttl, _next = run_finish(queue, [finish_group(job_id, token, "completed", value, **kwargs)])
    return codes[0]


def fail(queue: Any, job_id: str, token: str, reason: str = "boom", **kwargs: Any) -> int:
    """Fail an active job for good (retries exhausted); returns the script's code."""
    kwargs.setdefault("flags", "e")
    kwargs.setdefault("stacktrace", '["Error: ' + reason + '"]')
    codes, _jobs, _ttl, _next = run_finish(queue, [finish_group(job_id, token, "failed", reason, **kwargs)])
    return codes[0]


def add_and_finish(queue: Any, kind: str = "completed", name: str = "job", data: Any = None, **add: Any) -> str:
    """Add a job, fetch it and complete or fail it. The queue must have nothing else runnable."""
    job = queue.add(name, data, **add)
    ((job_id, token),) = fetch(queue)
    assert job_id == job.id, (job_id, job.id)
    code = complete(queue, job_id, token) if kind == "completed" else fail(queue, job_id, token)
    assert code == 1
    return job_id
