"""Inspection benchmark: typed DataFrames vs the raw floor, memory report vs ``redis-cli --memkeys``.

1. ``N`` completed jobs (added with ``Queue.add_bulk``, processed by a ``Worker``) -> ``Inspector.jobs()``
   (a typed frame: parsed JSON, UTC timestamps, durations), against the floor: ids + pipelined HGETALL
   in batches of 1000 + ``pd.DataFrame(rows)`` (untyped strings). py-bullmq's ``getJobs`` + DataFrame
   joins the table when the ``bullmq`` package is installed.
2. ``K`` keys (job-like hashes, lists, sets, streams) -> ``Inspector.memory_by_queue()`` and
   ``bigkeys()``, against ``redis-cli --memkeys`` on the same server.

It starts its own redis-server (``sbqueue.embedded`` in a temporary directory, free port) and stops it
at the end; no other Redis is touched. Usage::

    python benchmarks/bench_inspection.py                      # quick: 10k jobs, 20k keys
    python benchmarks/bench_inspection.py --jobs 100000 --keys 200000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import redis

from sbqueue import Queue, embedded
from sbqueue.inspection import Inspector
from sbqueue.worker import Worker

PREFIX = "bench"


def race(methods: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, Any]]:
    """Fastest of ``repeat`` rounds per method (seconds) and its last result. Rounds interleave the
    methods, so a busy machine slows them all alike."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(times[name]), results[name]) for name in methods}


def fill_jobs(r: redis.Redis, n: int) -> None:
    q = Queue("jobs", r, prefix=PREFIX)
    for start in range(0, n, 1000):
        q.add_bulk([{"name": "render", "data": {"i": i, "customer": f"c{i % 97}", "items": [i, i + 1]}}
                    for i in range(start, min(start + 1000, n))])  # fmt: skip
    worker = Worker("jobs", lambda job: {"pages": job.data["i"] % 7}, r, PREFIX, concurrency=200, name="bench")
    worker.start()
    while q.get_job_counts("completed")["completed"] < n:
        time.sleep(0.1)
    worker.close()


def floor(r: redis.Redis) -> pd.DataFrame:
    """The raw floor: ids, pipelined HGETALL (1000 per pipeline), one untyped DataFrame."""
    ids = r.zrevrange(f"{PREFIX}:jobs:completed", 0, -1)
    rows: list[Any] = []
    for start in range(0, len(ids), 1000):
        pipe = r.pipeline(transaction=False)
        for job_id in ids[start : start + 1000]:
            pipe.hgetall(f"{PREFIX}:jobs:{job_id}")
        rows += pipe.execute()
    return pd.DataFrame(rows)


def py_bullmq(url: str) -> Callable[[], pd.DataFrame] | None:
    try:
        from bullmq import Queue as PyQueue  # type: ignore[import-not-found]
    except ImportError:
        return None

    def run() -> pd.DataFrame:
        async def go() -> list[Any]:
            queue = PyQueue("jobs", {"connection": url, "prefix": PREFIX})
            try:
                return list(await queue.getJobs(["completed"]))
            finally:
                await queue.close()

        jobs = asyncio.run(go())
        return pd.DataFrame([{"id": j.id, "name": j.name, "data": j.data, "returnvalue": j.returnvalue,
                              "timestamp": j.timestamp, "finishedOn": j.finishedOn} for j in jobs])  # fmt: skip

    return run


def watched(r: redis.Redis, fn: Callable[[], Any], into: list[Any]) -> Callable[[], Any]:
    """``fn`` with the slowlog entries (calls over the threshold) it caused appended to ``into``."""

    def run() -> Any:
        r.slowlog_reset()
        try:
            return fn()
        finally:
            into.extend(r.slowlog_get(128))

    return run


def describe_slow(entries: list[Any]) -> str:
    if not entries:
        return "none"
    worst = max(entries, key=lambda e: e["duration"])
    command = worst["command"]
    command = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return f"{len(entries)}, longest {worst['duration'] / 1000:.0f} ms ({command[:60]})"


def fill_keys(r: redis.Redis, n: int) -> None:
    """``n`` keys in 5 queues: mostly job hashes, plus logs lists, state sets and an events stream each."""
    pipe = r.pipeline(transaction=False)
    payload = json.dumps({"blob": "x" * 200})
    for i in range(n):
        queue = f"q{i % 5}"
        kind = i % 10
        if kind < 7:
            pipe.hset(f"{PREFIX}:{queue}:{i}", mapping={"name": "job", "data": payload, "timestamp": i, "opts": "{}"})
        elif kind < 9:
            pipe.rpush(f"{PREFIX}:{queue}:{i}:logs", "line one", "line two")
        else:
            pipe.set(f"{PREFIX}:{queue}:de:{i}", i)
        if i % 1000 == 999:
            pipe.execute()
    for q in range(5):
        pipe.zadd(f"{PREFIX}:q{q}:completed", {str(i): i for i in range(q, n, 5)})
        pipe.xadd(f"{PREFIX}:q{q}:events", {"event": "added", "jobId": "1"})
    pipe.execute()


