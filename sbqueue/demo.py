"""``sbqueue demo`` / ``make demo``: the end-to-end tour on a real Redis.

1. add jobs and process them with a real worker (the engine at work);
2. plant every incident of :mod:`sbqueue.scenarios`, each on its own queue;
3. run the matching runbook against each (papermill, ``dry_run=False``) and render HTML reports;
4. write ``reports/index.html`` linking them, with each verdict.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from typing import Any

from . import embedded, reports, scenarios
from .connection import connect, mask_url, url_of

PREFIX = "sbqueue-demo"

#: (report title, scenario, runbook, extra runbook parameters)
PLAN: list[tuple[str, str | None, str, dict[str, Any]]] = [
    ("Stalled jobs: a worker killed -9", "stalled", "stalled-jobs", {"force": True}),
    ("Failing jobs: retry one signature", "failing", "failed-jobs", {"signature": "invalid email"}),
    ("Stuck: no workers", "stuck_no_workers", "stuck-jobs", {}),
    ("Stuck: queue paused", "paused", "stuck-jobs", {}),
    ("Stuck: rate limited", "rate_limited", "stuck-jobs", {}),
    ("Stuck: delayed jobs not due", "delayed_pileup", "stuck-jobs", {}),
    ("Memory: completed jobs kept forever", "memory_bloat", "redis-memory", {"max_age_hours": 0.0}),
    ("Redis health: evicting maxmemory-policy", "evicting_policy", "redis-health", {"window_s": 0.5}),
    ("Queue report: every demo queue", None, "queue-report", {}),
]


def _process(job: Any) -> dict[str, int]:
    if job.data.get("fail"):
        raise RuntimeError(f"demo failure for order {job.data['order']}")
    time.sleep(random.uniform(0, 0.005))
    return {"order": job.data["order"], "ok": 1}


def _engine_tour(client: Any, jobs: int) -> None:
    from ._sync.queue import Queue
    from .worker import Worker

    queue = Queue("orders", client, prefix=PREFIX)
    queue.obliterate(force=True)
    rng = random.Random(7)
    queue.add_bulk([{"name": "process-order", "data": {"order": i, "fail": rng.random() < 0.05}} for i in range(jobs)])
    print(f"added {jobs} jobs to 'orders': {queue.get_job_counts('waiting')}")
    worker = Worker("orders", _process, client, PREFIX, concurrency=20, name="demo")
    start = time.monotonic()
    worker.start()
    while sum(queue.get_job_counts("completed", "failed").values()) < jobs and time.monotonic() - start < 60:
        time.sleep(0.05)
    worker.close()
    print(f"processed in {time.monotonic() - start:.2f} s: {queue.get_job_counts('completed', 'failed')}")


def run_demo(args: argparse.Namespace) -> int:
    client = connect(args.url)
    url = url_of(client)
    print(f"Redis: {mask_url(url)}")
    _engine_tour(client, args.jobs)
    out = Path(args.reports).resolve()
    os.environ["SBQUEUE_REDIS_URL"] = url  # the runbook kernels find the server; no URL lands in a notebook
    entries = []
    for title, scenario, runbook, params in PLAN:
        planted_text = ""
        queue = None
        if scenario is not None:
            if scenario == "evicting_policy" and not embedded.started_by_sbqueue(client):
                print(f"skip {scenario}: it only changes a server sbqueue started itself")
                continue
            planted = scenarios.SCENARIOS[scenario](client, PREFIX, scenario.replace("_", "-"))
            queue = planted.queue
            planted_text = f"{planted.scenario}: {planted.description}"
            print(f"planted {planted_text}")
        slug = f"{runbook}-{queue or 'all'}"
        started = time.monotonic()
        notebook = reports.run(
            runbook, {"prefix": PREFIX, "queue": queue, "dry_run": False, **params} if runbook != "queue-report"
            else {"prefix": PREFIX, "queue": None},
            output=out / f"{slug}.ipynb", html_path=out / f"{slug}.html",
        )  # fmt: skip
        verdict = reports.verdict_of(notebook)
        print(f"  ran {runbook} in {time.monotonic() - started:.1f} s -> {out / (slug + '.html')}")
        for line in verdict.splitlines()[:3]:
            print(f"    {line}")
        entries.append({"title": title, "href": f"{slug}.html", "planted": planted_text, "verdict": verdict})
    index = reports.write_index(entries, out / "index.html")
    if embedded.started_by_sbqueue(client):
        client.config_set("maxmemory-policy", "noeviction")  # leave the embedded server as we found it
    print(f"\nreports written: open {index}")
    return 0
