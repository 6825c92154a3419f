"""Chaos with flows: parents with 10 children in two queues while worker processes are SIGKILLed and Redis
restarts. Every parent completes exactly once, after all of its children; none is stuck; nothing is lost.

Sizes: ``SBQUEUE_FLOW_CHAOS_FLOWS`` (default 150 flows of 1 + 10 jobs).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sbqueue
from tests.chaos.harness import ROOT, RedisServer, env_int

FLOWS = env_int("SBQUEUE_FLOW_CHAOS_FLOWS", 150)
QUEUES = ("parents", "kids-a", "kids-b")
PREFIX = "fchaos"


def spawn(url: str, queue: str, name: str, logdir: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "sbqueue", "worker", queue, "tests.chaos.flow_processor:process", "--url", url,
           "--prefix", PREFIX, "--concurrency", "4", "--name", name, "--lock-duration", "1500",
           "--stalled-interval", "700", "--max-stalled-count", "1000", "--shutdown-timeout", "10"]  # fmt: skip
    env = {**os.environ, "SBQUEUE_REDIS_URL": url, "PYTHONUNBUFFERED": "1", "SBQUEUE_CHAOS_SLEEP_MS": "5-25"}
    with open(logdir / f"{name}.log", "wb") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


@pytest.mark.timeout(300)
def test_flow_chaos_every_parent_once_after_its_children(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    logdir = tmp_path / "logs"
    logdir.mkdir()
    workers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    spawned = 0
    try:
        fp = sbqueue.FlowProducer(server.url, prefix=PREFIX)
        roots = []
        for start in range(0, FLOWS, 50):
            trees = [{"name": "parent", "queue_name": "parents", "data": {"f": f}, "children": [
                {"name": "child", "queue_name": QUEUES[1 + i % 2], "data": {"i": i}} for i in range(10)]}
                for f in range(start, min(start + 50, FLOWS))]  # fmt: skip
            roots += [n.job.id for n in fp.add_bulk(trees)]
        fp.close()
        for queue in QUEUES:
            for _ in range(2 if queue != "parents" else 1):
                workers[f"w{spawned}"] = (queue, spawn(server.url, queue, f"w{spawned}", logdir))
                spawned += 1
        rng = random.Random(16)
        client = server.client(socket_timeout=5)
        t0 = time.monotonic()
        kills = restarts = 0
        deadline = t0 + 240
        parents = sbqueue.Queue("parents", server.url, prefix=PREFIX)
        while time.monotonic() < deadline:
            elapsed = time.monotonic() - t0
            if elapsed < 8:
                victim = rng.choice(sorted(workers))
                queue, proc = workers.pop(victim)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                workers[f"w{spawned}"] = (queue, spawn(server.url, queue, f"w{spawned}", logdir))
                spawned += 1
                if restarts == 0 and elapsed > 3:
                    server.stop("shutdown")
                    time.sleep(0.5)
                    server.start()
                    restarts += 1
                time.sleep(0.6)
                continue
            try:
                if int(client.zcard(f"{PREFIX}:parents:completed")) >= FLOWS:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert kills >= 8 and restarts == 1
        completed = set(client.zrange(f"{PREFIX}:parents:completed", 0, -1))
        assert completed == set(roots), f"{len(set(roots) - completed)} parents not completed"
        assert client.zcard(f"{PREFIX}:parents:waiting-children") == 0  # none stuck
        for queue in QUEUES:
            assert client.zcard(f"{PREFIX}:{queue}:failed") == 0, queue
        kids = {c for q in QUEUES[1:] for c in client.zrange(f"{PREFIX}:{q}:completed", 0, -1)}
        assert len(kids) == 10 * FLOWS  # lost 0
        finished_events = [f["jobId"] for _i, f in client.xrange(f"{PREFIX}:parents:events")
                           if f["event"] == "completed"]  # fmt: skip
        assert sorted(finished_events) == sorted(roots)  # exactly once each
        runs = client.hgetall(f"{PREFIX}:flowchaos:runs")
        for field, value in runs.items():
            assert value.split()[0] == "10", (field, value)  # every execution saw all ten children done
        # "after": each execution saw all ten values (above); and by Redis's own clock (stream ids, not the
        # workers' timestamps, which are taken before their calls), no parent started before a child of it finished
        started: dict[str, int] = {}
        for event_id, f in client.xrange(f"{PREFIX}:parents:events"):
            if f["event"] == "active":
                started.setdefault(f["jobId"], int(event_id.split("-")[0]))
        done_at = {}
        for queue in QUEUES[1:]:
            for event_id, f in client.xrange(f"{PREFIX}:{queue}:events"):
                if f["event"] == "completed":
                    done_at[f"{PREFIX}:{queue}:{f['jobId']}"] = int(event_id.split("-")[0])
        for root in roots:
            job = parents.get_job(root)
            assert job is not None and job.returnvalue == 10
            deps = job.get_dependencies()
            assert deps["unprocessed"] == [] and len(deps["processed"]) == 10
            assert started[root] >= max(done_at[key] for key in deps["processed"])
        parents.close()
        print(f"\nFLOW CHAOS flows={FLOWS} kills={kills} redis_restarts={restarts} parent_runs={len(runs)}")
    finally:
        for _queue, proc in workers.values():
            proc.kill()
            proc.wait(10)
        server.close()
