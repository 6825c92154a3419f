"""Side-by-side throughput benchmark: sbqueue vs Node BullMQ 6.7, bullmq and RQ (PyPI), one run, one Redis.

    python -m benchmarks                 # N=20000, 3 repeats (the issue's anchors)
    python -m benchmarks --quick         # N=2000, 1 repeat: CI checks that it runs (no timing assertion)
    python -m benchmarks --publish       # also write benchmarks/latest.json (what the README and notebook 07 show)

Starts its own redis-server (sbqueue's embedded server in a temporary home, persistence off, never your data),
prints a table of jobs/s (median, min-max) and the ratios sbqueue/<engine> (node, bullmq-py, rq), and saves
JSON (rows + the machine they came from) and CSV under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sbqueue import embedded

from . import peers

LATEST = Path(__file__).parent / "latest.json"
OPS = [("add one by one", "add", 0), ("add_bulk (1000/batch)", "addBulk", 0),
       ("process, c=10", "process", 10), ("process, c=100", "process", 100)]  # fmt: skip


def measure(fn: Callable[..., float], url: str, op: str, n: int, concurrency: int, repeats: int) -> list[float]:
    rates = []
    for _ in range(repeats):
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        seconds = fn(url, prefix, "q", op, n, concurrency)
        rates.append(n / seconds)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=None, help="jobs per measurement (default 20000; 2000 with --quick)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N=2000, 1 repeat (CI smoke run)")
    parser.add_argument("--engines", default="sbqueue,node,bullmq-py,rq")
    parser.add_argument("--slow-n", type=int, default=5000,
                        help="jobs per 'process' measurement of RQ (one job at a time: ~1-2k/s), default 5000")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--publish", action="store_true", help=f"also write {LATEST} (committed; the README quotes it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    args.n = args.n or (2000 if args.quick else 20_000)
    engines: dict[str, Callable[..., float]] = {"sbqueue": peers.sbqueue_op, "node": peers.node_op}
    if peers.bullmq_py_available():
        engines["bullmq-py"] = peers.bullmq_py_op
    if peers.rq_available():
        engines["rq"] = peers.rq_op
    wanted = [e for e in args.engines.split(",") if e]
    missing = [e for e in wanted if e not in engines]
    engines = {k: v for k, v in engines.items() if k in wanted}
    home = tempfile.mkdtemp(prefix="sbqueue-bench-")
    # like the anchors' Redis (a service that keeps nothing on disk): measure the engines, not fsync
    info = embedded.ensure_server(home, config={"appendonly": "no", "save": ""})
    rows = []
    meta = machine(info.version, args.n, args.repeats)
    try:
        print(f"Redis {info.version} ({info.binary}) on {meta['host']}, {meta['cpu']} x{meta['cores']}, "
              f"python {meta['python']}, node {meta['node']}; N={args.n}, repeats={args.repeats}")  # fmt: skip
        for label, op, conc in OPS:
            for engine, fn in engines.items():
                n = min(args.n, args.slow_n) if engine == "rq" and op == "process" else args.n
                rates = measure(fn, info.url, op, n, conc, args.repeats)
                note = peers.NOTES.get(engine, {}).get(op, "")
                rows.append({"operation": label, "engine": engine, "median": statistics.median(rates),
                             "min": min(rates), "max": max(rates), "n": n, "repeats": args.repeats,
                             "note": note})  # fmt: skip
                print(f"  {label:<24} {engine:<10} {statistics.median(rates):>10,.0f} jobs/s", flush=True)
    finally:
        embedded.stop(home)
    print_table(rows, list(engines))
    for note in dict.fromkeys(str(r["note"]) for r in rows if r["note"]):
        print(f"note: {note}")
    if missing:
        print(f"not measured (not installed): {', '.join(missing)}")
    saved = save(rows, meta, Path(args.out))
    if args.publish:
        shutil.copyfile(saved, LATEST)
        print(f"published {LATEST}")
    return 0


def machine(redis_version: str, n: int, repeats: int) -> dict[str, object]:
    """Where and how the numbers were measured (saved beside them)."""
    node = shutil.which("node")
    node_version = ""
    if node:
        node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "node": node_version, "redis": redis_version,
            "persistence": "off", "n": n, "repeats": repeats}  # fmt: skip


def print_table(rows: list[dict[str, object]], engines: list[str]) -> None:
    by = {(r["operation"], r["engine"]): r for r in rows}
    head = f"{'operation':<24}" + "".join(f"{e + ' jobs/s (min-max)':>30}" for e in engines)
    ratios = [e for e in engines if e != "sbqueue"]
    head += "".join(f"{'sbqueue/' + e:>18}" for e in ratios)
    print("\n" + head + "\n" + "-" * len(head))
    for label, _op, _c in OPS:
        line = f"{label:<24}"
        for e in engines:
            r = by[(label, e)]
            line += f"{r['median']:>14,.0f} ({r['min']:,.0f}-{r['max']:,.0f})".rjust(30)  # type: ignore[str-format]
        for e in ratios:
            line += f"{by[(label, 'sbqueue')]['median'] / by[(label, e)]['median']:>17.2f}x"  # type: ignore[operator]
        print(line)


def save(rows: list[dict[str, object]], meta: dict[str, object], out: Path) -> Path:
    """Write ``throughput-<stamp>.json`` ({"machine": meta, "rows": rows}) and ``.csv`` (rows); return the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"throughput-{stamp}.json"
    path.write_text(json.dumps({"machine": meta, "rows": rows}, indent=2) + "\n")
    with open(out / f"throughput-{stamp}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"saved {path} and .csv")
    return path


if __name__ == "__main__":
    sys.exit(main())
