"""Chaos for process pools: a worker's child processes are SIGKILLed and segfault mid-job while jobs flow.

``sbqueue worker ... --processes 2`` runs in its own process on a Redis the test starts; for the chaos window the
test sends SIGKILL or SIGSEGV (alternately) to one of the worker's children every 0.4 s — replacements still
starting included. Every added job must end
completed, or failed with a reason that names the child's death; the worker must live through it, keep two
children, and stop cleanly on SIGTERM; a job interrupted by a kill is retried (its attempts show it).

    SBQUEUE_POOL_CHAOS_JOBS     jobs to add          (default 600)
    SBQUEUE_POOL_CHAOS_SECONDS  the chaos window     (default 12)
    SBQUEUE_POOL_CHAOS_MIN_AGE  kill only children running this many seconds (default 0)
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
from benchmarks.soak import child_pids
from tests.chaos.harness import ROOT, RedisServer, env_float

JOBS = int(env_float("SBQUEUE_POOL_CHAOS_JOBS", 600))
SECONDS = env_float("SBQUEUE_POOL_CHAOS_SECONDS", 12.0)
PROCESSES = 2
#: kill only children this old (0: replacements still starting too, as an OOM killer would)
CHILD_MIN_AGE_S = env_float("SBQUEUE_POOL_CHAOS_MIN_AGE", 0.0)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker's children")
@pytest.mark.timeout(int(SECONDS * 4 + JOBS / 10 + 120))
def test_pool_children_killed_and_segfaulting_lose_nothing(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    prefix = "poolchaos"
    log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "sbqueue", "worker", "pool", "tests.chaos.pool_processor:process", "--url",
           server.url, "--prefix", prefix, "--processes", str(PROCESSES), "--concurrency", str(PROCESSES),
           "--lock-duration", "5000", "--stalled-interval", "2000"]  # fmt: skip
    env = {**os.environ, "SBQUEUE_REDIS_URL": server.url, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    queue = sbqueue.Queue("pool", server.url, prefix=prefix)
    client = server.client()
    kills = {"SIGKILL": 0, "SIGSEGV": 0}
    try:
        first = queue.add("p", {"prefix": prefix, "n": -1})
        deadline = time.monotonic() + 120
        while queue.get_job_state(first.id) != "completed":  # the pool is up: its children run jobs
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        ids: list[str] = [first.id]
        per_tick = max(1, JOBS // int(SECONDS / 0.1))
        started = time.monotonic()
        next_kill = started + 1.0
        which = 0
        while time.monotonic() - started < SECONDS or len(ids) < JOBS:
            if len(ids) < JOBS:
                batch = [{"name": "p", "data": {"prefix": prefix, "n": len(ids) + i}, "opts": {"attempts": 6}}
                         for i in range(min(per_tick, JOBS - len(ids)))]  # fmt: skip
                ids += [job.id for job in queue.add_bulk(batch)]
            now = time.monotonic()
            if now >= next_kill and now - started < SECONDS:
                kids = child_pids(proc.pid, min_age_s=CHILD_MIN_AGE_S)
                if kids:
                    sig = (signal.SIGKILL, signal.SIGSEGV)[which % 2]
                    try:
                        os.kill(random.choice(kids), sig)
                        kills[sig.name] += 1
                        which += 1
                    except ProcessLookupError:
                        pass
                next_kill = now + 0.4
            assert proc.poll() is None, f"the worker died:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        deadline = time.monotonic() + 60 + JOBS / 20
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = queue.get_job_counts("completed", "failed")
            if counts["completed"] + counts["failed"] >= len(ids):
                break
            assert proc.poll() is None, f"the worker died:\n{log.read_text()[-3000:]}"
            time.sleep(0.25)
        states = {state: 0 for state in ("completed", "failed", "waiting", "active", "delayed", "prioritized")}
        states.update(queue.get_job_counts(*states))
        retried = []
        death_reasons = []
        for job_id in ids:
            job = queue.get_job(job_id)
            assert job is not None, f"job {job_id} is gone"
            if job.attempts_made > 1 or job.failed_reason:
                retried.append(job_id)
            for line in job.stacktrace or []:
                if "child process" in line:
                    death_reasons.append(line)
        runs = client.hlen(f"{prefix}:pool:runs")
        alive_kids = child_pids(proc.pid)
        print(f"\nPOOL CHAOS jobs={len(ids)} seconds={SECONDS:.0f} kills={kills} states={states} retried="
              f"{len(retried)} recorded_runs={runs} children_at_end={len(alive_kids)}", flush=True)  # fmt: skip
        stuck = [queue.get_job(i) for i in ids if queue.get_job_state(i) not in ("completed", "failed")]
        assert states["completed"] + states["failed"] == len(ids), (  # lost 0, each in one state
            f"{states}; unfinished: {[(j.id, j.attempts_made, j.stacktrace) for j in stuck if j]}\n"
            f"{log.read_text()[-3000:]}"
        )
        assert sum(states.values()) == len(ids), states
        assert kills["SIGKILL"] >= 3 and kills["SIGSEGV"] >= 3, kills
        assert retried, "no job was interrupted by a kill"
        assert death_reasons and all("signal" in r or "exit" in r for r in death_reasons[:20]), death_reasons[:3]
        for job_id in ids:  # a failed job says why: the child's death, not an unexplained error
            job = queue.get_job(job_id)
            if job is not None and job.failed_reason and states["failed"]:
                assert "child process" in job.failed_reason, job.failed_reason
        assert len(alive_kids) == PROCESSES, f"children at the end: {alive_kids}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            code = None
        queue.close()
        client.close()
        server.close()
    assert code == 0, f"the worker did not stop cleanly on SIGTERM (exit {code}):\n{log.read_text()[-3000:]}"
