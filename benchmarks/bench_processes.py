"""Process-pool benchmark: ``Worker(processes=2)`` vs the thread worker at the same concurrency (4), one Redis.

1. **cpu**: each job does ~5 ms of pure-Python work (a fixed number of loop iterations, calibrated at start:
   threads share the GIL, so the work must be counted, not timed). Target: processes >= 1.8x threads.
2. **noop**: jobs that return at once: what a job costs to hand to a child and back. Target: >= 0.5x threads.

Each measurement pre-fills the queue, starts the worker and times from its first ``active`` event to the last
completion (the children's start-up, ~1 s, is not counted). It starts its own redis-server (the embedded server
in a temporary home, persistence off) and stops it at the end. Usage::

    python -m benchmarks.bench_processes            # cpu N=400, noop N=3000, 3 repeats
    python -m benchmarks.bench_processes --quick    # small N, 1 repeat (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sbqueue
from sbqueue import embedded

HERE = Path(__file__).resolve().parent
#: the children import the processors by this path (run from the repository root, as ``python -m benchmarks...``)
MODULE = "benchmarks.bench_processes"
TARGETS = {"cpu": 1.8, "noop": 0.5}


def spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def cpu_job(job: Any) -> int:
    return spin(int(job.data["n"]))


def noop_job(job: Any) -> None:
    return None


def calibrate(ms: float = 5.0) -> int:
    """Iterations of :func:`spin` that take about ``ms`` on this machine (one thread, best of five)."""
    n = 20_000
    best = min(_timed(n) for _ in range(5))
    return max(1000, int(n * ms / 1000 / best))


def _timed(n: int) -> float:
    t = time.perf_counter()
    spin(n)
    return time.perf_counter() - t


def measure(url: str, scenario: str, mode: str, n: int, iterations: int, concurrency: int) -> float:
    """Jobs/s of one run: ``mode`` "threads" or "processes" (2 children), the same concurrency either way."""
    prefix = f"benchp{uuid.uuid4().hex[:8]}"
    q = sbqueue.Queue("p", url, prefix=prefix)
    data = {"n": iterations} if scenario == "cpu" else {}
    for start in range(0, n, 1000):
        q.add_bulk([{"name": scenario, "data": data} for _ in range(start, min(start + 1000, n))])
    path = f"{MODULE}:{scenario}_job"
    kw: dict[str, Any] = {"concurrency": concurrency}
    if mode == "processes":
        kw["processes"] = 2
    worker = sbqueue.Worker("p", path, url, prefix, remove_on_complete=True, **kw)
    first = threading.Event()
    started: list[float] = []
    worker.on("active", lambda job: first.is_set() or (started.append(time.perf_counter()), first.set()))
    worker.start()
    try:
        first.wait(120)
        while worker.processed < n:
            time.sleep(0.002)
        elapsed = time.perf_counter() - started[0]
    finally:
        worker.close(10)
        q.obliterate(force=True)
        q.close()
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_processes", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-n", type=int, default=None, help="cpu jobs per measurement (default 400)")
    parser.add_argument("--noop-n", type=int, default=None, help="no-op jobs per measurement (default 3000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4,
                        help="both modes (default 4: with 2 children, 2 jobs wait ready for the next free one)")
    parser.add_argument("--quick", action="store_true", help="cpu 40, noop 200, 1 repeat (a smoke run)")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    sizes = {"cpu": args.cpu_n or (40 if args.quick else 400), "noop": args.noop_n or (200 if args.quick else 3000)}
    iterations = calibrate()
    home = tempfile.mkdtemp(prefix="sbqueue-bench-")
    info = embedded.ensure_server(home, config={"appendonly": "no", "save": ""})
    rows = []
    try:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"Redis {info.version}; cpu job = {iterations:,} iterations (~5 ms); concurrency {args.concurrency}; "
              f"repeats={args.repeats}; {os.cpu_count()} cores, load average {load:.2f} (processes need the "
              "cores free: other load lowers their ratio, not the threads')")  # fmt: skip
        for scenario, n in sizes.items():
            rates: dict[str, list[float]] = {"threads": [], "processes": []}
            for _ in range(args.repeats):
                for mode in rates:  # interleaved: a noisy neighbour hurts both alike
                    rates[mode].append(measure(info.url, scenario, mode, n, iterations, args.concurrency))
            row = {"scenario": scenario, "n": n, "repeats": args.repeats, "target": TARGETS[scenario],
                   **{f"{mode}_median": statistics.median(r) for mode, r in rates.items()},
                   **{f"{mode}_runs": r for mode, r in rates.items()}}  # fmt: skip
            row["ratio"] = row["processes_median"] / row["threads_median"]
            rows.append(row)
            print(f"  {scenario:<5} threads {row['threads_median']:>9,.0f} jobs/s   processes "
                  f"{row['processes_median']:>9,.0f} jobs/s", flush=True)  # fmt: skip
    finally:
        embedded.stop(home)
    print(f"\n{'scenario':<10}{'threads jobs/s':>16}{'processes jobs/s':>18}{'processes/threads':>19}{'target':>9}")
    for row in rows:
        verdict = "ok" if row["ratio"] >= row["target"] else "MISSED"
        print(f"{row['scenario']:<10}{row['threads_median']:>16,.0f}{row['processes_median']:>18,.0f}"
              f"{row['ratio']:>18.2f}x{row['target']:>7.1f}x {verdict}")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"processes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = {"iterations": iterations, "cores": os.cpu_count(), "concurrency": args.concurrency,
            "load_average_after": os.getloadavg()[0]}  # fmt: skip
    path.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
