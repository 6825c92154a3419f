"""Chaos: no job is lost while workers are SIGKILLed, Redis restarts and connections are killed; a
worker survives Redis going away.

Sizes come from the environment (``make chaos`` runs the large size)::

    SBQUEUE_CHAOS_JOBS      jobs to add            (default 5000; make chaos: 100000)
    SBQUEUE_CHAOS_WORKERS   worker processes       (default 3;    make chaos: 4)
    SBQUEUE_CHAOS_SECONDS   the chaos window       (default max(20, jobs / 1500))
    SBQUEUE_CHAOS_OUTAGE    Redis outage, seconds  (default 5;    make chaos: 30)
    SBQUEUE_CHAOS_RESTART_MODE  shutdown | sigkill (how the Redis restart stops the server)

Each test uses its own ``redis-server`` (not the suite's shared one): the chaos kills every client.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import redis

import sbqueue
from tests.chaos.harness import PROCESSOR, QUEUE, ROOT, ChaosConfig, RedisServer, env_float, run_chaos

CFG = ChaosConfig.from_env()
OUTAGE = env_float("SBQUEUE_CHAOS_OUTAGE", 5.0)
# the CI size finishes in ~25 s; the large size needs room for its longer window and drain
CHAOS_TIMEOUT = max(120, int(3 * CFG.seconds + CFG.jobs / 500 + 60))
OUTAGE_TIMEOUT = max(120, int(OUTAGE + 90))
CPU_SHARE_LIMIT = 0.05  # a waiting worker may use at most 5% of one core while Redis is down


@pytest.mark.timeout(CHAOS_TIMEOUT)
def test_chaos_loses_nothing(tmp_path: Path) -> None:
    """Producers + worker processes under SIGKILLs, a Redis restart, CLIENT KILLs and a pause:
    every added job completes (or fails by the stalled-limit rule), extra runs are all accounted
    for by a stalled recovery, and counts, events and metrics agree with the ground truth."""
    result = run_chaos(CFG, tmp_path)
    print("\n" + result.report(), flush=True)
    assert result.problems == [], result.report()
    assert result.jobs == CFG.jobs
    assert result.lost == 0
    assert result.duplicates == result.duplicates_explained
    # the rule, stricter than "explained": a job runs again only after a stalled recovery
    assert result.details["duplicates_without_stalled_event"] == 0
    assert result.redis_restarts == CFG.redis_restarts
    assert result.client_kills == CFG.client_kills
    # one SIGKILL per second of the window, except while the harness restarts Redis
    assert result.kills >= 0.75 * CFG.seconds / CFG.kill_every
    # the history recorder, SIGKILLed mid-run and restarted, holds every event of the stream exactly once
    assert result.details["recorder_kills"] == 1
    assert result.details["recorder_starts"] == 2 + len(result.details["recorder_exits"])
    assert result.details["recorded_events"] == result.details["stream_events"] > 0
    assert result.details["recorder_missing"] == result.details["recorder_duplicates"] == 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_completed(queue: sbqueue.Queue, ids: list[str], timeout: float) -> list[str]:
    """Wait until every id is completed; return the ids still not completed at the deadline."""
    deadline = time.monotonic() + timeout
    missing = list(ids)
    while time.monotonic() < deadline:
        missing = [i for i in missing if queue.get_job_state(i) != "completed"]
        if not missing:
            break
        time.sleep(0.2)
    return missing


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc for the CPU check")
@pytest.mark.timeout(OUTAGE_TIMEOUT)
def test_worker_survives_redis_outage(tmp_path: Path) -> None:
    """Redis stops for SBQUEUE_CHAOS_OUTAGE seconds and comes back on the same port: the worker
    process stays alive, does not busy-loop, logs that it is retrying, then processes new jobs."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    prefix = "outage"
    log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "sbqueue", "worker", QUEUE, PROCESSOR, "--url", server.url, "--prefix", prefix,
           "--concurrency", "4", "--name", "survivor", "--lock-duration", "2000",
           "--stalled-interval", "1000"]  # fmt: skip
    env = {**os.environ, "SBQUEUE_REDIS_URL": server.url, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        queue = sbqueue.Queue(QUEUE, server.url, prefix=prefix)
        try:
            before = [queue.add("before", {"k": f"b{i}"}).id for i in range(20)]
            assert wait_completed(queue, before, 30) == [], log.read_text()
        finally:
            queue.close()

        cpu_before = cpu_seconds(proc.pid)
        down = time.monotonic()
        server.stop("shutdown")
        alive = []
        while time.monotonic() - down < OUTAGE:
            alive.append(proc.poll() is None)
            time.sleep(0.25)
        cpu_used = cpu_seconds(proc.pid) - cpu_before
        outage = time.monotonic() - down
        server.start()  # same port, same data directory
        assert all(alive) and proc.poll() is None, f"worker exited during the outage:\n{log.read_text()}"
        print(f"\nOUTAGE seconds={outage:.1f} worker_cpu_seconds={cpu_used:.3f} "
              f"cpu_share={cpu_used / outage:.3%}", flush=True)  # fmt: skip
        assert cpu_used < CPU_SHARE_LIMIT * outage, f"worker used {cpu_used:.2f} s CPU in a {outage:.1f} s outage"

        queue = sbqueue.Queue(QUEUE, server.url, prefix=prefix)
        try:
            after = [queue.add("after", {"k": f"a{i}"}).id for i in range(20)]
            # the reconnect backoff is capped at 10 s
            assert wait_completed(queue, after, 40) == [], log.read_text()
            assert queue.get_job_counts("failed")["failed"] == 0
        finally:
            queue.close()
        assert proc.poll() is None, f"worker exited after the outage:\n{log.read_text()}"

        text = log.read_text(errors="replace")
        retries = re.findall(r"Redis unavailable \(.*\); retrying in [\d.]+ s", text)
        assert retries, f"the worker log does not say it is reconnecting:\n{text}"
        # backoff, not a hot loop: at most one retry line per 0.5 s of outage (plus slack)
        assert len(retries) <= outage / 0.5 + 5, f"{len(retries)} retry lines in {outage:.1f} s"
        assert "Traceback" not in text, text
        delays = re.findall(r"retrying in ([\d.]+) s", text)
        print(
            f"OUTAGE worker log: {len(retries)} 'Redis unavailable; retrying' lines, delays {' '.join(delays)}; "
            f"{len(text.splitlines())} lines in all",
            flush=True,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            code = None
        server.close()
    assert code == 0, f"worker did not stop cleanly on SIGTERM (exit {code}):\n{log.read_text()}"


def test_worker_started_while_redis_is_down_waits_for_it(tmp_path: Path) -> None:
    """A worker whose first connection fails (Redis restarting, its connection killed) retries like
    it does later on, instead of dying. (Seen in the chaos run: a replacement worker that started
    while ``CLIENT KILL TYPE normal`` ran crashed with a traceback at its start-up registration PING.)"""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    ran: list[str] = []
    worker = sbqueue.Worker(QUEUE, lambda job: ran.append(job.id), client, "startdown", concurrency=2,
                            lock_duration=2000, stalled_interval=1000)  # fmt: skip
    errors: list[str] = []

    def run() -> None:
        try:
            asyncio.run(worker.run_async())
        except BaseException as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/sbqueue/" in f.filename]
            where = f" at {frames[-1].filename.rsplit('/sbqueue/', 1)[1]}:{frames[-1].lineno} {frames[-1].line}"
            errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}{where if frames else ''}")

    server.stop("shutdown")
    thread = threading.Thread(target=run, name="startdown-worker", daemon=True)
    thread.start()
    try:
        time.sleep(2)
        alive_while_down = thread.is_alive()
        server.start()
        queue = sbqueue.Queue(QUEUE, server.url, prefix="startdown")
        try:
            job = queue.add("after-restart", {"k": 1})
            missing = wait_completed(queue, [job.id], 30) if alive_while_down else [job.id]
        finally:
            queue.close()
        assert alive_while_down and not errors, f"the worker stopped while Redis was down: {errors}"
        assert missing == [] and ran == [job.id]
    finally:
        worker.close(timeout=5)
        thread.join(15)
        client.close()
        server.close()
