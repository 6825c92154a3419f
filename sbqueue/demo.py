"""``sbqueue demo`` / ``make demo``: add jobs, process them with a real worker, show the result."""

from __future__ import annotations

import argparse
import random
import time

from .connection import connect, mask_url, url_of


def _process(job: object) -> dict[str, int]:
    data = getattr(job, "data", {})
    if data.get("fail"):
        raise RuntimeError(f"demo failure for order {data['order']}")
    time.sleep(random.uniform(0, 0.005))
    return {"order": data["order"], "ok": 1}


def run_demo(args: argparse.Namespace) -> int:
    from ._sync.queue import Queue
    from .worker import Worker

    client = connect(args.url)
    print(f"Redis: {mask_url(url_of(client))}")
    queue = Queue("demo-orders", client, prefix="sbqueue-demo")
    queue.obliterate(force=True)
    rng = random.Random(7)
    jobs = [{"name": "process-order", "data": {"order": i, "fail": rng.random() < 0.05}} for i in range(args.jobs)]
    queue.add_bulk(jobs)
    print(f"added {args.jobs} jobs: {queue.get_job_counts()}")
    worker = Worker("demo-orders", _process, client, "sbqueue-demo", concurrency=20, name="demo")
    start = time.monotonic()
    worker.start()
    while sum(queue.get_job_counts("completed", "failed").values()) < args.jobs and time.monotonic() - start < 60:
        time.sleep(0.05)
    worker.close()
    print(f"processed in {time.monotonic() - start:.2f} s: {queue.get_job_counts()}")
    failed = queue.get_failed(0, 2)
    for job in failed:
        print(f"  failed job {job.id}: {job.failed_reason}")
    return 0
