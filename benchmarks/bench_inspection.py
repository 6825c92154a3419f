"""Inspection benchmark: typed DataFrames vs the raw floor, memory report vs ``redis-cli --memkeys``.

1. ``N`` completed jobs (added with ``Queue.add_bulk``, processed by a ``Worker``) -> ``Inspector.jobs()``
   (a typed frame: parsed JSON, UTC timestamps, durations), against the floor: ids + pipelined HGETALL
   in batches of 1000 + ``pd.DataFrame(rows)`` (untyped strings). py-bullmq's ``getJobs`` + DataFrame
   joins the table when the ``bullmq`` package is installed.
2. ``K`` keys (job-like hashes, lists, sets, streams) -> ``Inspector.memory_by_queue()`` and
   ``bigkeys()``, against ``redis-cli --memkeys`` on the same server.

3. With ``--dtype-backend``, instead of 1 and 2: the floor, ``jobs()`` and ``jobs(dtype_backend="pyarrow")``
   side by side, each in a fresh Python process on the same server: time, the frame's memory
   (``memory_usage(deep=True)``), the process's RSS growth (after, and peak while it ran), and the slowest
   single Redis call (server side: SLOWLOG of every call over 1 ms; client side: the longest round trip).

It starts its own redis-server (``sbqueue.connection.embedded`` in a temporary directory, free port) and stops it
at the end; no other Redis is touched. Usage::

    python benchmarks/bench_inspection.py                      # quick: 10k jobs, 20k keys
    python benchmarks/bench_inspection.py --jobs 100000 --keys 200000
    python benchmarks/bench_inspection.py --jobs 1000000 --dtype-backend
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import redis

from sbqueue import Queue, embedded
from sbqueue.engine.worker import Worker
from sbqueue.inspection import Inspector

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


# --- --dtype-backend: floor vs jobs() vs jobs(dtype_backend="pyarrow"), each in its own process -----------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _slowest_calls(client: Any) -> Callable[[], tuple[float, int]]:
    """Time every command and pipeline of ``client`` (client side: send to reply, in ms); returns a getter of
    the longest and of the number of script calls."""
    longest = [0.0]
    scripts = [0]
    command, pipeline = client.execute_command, client.pipeline

    def timed(*args: Any, **kw: Any) -> Any:
        scripts[0] += str(args[0]).upper() in ("EVALSHA", "EVAL")
        start = time.perf_counter()
        try:
            return command(*args, **kw)
        finally:
            longest[0] = max(longest[0], (time.perf_counter() - start) * 1000)

    def timed_pipeline(*args: Any, **kw: Any) -> Any:
        pipe = pipeline(*args, **kw)
        execute = pipe.execute

        def run(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return execute(*a, **k)
            finally:
                longest[0] = max(longest[0], (time.perf_counter() - start) * 1000)

        pipe.execute = run
        return pipe

    client.execute_command, client.pipeline = timed, timed_pipeline
    return lambda: (longest[0], scripts[0])


def child(method: str, url: str) -> dict[str, Any]:
    """One measurement in this (fresh) process: seconds, frame bytes, RSS growth after and at peak."""
    import pyarrow  # noqa: F401  # imported before the baseline: the library itself is not the result

    r = redis.Redis.from_url(url, decode_responses=True)
    insp = Inspector(url, prefix=PREFIX, progress=False)
    longest = _slowest_calls(r if method == "floor" else insp.client)
    run = {
        "floor": lambda: floor(r),
        "default": lambda: insp.jobs("jobs", "completed"),
        "pyarrow": lambda: insp.jobs("jobs", "completed", dtype_backend="pyarrow"),
    }[method]
    base = peak = _rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    df = run()
    secs = time.perf_counter() - start
    done.set()
    sampler.join()
    after = _rss()
    return {"method": method, "seconds": secs, "rows": len(df), "frame_bytes": int(df.memory_usage(deep=True).sum()),
            "rss_after": after - base, "rss_peak": max(peak, after) - base, "client_max_ms": longest()[0],
            "script_calls": longest()[1],
            "parse_errors": int(df["parse_error"].notna().sum()) if "parse_error" in df else 0}  # fmt: skip


def _name(entry: dict[str, Any]) -> str:
    command = entry["command"]
    return command.decode(errors="replace") if isinstance(command, bytes) else str(command)


def backends(r: redis.Redis, url: str, n: int, repeat: int) -> None:
    """Floor, jobs() and jobs(dtype_backend="pyarrow") on ``n`` completed jobs, rounds interleaved."""
    r.config_set("slowlog-max-len", 100_000)
    best: dict[str, dict[str, Any]] = {}
    slow: dict[str, list[Any]] = {"floor": [], "default": [], "pyarrow": []}
    scripts = {"floor": 0, "default": 0, "pyarrow": 0}
    for _ in range(repeat):
        for method in ("floor", "default", "pyarrow"):
            # every call over 1 ms (a script's own HMGETs are logged too: with no threshold they would overflow)
            r.config_set("slowlog-log-slower-than", 1000)
            r.slowlog_reset()
            out = subprocess.run([sys.executable, __file__, "--child", method, "--url", url], check=True,
                                 capture_output=True, text=True)  # fmt: skip
            slow[method] += r.slowlog_get(100_000)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            scripts[method] += got["script_calls"]
            assert got["rows"] == n and got["parse_errors"] == 0, got
            if method not in best or got["seconds"] < best[method]["seconds"]:
                best[method] = got
    r.config_set("slowlog-log-slower-than", 10_000)
    mib = 2**20
    floor_s, default, arrow = best["floor"]["seconds"], best["default"], best["pyarrow"]
    print(f"\n{n:,} completed jobs -> DataFrame, each in a fresh process (best of {repeat}; memory of that run)")
    print(f"  {'method':<42} {'seconds':>8} {'vs floor':>9} {'frame MiB':>10} {'RSS +MiB':>9} {'RSS peak':>9}"
          f" {'slowest call (server / client)':>31}")  # fmt: skip
    for method, label in (("floor", "floor: pipelined HGETALL + pd.DataFrame"), ("default", "Inspector.jobs()"),
                          ("pyarrow", 'Inspector.jobs(dtype_backend="pyarrow")')):  # fmt: skip
        got = best[method]
        server = max((e["duration"] for e in slow[method]), default=0) / 1000
        print(f"  {label:<42} {got['seconds']:>8.2f} {got['seconds'] / floor_s:>8.2f}x"
              f" {got['frame_bytes'] / mib:>10.0f} {got['rss_after'] / mib:>9.0f} {got['rss_peak'] / mib:>9.0f}"
              f" {server:>17.1f} ms / {got['client_max_ms']:>6.1f} ms")  # fmt: skip
    print(f"\n  pyarrow: {arrow['seconds'] / floor_s:.2f}x the floor's time (target <= 1.2x), "
          f"{arrow['frame_bytes'] / default['frame_bytes']:.2f}x the default frame's memory and "
          f"{arrow['rss_after'] / default['rss_after']:.2f}x its RSS growth (target <= 0.5x); "
          f"default jobs(): {default['seconds'] / floor_s:.2f}x the floor")
    for method in ("default", "pyarrow"):
        logged = sorted(e["duration"] / 1000 for e in slow[method] if _name(e).startswith("EVAL"))
        total = max(scripts[method], len(logged))
        calls = [0.0] * (total - len(logged)) + logged  # the calls under 1 ms count as 0 here

        def rank(q: float, calls: list[float] = calls) -> str:
            value = calls[min(int(len(calls) * q), len(calls) - 1)] if calls else 0.0
            return "< 1 ms" if value == 0 else f"{value:.1f} ms"

        print(f"  jobs({method}) script calls, server side, all {repeat} runs: {total}, {len(logged)} over 1 ms, "
              f"median {rank(0.5)}, p99 {rank(0.99)}, max {rank(1.0)}, {sum(d > 50 for d in logged)} over 50 ms")
    # a single-key command cannot take 50 ms of work: such entries are the machine pausing Redis
    stalls = sorted(e["duration"] / 1000 for e in slow["floor"] if _name(e).startswith("HGETALL"))
    print(f"  floor: {len(stalls)} single HGETALLs logged over 1 ms, {sum(d > 50 for d in stalls)} over 50 ms "
          f"(longest {max(stalls, default=0):.1f} ms): time Redis was paused by the machine, not work")
    load = os.getloadavg()
    print(f"  conditions: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
          f"(1/5/15 min) after the run, Python {platform.python_version()}, pandas {pd.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="completed jobs (default 10000; issue: 100000)")
    parser.add_argument("--keys", type=int, default=20_000, help="keys for the memory report (issue: 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the fastest counts")
    parser.add_argument("--dtype-backend", action="store_true",
                        help="floor vs jobs() vs jobs(dtype_backend='pyarrow') only (issue: --jobs 1000000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.url)))
        return 0
    home = Path(tempfile.mkdtemp(prefix="sbqueue-bench-"))
    try:
        server = embedded.ensure_server(home=home)
        r = redis.Redis.from_url(server.url, decode_responses=True)
        r.config_set("appendonly", "no")  # loading speed only; nothing here needs durability
        print(f"redis-server {server.version} on port {server.port} (own instance in {home})")

        t0 = time.perf_counter()
        fill_jobs(r, args.jobs)
        print(f"{args.jobs} completed jobs created in {time.perf_counter() - t0:.1f} s")
        if args.dtype_backend:
            backends(r, server.url, args.jobs, args.repeat)
            r.close()
            return 0
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
