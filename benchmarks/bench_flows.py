"""Flow benchmark: sbqueue vs Node BullMQ 6.7.6 on the same Redis, same run, ratios printed.

1. **add**: ``K`` trees of 1 parent + ``C`` children (default 1,000) in another queue, one
   ``FlowProducer.add`` each (sbqueue: one Lua call per tree; Node: one MULTI of per-node scripts).
2. **process**: ``M`` flows of 1 parent + 10 children (pre-added with sbqueue's ``FlowProducer.add_bulk``, the
   same keys for both), workers at concurrency ``c`` (default 100) on the children's and the parents' queues,
   timed until every parent completed; reported as jobs/s (parents + children).

It starts its own redis-server (``sbqueue.connection.embedded`` in a temporary directory, persistence off) and stops it
at the end. Usage::

    python -m benchmarks.bench_flows                   # K=20 trees of 1+1000, M=2000 flows of 1+10, c=100
    python -m benchmarks.bench_flows --quick           # K=3, M=200 (a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sbqueue
from sbqueue import embedded

HERE = Path(__file__).resolve().parent
PARENTS, CHILDREN = "fp", "fc"


def _node(req: dict[str, Any]) -> float:
    res = subprocess.run(["node", str(HERE / "node_bench.js"), json.dumps(req)], capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"node benchmark failed: {res.stderr.strip()[-800:]}")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])


def tree(k: int, children: int) -> dict[str, Any]:
    return {"name": "parent", "queue_name": PARENTS, "data": {"k": k},
            "children": [{"name": "child", "queue_name": CHILDREN, "data": {"i": i}} for i in range(children)]}


def add_sbqueue(url: str, prefix: str, trees: int, children: int) -> float:
    fp = sbqueue.FlowProducer(url, prefix=prefix)
    try:
        t = time.perf_counter()
        for k in range(trees):
            fp.add(tree(k, children))
        return time.perf_counter() - t
    finally:
        fp.close()


def add_node(url: str, prefix: str, trees: int, children: int) -> float:
    return _node({"url": url, "prefix": prefix, "queue": PARENTS, "childQueue": CHILDREN, "op": "flowAdd",
                  "n": trees, "children": children, "concurrency": 1})  # fmt: skip


def prefill(url: str, prefix: str, flows: int) -> None:
    fp = sbqueue.FlowProducer(url, prefix=prefix)
    for start in range(0, flows, 100):
        fp.add_bulk([tree(k, 10) for k in range(start, min(start + 100, flows))])
    fp.close()


def process_sbqueue(url: str, prefix: str, flows: int, concurrency: int) -> float:
    async def child(job: Any) -> Any:
        return job.data["i"]

    async def parent(job: Any) -> None:
        return None

    kids = sbqueue.Worker(CHILDREN, child, url, prefix, concurrency=concurrency)
    parents = sbqueue.Worker(PARENTS, parent, url, prefix, concurrency=concurrency)

    async def run() -> float:
        t = time.perf_counter()
        tasks = [asyncio.create_task(kids.run_async()), asyncio.create_task(parents.run_async())]
        while parents.processed < flows:
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - t
        kids.close()
        parents.close()
        await asyncio.gather(*tasks)
        return elapsed

    return asyncio.run(run())


def process_node(url: str, prefix: str, flows: int, concurrency: int) -> float:
    return _node({"url": url, "prefix": prefix, "queue": PARENTS, "childQueue": CHILDREN, "op": "flowProcess",
                  "n": flows, "concurrency": concurrency})  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_flows", description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=20, help="trees added per measurement (default 20)")
    parser.add_argument("--children", type=int, default=1000, help="children per added tree (default 1000)")
    parser.add_argument("--flows", type=int, default=2000, help="flows of 1+10 processed (default 2000)")
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 trees, 200 flows, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.trees, args.flows, args.repeats = 3, 200, 1
    home = tempfile.mkdtemp(prefix="sbqueue-bench-flows-")
    info = embedded.ensure_server(home, config={"appendonly": "no", "save": ""})
    rows: list[tuple[str, str, float, str]] = []
    try:
        print(f"Redis {info.version}; {args.trees} trees of 1+{args.children}; {args.flows} flows of 1+10 at "
              f"c={args.concurrency}; {args.repeats} repeats (median)")  # fmt: skip
        jobs_per_tree = 1 + args.children
        for engine, fn in (("sbqueue", add_sbqueue), ("node", add_node)):
            rates = [args.trees * jobs_per_tree / fn(info.url, f"bf{uuid.uuid4().hex[:8]}", args.trees, args.children)
                     for _ in range(args.repeats)]  # fmt: skip
            rows.append((f"add tree 1+{args.children}", engine, statistics.median(rates), "jobs/s"))
            print(f"  add tree      {engine:<8} {statistics.median(rates):>10,.0f} jobs/s", flush=True)
        for engine, pfn in (("sbqueue", process_sbqueue), ("node", process_node)):
            rates = []
            for _ in range(args.repeats):
                prefix = f"bf{uuid.uuid4().hex[:8]}"
                prefill(info.url, prefix, args.flows)
                rates.append(args.flows * 11 / pfn(info.url, prefix, args.flows, args.concurrency))
            rows.append((f"process flows c={args.concurrency}", engine, statistics.median(rates), "jobs/s"))
            print(f"  process flows {engine:<8} {statistics.median(rates):>10,.0f} jobs/s", flush=True)
    finally:
        embedded.stop(home)
    by = {(op, e): rate for op, e, rate, _u in rows}
    print(f"\n{'operation':<26}{'sbqueue':>14}{'node':>14}{'sbqueue/node':>14}")
    for op in dict.fromkeys(op for op, *_ in rows):
        s, n = by[(op, "sbqueue")], by[(op, "node")]
        print(f"{op:<26}{s:>14,.0f}{n:>14,.0f}{s / n:>13.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
