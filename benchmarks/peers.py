"""One function per (engine, operation): each returns elapsed seconds for ``n`` jobs.

Engines: sbqueue, Node BullMQ 6.7 (via benchmarks/node_bench.js), bullmq 3.4.4 and RQ 3.0 from PyPI (optional:
skipped, and reported as such, when not installed — ``pip install 'sbqueue[bench]'``). RQ runs one job at a
time per worker process, so its "process" rows are one SimpleWorker whatever the concurrency (see
:data:`NOTES`). arq is not measured: it pins redis-py < 6, which bullmq 3.4 cannot share a venv with.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import sbqueue

HERE = Path(__file__).resolve().parent


def _prefill(url: str, prefix: str, queue: str, n: int) -> None:
    q = sbqueue.Queue(queue, url, prefix=prefix)
    for start in range(0, n, 1000):
        q.add_bulk([{"name": "bench", "data": {"i": i}} for i in range(start, min(start + 1000, n))])
    q.close()


# --- sbqueue ---------------------------------------------------------------------------------------
def sbqueue_op(url: str, prefix: str, queue: str, op: str, n: int, concurrency: int) -> float:
    q = sbqueue.Queue(queue, url, prefix=prefix)
    try:
        if op == "add":
            t = time.perf_counter()
            for i in range(n):
                q.add("bench", {"i": i})
            return time.perf_counter() - t
        if op == "addBulk":
            t = time.perf_counter()
            for start in range(0, n, 1000):
                q.add_bulk([{"name": "bench", "data": {"i": i}} for i in range(start, min(start + 1000, n))])
            return time.perf_counter() - t
        _prefill(url, prefix, queue, n)

        async def noop(job: Any) -> None:
            return None

        worker = sbqueue.Worker(queue, noop, url, prefix, concurrency=concurrency)

        async def run() -> float:
            t = time.perf_counter()
            task = asyncio.create_task(worker.run_async())
            while worker.processed < n:
                await asyncio.sleep(0.002)
            elapsed = time.perf_counter() - t
            worker.close()
            await task
            return elapsed

        return asyncio.run(run())
    finally:
        q.close()


# --- Node BullMQ --------------------------------------------------------------------------------------
def node_op(url: str, prefix: str, queue: str, op: str, n: int, concurrency: int) -> float:
    if op == "process":
        _prefill(url, prefix, queue, n)
    req = {"url": url, "prefix": prefix, "queue": queue, "op": op, "n": n, "concurrency": concurrency}
    res = subprocess.run(["node", str(HERE / "node_bench.js"), json.dumps(req)], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"node benchmark failed: {res.stderr.strip()[-500:]}")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])


# --- RQ (PyPI) ------------------------------------------------------------------------------------------------
#: what a reader of the table must know about an engine's rows
NOTES = {"rq": {"process": "RQ: one job at a time per worker process (SimpleWorker), whatever the concurrency"}}


def rq_available() -> bool:
    try:
        import rq  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def rq_noop(i: int) -> None:
    """The RQ job function (RQ stores its import path: benchmarks.peers.rq_noop)."""
    return None


def rq_op(url: str, prefix: str, queue: str, op: str, n: int, concurrency: int) -> float:
    import redis
    import rq

    conn = redis.Redis.from_url(url)
    q = rq.Queue(f"{prefix}-{queue}", connection=conn)
    try:
        if op == "add":
            t = time.perf_counter()
            for i in range(n):
                q.enqueue(rq_noop, i)
            return time.perf_counter() - t
        batches = [[rq.Queue.prepare_data(rq_noop, (i,)) for i in range(start, min(start + 1000, n))]
                   for start in range(0, n, 1000)]  # fmt: skip
        if op == "addBulk":
            t = time.perf_counter()
            for batch in batches:
                q.enqueue_many(batch)
            return time.perf_counter() - t
        for batch in batches:
            q.enqueue_many(batch)
        worker = rq.SimpleWorker([q], connection=conn)
        t = time.perf_counter()
        worker.work(burst=True, logging_level="WARNING")
        elapsed = time.perf_counter() - t
        done = rq.registry.FinishedJobRegistry(queue=q).count
        if done != n:
            raise RuntimeError(f"RQ finished {done} of {n} jobs")
        return elapsed
    finally:
        q.empty()
        conn.close()


# --- bullmq (PyPI) --------------------------------------------------------------------------------------
def bullmq_py_available() -> bool:
    try:
        import bullmq  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def bullmq_py_op(url: str, prefix: str, queue: str, op: str, n: int, concurrency: int) -> float:
    import bullmq

    async def run() -> float:
        q = bullmq.Queue(queue, {"connection": url, "prefix": prefix})
        try:
            if op == "add":
                t = time.perf_counter()
                for i in range(n):
                    await q.add("bench", {"i": i})
                return time.perf_counter() - t
            if op == "addBulk":
                t = time.perf_counter()
                for start in range(0, n, 1000):
                    await q.addBulk([{"name": "bench", "data": {"i": i}} for i in range(start, min(start + 1000, n))])
                return time.perf_counter() - t
            _prefill(url, prefix, queue, n)
            done = 0
            finished = asyncio.Event()

            async def noop(job: Any, token: str) -> None:
                return None

            def on_completed(*_args: Any) -> None:
                nonlocal done
                done += 1
                if done >= n:
                    finished.set()

            t = time.perf_counter()
            worker = bullmq.Worker(queue, noop, {"connection": url, "prefix": prefix, "concurrency": concurrency})
            worker.on("completed", on_completed)
            await finished.wait()
            elapsed = time.perf_counter() - t
            await worker.close()
            return elapsed
        finally:
            await q.close()

    return asyncio.run(run())
