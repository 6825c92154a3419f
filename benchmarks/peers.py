"""One function per (engine, operation): each returns elapsed seconds for ``n`` jobs.

Engines: sbqueue, Node BullMQ 6.7 (via benchmarks/node_bench.js), bullmq 3.4.4 from PyPI (optional: it is
skipped, and reported as such, when not installed — ``pip install 'sbqueue[bench]'``).
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
