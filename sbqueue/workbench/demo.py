"""``sbqueue demo`` / ``make demo``: the end-to-end tour on a real Redis.

1. add jobs and process them with a real worker (the engine at work);
2. plant every incident of :mod:`sbqueue.workbench.scenarios`, each on its own queue (and a running latency incident
   of :mod:`sbqueue.workbench.latency_scenarios`, stopped once its runbook has looked at it);
3. run the matching runbook against each (papermill, ``dry_run=False``) and render HTML reports;
4. write ``reports/index.html`` linking them: a status badge, time and cause per report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import time
from pathlib import Path
from typing import Any

from sbqueue.connection import connect, embedded, mask_url, url_of
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.worker import Worker
from sbqueue.workbench import latency_scenarios, reports, scenarios

PREFIX = "sbqueue-demo"

#: (report title, scenario, runbook, extra runbook parameters)
PLAN: list[tuple[str, str | None, str, dict[str, Any]]] = [
    ("Stalled jobs: a worker killed -9", "stalled", "stalled-jobs", {"force": True}),
    ("Failing jobs: transient ones retried, permanent ones named", "failing", "failed-jobs", {}),
    ("Stuck: no workers", "stuck_no_workers", "stuck-jobs", {}),
    ("Stuck: queue paused", "paused", "stuck-jobs", {}),
    ("Stuck: rate limited", "rate_limited", "stuck-jobs", {}),
    ("Stuck: delayed jobs not due", "delayed_pileup", "stuck-jobs", {}),
    ("Memory: completed jobs kept forever", "memory_bloat", "redis-memory", {"max_age_hours": 0.0}),
    ("Redis health: evicting maxmemory-policy", "evicting_policy", "redis-health", {"window_s": 0.5}),
    ("Latency: too few workers for the arrivals", "under_provisioned", "job-latency",
     {"window_s": 60.0, "max_wait_s": 1.0, "sample_s": 1.0}),
    ("Queue report: every demo queue", None, "queue-report", {}),
]


def _process(job: Any) -> dict[str, int]:
    if job.data.get("fail"):
        raise RuntimeError(f"demo failure for order {job.data['order']}")
    time.sleep(random.uniform(0, 0.005))
    return {"order": job.data["order"], "ok": 1}


def _engine_tour(client: Any, jobs: int) -> None:
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
        running = contextlib.ExitStack()  # a latency incident runs (producers, workers) while its runbook looks
        if scenario is not None:
            if scenario == "evicting_policy" and not embedded.started_by_sbqueue(client):
                print(f"skip {scenario}: it only changes a server sbqueue started itself")
                continue
            plant = scenarios.SCENARIOS.get(scenario) or latency_scenarios.LATENCY_SCENARIOS[scenario]
            planted = plant(client, PREFIX, scenario.replace("_", "-"))
            if isinstance(planted, latency_scenarios.Incident):
                running.enter_context(planted)
            queue = planted.queue
            planted_text = f"{planted.scenario}: {planted.description}"
            print(f"planted {planted_text}")
        notebook_path, html_path = reports.timestamped(f"{runbook}-{queue or 'all'}", out)  # never overwritten
        started = time.monotonic()
        with running:
            notebook = reports.run(
                runbook, {"prefix": PREFIX, "queue": queue, "dry_run": False, **params} if runbook != "queue-report"
                else {"prefix": PREFIX, "queue": None},
                output=notebook_path, html_path=html_path,
            )  # fmt: skip
        summary = reports.summary_of(notebook)  # from the report's verdict banner
        verdict = summary["verdict"]
        print(f"  ran {runbook} in {time.monotonic() - started:.1f} s -> {html_path}")
        for line in verdict.splitlines()[:3]:
            print(f"    {line}")
        entries.append({"title": title, "href": html_path.name, "planted": planted_text, "verdict": verdict,
                        "outcome": summary["outcome"], "cause": summary["cause"], "todo": summary["todo"],
                        "time": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    index = reports.write_index(entries, out / "index.html")
    if embedded.started_by_sbqueue(client):
        client.config_set("maxmemory-policy", "noeviction")  # leave the embedded server as we found it
    print(f"\nreports written: open {index}")
    default_server = embedded.status()  # the one `sbqueue server stop` stops
    if default_server is not None and default_server.url == url:
        print(f"the embedded Redis keeps running at {mask_url(url)} (data in its folder; `sbqueue server status`); "
              "stop it with: sbqueue server stop   (or make server-stop)")
    return 0
