"""End-to-end latency on an idle worker: from the producer's ``add`` call to the processor's first line.

    python -m benchmarks.bench_latency                # 400 jobs per engine
    python -m benchmarks.bench_latency --quick        # 40 jobs: CI checks that it runs (no timing assertion)

Each engine runs its own producer and its own worker in one process, as a service that enqueues and works
would: the producer stamps the wall clock just before ``add``, the processor returns the wall clock at its
first line, and the producer waits for that completion before the next job, after a short random pause —
so the worker is idle (blocked on the queue's marker) every time a job arrives. Latency = start - stamp.

Engines: sbqueue with a sync processor (threads), with an ``async def`` processor, with ``processes=2`` (a
pool of child processes), Node BullMQ (benchmarks/node_bench.js, op ``latency``) and bullmq from PyPI.
Starts its own redis-server (sbqueue's embedded server, persistence off); prints p50/p90/p99/max in ms and
the ratios of each sbqueue variant's p50 and p99 to Node's; saves ``latency-<stamp>.json`` under
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sbqueue
from sbqueue import embedded

from . import peers
from .__main__ import machine

HERE = Path(__file__).resolve().parent


def started_at(job: Any) -> float:
    """The processor of every sbqueue variant: the wall clock (ms) at its first line."""
    return time.time() * 1000


async def started_at_async(job: Any) -> float:
    return time.time() * 1000


def _pause() -> float:
    # 20-40 ms between jobs: long enough for the worker to go back to its blocking wait on the marker
    return random.uniform(0.02, 0.04)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": ordered[-1], "mean": statistics.fmean(ordered)}


def has_processes() -> bool:
    return "processes" in inspect.signature(sbqueue.Worker).parameters


# --- sbqueue ---------------------------------------------------------------------------------------
def sbqueue_latency(url: str, prefix: str, n: int, mode: str) -> list[float]:
    """``mode``: "threads", "asyncio" or "processes"."""
    q = sbqueue.Queue("lat", url, prefix=prefix)
    done = threading.Event()
    result: list[float] = []

    def on_completed(job: Any, value: Any) -> None:
        result.append(float(value))
        done.set()

    options: dict[str, Any] = {"concurrency": 1}
    processor: Any = started_at
    if mode == "asyncio":
        processor = started_at_async
    elif mode == "processes":
        processor, options = "benchmarks.bench_latency:started_at", {"processes": 2, "concurrency": 2}
    worker = sbqueue.Worker("lat", processor, url, prefix, **options)
    worker.on("completed", on_completed)
    worker.start()
    samples: list[float] = []
    try:
        q.add("warm-up", {})  # the first job pays for connections (and the children's start-up)
        if not done.wait(60):
            raise RuntimeError("the warm-up job did not complete in 60 s")
        for i in range(n):
            time.sleep(_pause())
            done.clear()
            t0 = time.time() * 1000
            q.add("lat", {"i": i})
            if not done.wait(30):
                raise RuntimeError(f"job {i} did not complete in 30 s")
            samples.append(result[-1] - t0)
    finally:
        worker.close()
        q.close()
    return samples


# --- Node BullMQ --------------------------------------------------------------------------------------------
def node_latency(url: str, prefix: str, n: int) -> list[float]:
    req = {"url": url, "prefix": prefix, "queue": "lat", "op": "latency", "n": n, "concurrency": 1}
    res = subprocess.run(["node", str(HERE / "node_bench.js"), json.dumps(req)], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"node latency benchmark failed: {res.stderr.strip()[-500:]}")
    return [float(x) for x in json.loads(res.stdout.strip().splitlines()[-1])["samples"]]


# --- bullmq (PyPI) ---------------------------------------------------------------------------------------------
def bullmq_py_latency(url: str, prefix: str, n: int) -> list[float]:
    import bullmq  # type: ignore[import-untyped]

    async def run() -> list[float]:
        q = bullmq.Queue("lat", {"connection": url, "prefix": prefix})
        done = asyncio.Event()
        result: list[float] = []

        async def processor(job: Any, token: str) -> float:
            return time.time() * 1000

        def on_completed(job: Any, value: Any, *_: Any) -> None:
            result.append(float(value))
            done.set()

        worker = bullmq.Worker("lat", processor, {"connection": url, "prefix": prefix, "concurrency": 1})
        worker.on("completed", on_completed)
        samples: list[float] = []
        try:
            await q.add("warm-up", {})
            await asyncio.wait_for(done.wait(), 60)
            for i in range(n):
                await asyncio.sleep(_pause())
                done.clear()
                t0 = time.time() * 1000
                await q.add("lat", {"i": i})
                await asyncio.wait_for(done.wait(), 30)
                samples.append(result[-1] - t0)
        finally:
            await worker.close()
            await q.close()
        return samples

    return asyncio.run(run())


def engines(wanted: list[str]) -> dict[str, Callable[[str, str, int], list[float]]]:
    table: dict[str, Callable[[str, str, int], list[float]]] = {
        "sbqueue-threads": lambda url, prefix, n: sbqueue_latency(url, prefix, n, "threads"),
        "sbqueue-asyncio": lambda url, prefix, n: sbqueue_latency(url, prefix, n, "asyncio"),
    }
    if has_processes():
        table["sbqueue-processes"] = lambda url, prefix, n: sbqueue_latency(url, prefix, n, "processes")
    table["node"] = node_latency
    if peers.bullmq_py_available():
        table["bullmq-py"] = bullmq_py_latency
    return {name: fn for name, fn in table.items() if name in wanted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_latency", description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=None, help="jobs per engine (default 400; 40 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--engines", default="sbqueue-threads,sbqueue-asyncio,sbqueue-processes,node,bullmq-py")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    n = args.n or (40 if args.quick else 400)
    wanted = [e for e in args.engines.split(",") if e]
    chosen = engines(wanted)
    home = tempfile.mkdtemp(prefix="sbqueue-bench-latency-")
    info = embedded.ensure_server(home, config={"appendonly": "no", "save": ""})
    meta = machine(info.version, n, 1)
    rows: list[dict[str, Any]] = []
    try:
        print(f"Redis {info.version} on {meta['host']}, {meta['cores']} cores; {n} jobs per engine, idle worker")
        for name, fn in chosen.items():
            stats = _percentiles(fn(info.url, f"lat{uuid.uuid4().hex[:8]}", n))
            rows.append({"engine": name, "n": n, **stats})
            print(f"  {name:<18} p50 {stats['p50']:6.2f} ms   p99 {stats['p99']:6.2f} ms", flush=True)
    finally:
        embedded.stop(home)
    print_table(rows)
    missing = [e for e in wanted if e not in chosen]
    if missing:
        print(f"not measured (not available here): {', '.join(missing)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": meta, "rows": rows}, indent=2) + "\n")
    print(f"saved {path}")
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'engine':<18}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    node = next((r for r in rows if r["engine"] == "node"), None)
    if node:
        head += f"{'p50 vs node':>13}{'p99 vs node':>13}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        line = f"{r['engine']:<18}{r['p50']:>9.2f}{r['p90']:>9.2f}{r['p99']:>9.2f}{r['max']:>9.2f}"
        if node:
            # < 1.00x: lower latency than Node's (the goal: p99 <= Node's)
            line += f"{r['p50'] / node['p50']:>12.2f}x{r['p99'] / node['p99']:>12.2f}x"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
