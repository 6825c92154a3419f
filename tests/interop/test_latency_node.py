"""The job-latency runbook on a queue served by Node BullMQ workers: they register in CLIENT LIST by name, so
their saturation is measured (and their concurrency estimated) as for sbqueue workers."""

from __future__ import annotations

import redis

from sbqueue.workbench import latency_scenarios
from sbqueue.workbench.runbook import diagnose_latency
from tests.interop.nodebridge import NodeDriver


def test_node_workers_too_few_for_the_arrivals(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    with node.spawn(prefix, "q", "work", concurrency=2, sleepMs=100, idleMs=60_000, timeoutMs=60_000) as proc:
        proc.wait_ready()
        # sbqueue producers at 40/s; no sbqueue worker: the one Node worker (2 x 0.1 s) serves ~20/s
        with latency_scenarios.under_provisioned(r, prefix, "q", rate=40, workers=0):
            finding = diagnose_latency("q", r, prefix, window_s=60, max_wait_s=0.3, sample_s=1.0)
    assert finding.cause == "workers saturated", finding.verdict()
    assert "1 worker x concurrency 2 (estimated) all busy" in finding.plan.iloc[0]["detail"]
    assert finding.verdict().startswith("ACTION NEEDED: add workers: arrival ")