def memkeys(port: int) -> float:
    start = time.perf_counter()
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--memkeys"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def table(title: str, rows: list[tuple[str, float | None, str]], base: float, ratio_label: str) -> None:
    print(f"\n{title}")
    print(f"  {'method':<48} {'seconds':>9} {ratio_label:>12}  notes")
    for name, secs, note in rows:
        if secs is None:
            print(f"  {name:<48} {'n/a':>9} {'':>12}  {note}")
        else:
            print(f"  {name:<48} {secs:>9.3f} {secs / base:>11.2f}x  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="completed jobs (default 10000; issue: 100000)")
    parser.add_argument("--keys", type=int, default=20_000, help="keys for the memory report (issue: 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the fastest counts")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="sbqueue-bench-"))
    try:
        server = embedded.ensure_server(home=home)
        r = redis.Redis.from_url(server.url, decode_responses=True)
        r.config_set("appendonly", "no")  # loading speed only; nothing here needs durability
        print(f"redis-server {server.version} on port {server.port} (own instance in {home})")

        t0 = time.perf_counter()
        fill_jobs(r, args.jobs)
        print(f"{args.jobs} completed jobs created in {time.perf_counter() - t0:.1f} s")
        # the target: no single Redis call over 50 ms while reading; the slowlog records any that is
        r.config_set("slowlog-log-slower-than", 50_000)
        insp = Inspector(r, prefix=PREFIX, progress=False)
        piped = Inspector(r, prefix=PREFIX, progress=False)
        piped._ctx.use_script = False
        methods: dict[str, Callable[[], Any]] = {
            "floor": lambda: floor(r),
            "insp": lambda: insp.jobs("jobs", "completed"),
            "piped": lambda: piped.jobs("jobs", "completed"),
        }
        run_py = py_bullmq(server.url)
        if run_py is not None:
            methods["py"] = run_py
        slow: dict[str, list[Any]] = {name: [] for name in methods}
        got = race({name: watched(r, fn, slow[name]) for name, fn in methods.items()}, args.repeat)
        t_floor, t_insp = got["floor"][0], got["insp"][0]
        assert len(got["floor"][1]) == len(got["insp"][1]) == len(got["piped"][1]) == args.jobs
        assert got["insp"][1].parse_error.isna().all()
        rows: list[tuple[str, float | None, str]] = [
            ("floor: pipelined HGETALL + pd.DataFrame", t_floor, "untyped strings"),
            ("Inspector.jobs(states='completed')", t_insp, "typed; one read-only Lua HMGET per batch"),
            ("Inspector.jobs, pipelines only (no +eval)", got["piped"][0], "typed; pipelined HMGET"),
        ]
        if run_py is None:
            rows.append(("py-bullmq Queue.getJobs + pd.DataFrame", None, "bullmq package not installed"))
        else:
            rows.append(("py-bullmq Queue.getJobs + pd.DataFrame", got["py"][0], "untyped"))
        table(f"{args.jobs} completed jobs -> DataFrame (best of {args.repeat})", rows, t_floor, "vs floor")
        for name, label in (("insp", "Inspector.jobs"), ("piped", "Inspector.jobs (pipelines)"), ("floor", "floor"),
                            ("py", "py-bullmq")):  # fmt: skip
            if name in slow:
                print(f"  Redis calls over 50 ms, {label}: {describe_slow(slow[name])}")

        r.flushdb()  # our own throw-away server
        t0 = time.perf_counter()
        fill_keys(r, args.keys)
        total = r.dbsize()
        print(f"\n{total} keys created in {time.perf_counter() - t0:.1f} s")
        mem_slow: dict[str, list[Any]] = {"cli": [], "by_queue": [], "big": []}
        mem = race({
            "cli": watched(r, lambda: memkeys(server.port), mem_slow["cli"]),
            "by_queue": watched(r, insp.memory_by_queue, mem_slow["by_queue"]),
            "big": watched(r, lambda: insp.bigkeys(top=50), mem_slow["big"]),
        }, args.repeat)  # fmt: skip
        (t_cli, _), (t_mem, by_queue), (t_big, big) = mem["cli"], mem["by_queue"], mem["big"]
        assert by_queue["keys"].sum() == total and big.attrs["scanned"] == total
        table(f"{total} keys memory report (best of {args.repeat})", [
            ("redis-cli --memkeys", t_cli, "biggest key per type"),
            ("Inspector.memory_by_queue()", t_mem, f"bytes per queue x role ({len(by_queue)} rows)"),
            ("Inspector.bigkeys(top=50)", t_big, "top 50 keys with type/length/ttl/role"),
        ], t_cli, "vs cli")  # fmt: skip
        for name, label in (("by_queue", "memory_by_queue"), ("big", "bigkeys"), ("cli", "redis-cli --memkeys")):
            print(f"  Redis calls over 50 ms, {label}: {describe_slow(mem_slow[name])}")
        summary = f"jobs() takes {t_insp / t_floor:.2f}x the floor's time"
        if run_py is not None:
            summary += f" and is {got['py'][0] / t_insp:.1f}x faster than py-bullmq"
        print(
            f"\n  {summary}; memory_by_queue is {t_cli / t_mem:.1f}x and bigkeys {t_cli / t_big:.1f}x faster "
            "than redis-cli --memkeys."
        )
        insp.close()
        piped.close()
        r.close()
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
