"""Worker processes for real: ``sbqueue worker`` subprocesses killed with -9 or stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue.engine.worker import Worker
from tests.processors import stream_events, strip_ms, wait_for

ROOT = Path(__file__).resolve().parent.parent
Q = "wproc"


@pytest.fixture
def q(r: redis.Redis, prefix: str) -> sbqueue.Queue:
    return sbqueue.Queue(Q, r, prefix=prefix)


@pytest.fixture
def cli(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``python -m sbqueue worker`` subprocesses (cwd = repo root, so ``tests.processors`` imports)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(processor: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "sbqueue", "worker", Q, processor, "--url", redis_url, "--prefix", prefix,
             "--concurrency", "1", *args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        proc.log_file = log  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.log_file.close()  # type: ignore[attr-defined]


def output(proc: subprocess.Popen[bytes]) -> str:
    proc.log_file.flush()  # type: ignore[attr-defined]
    return Path(proc.log_file.name).read_text(errors="replace")  # type: ignore[attr-defined]


def jhash(r: redis.Redis, prefix: str, job_id: str) -> dict[str, str]:
    return r.hgetall(f"{prefix}:{Q}:{job_id}")


def wait_active_in(r: redis.Redis, prefix: str, job_id: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the subprocess runs the job (its processor reported progress 1)."""

    def running() -> bool:
        assert proc.poll() is None, f"worker exited early:\n{output(proc)}"
        return jhash(r, prefix, job_id).get("progress") == "1"

    wait_for(running, timeout=20, interval=0.02, what="the subprocess to run the job")


# --- kill -9: the stalled checker recovers the job --------------------------------------------------------------


def test_kill_9_job_recovered_by_another_worker(q: sbqueue.Queue, cli: Callable[..., Any], r: redis.Redis,
                                                prefix: str) -> None:  # fmt: skip
    victim = cli("tests.processors:hang", "--name", "victim", "--lock-duration", "1000", "--stalled-interval", "500")
    job = q.add("precious", {"n": 1})
    wait_active_in(r, prefix, job.id, victim)
    h = jhash(r, prefix, job.id)
    assert h["pb"] == "victim" and h["ats"] == "1"
    assert r.lrange(f"{prefix}:{Q}:active", 0, -1) == [job.id]
    victim.kill()  # SIGKILL: no cleanup at all
    victim.wait(10)
    assert r.exists(f"{prefix}:{Q}:{job.id}:lock")  # still held by the dead worker

    ran: list[str] = []
    stalled: list[str] = []
    rescuer = Worker(Q, lambda job: ran.append(job.id) or f"rescued {job.data['n']}", r, prefix, concurrency=1,
                     lock_duration=1000, stalled_interval=500, name="rescuer")  # fmt: skip
    rescuer.on("stalled", stalled.append)
    t0 = time.monotonic()
    rescuer.start()
    try:
        wait_for(lambda: r.zscore(f"{prefix}:{Q}:completed", job.id), timeout=10, what="recovered job completed")
    finally:
        rescuer.close(timeout=2)
    # lock expiry (<= 1 s) plus up to two check intervals (0.5 s each), with some slack
    assert time.monotonic() - t0 < 4
    h = jhash(r, prefix, job.id)
    assert h["stc"] == "1" and h["ats"] == "2" and h["atm"] == "1"
    assert h["pb"] == "rescuer" and json.loads(h["returnvalue"]) == "rescued 1"
    assert ran == [job.id] and stalled == [job.id]
    names = [(e["event"], e.get("prev")) for e in stream_events(r, prefix, Q, job.id) if e["event"] != "progress"]
    assert names == [("added", None), ("waiting", None), ("active", "waiting"), ("waiting", "active"),
                     ("stalled", None), ("active", "waiting"), ("completed", "active")]  # fmt: skip
    assert {"event": "stalled", "jobId": job.id} in strip_ms(stream_events(r, prefix, Q, job.id))


def test_kill_9_with_max_stalled_zero_fails_the_job(q: sbqueue.Queue, cli: Callable[..., Any], r: redis.Redis,
                                                    prefix: str) -> None:  # fmt: skip
    victim = cli("tests.processors:hang", "--lock-duration", "1000", "--stalled-interval", "500")
    job = q.add("precious", attempts=3)
    wait_active_in(r, prefix, job.id, victim)
    victim.kill()
    victim.wait(10)

    ran: list[str] = []
    failed: list[tuple[str, str]] = []
    rescuer = Worker(Q, lambda job: ran.append(job.id), r, prefix, concurrency=1, lock_duration=1000,
                     stalled_interval=500, max_stalled_count=0)  # fmt: skip
    rescuer.on("failed", lambda job, err: failed.append((job.id, str(err))))
    rescuer.start()
    try:
        wait_for(lambda: r.zscore(f"{prefix}:{Q}:failed", job.id), timeout=10, what="stalled job failed")
    finally:
        rescuer.close(timeout=2)
    h = jhash(r, prefix, job.id)
    assert ran == []  # failed at fetch, the processor never ran again
    assert h["failedReason"] == "job stalled more than allowable limit"
    assert h["stc"] == "1" and "defa" not in h
    assert "UnrecoverableError" in json.loads(h["stacktrace"])[-1]
    assert failed == [(job.id, "job stalled more than allowable limit")]
    events = strip_ms(stream_events(r, prefix, Q, job.id))
    assert {"event": "stalled", "jobId": job.id} in events
    assert events[-1] == {"event": "failed", "jobId": job.id, "failedReason": "job stalled more than allowable limit",
                          "prev": "active"}  # fmt: skip


# --- SIGTERM: graceful shutdown -------------------------------------------------------------------------------------


def test_sigterm_finishes_the_running_job_and_exits_0(q: sbqueue.Queue, cli: Callable[..., Any], r: redis.Redis,
                                                      prefix: str) -> None:  # fmt: skip
    proc = cli("tests.processors:sleep_job", "--name", "graceful")
    job = q.add("two-seconds", {"seconds": 2})
    wait_active_in(r, prefix, job.id, proc)
    waiting = q.add("not-started")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, output(proc)
    assert time.monotonic() - t0 < 4
    h = jhash(r, prefix, job.id)
    assert json.loads(h["returnvalue"]) == {"slept": 2.0}
    assert r.lrange(f"{prefix}:{Q}:wait", 0, -1) == [waiting.id]  # nothing fetched after SIGTERM
    assert "worker stopped: 1 completed, 0 failed" in output(proc)


def test_sigterm_shutdown_timeout_puts_job_back(q: sbqueue.Queue, cli: Callable[..., Any], r: redis.Redis,
                                                prefix: str) -> None:  # fmt: skip
    proc = cli("tests.processors:sleep_job", "--shutdown-timeout", "0.5")
    job = q.add("too-long", {"seconds": 60})
    wait_active_in(r, prefix, job.id, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, output(proc)
    assert time.monotonic() - t0 < 3, "the abandoned job thread kept the process alive"
    # not lost: back in wait (tail, runs next), lock released, no attempt counted
    assert r.lrange(f"{prefix}:{Q}:wait", 0, -1) == [job.id]
    assert r.llen(f"{prefix}:{Q}:active") == 0
    assert not r.exists(f"{prefix}:{Q}:{job.id}:lock")
    h = jhash(r, prefix, job.id)
    assert "atm" not in h and h["ats"] == "1"
    assert strip_ms(stream_events(r, prefix, Q, job.id))[-1] == {"event": "waiting", "jobId": job.id, "prev": "active"}
    # and another worker runs it
    w = Worker(Q, lambda job: "second chance", r, prefix, concurrency=1).start()
    try:
        wait_for(lambda: r.zscore(f"{prefix}:{Q}:completed", job.id), what="completed by the next worker")
    finally:
        w.close()


def test_sigint_is_graceful_too(q: sbqueue.Queue, cli: Callable[..., Any], r: redis.Redis, prefix: str) -> None:
    proc = cli("tests.processors:sleep_job")
    job = q.add("short", {"seconds": 0.5})
    wait_active_in(r, prefix, job.id, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0, output(proc)
    assert r.zscore(f"{prefix}:{Q}:completed", job.id) is not None


def test_cli_worker_processes_jobs_and_names_connection(q: sbqueue.Queue, cli: Callable[..., Any], r: redis.Redis,
                                                        prefix: str) -> None:  # fmt: skip
    proc = cli("tests.processors:echo", "--name", "cli-w", "--concurrency", "3")
    jobs = q.add_bulk([{"name": "e", "data": {"i": i}} for i in range(10)])
    wait_for(lambda: r.zcard(f"{prefix}:{Q}:completed") == 10, timeout=20, what="10 completed")
    assert [json.loads(jhash(r, prefix, j.id)["returnvalue"]) for j in jobs] == [{"i": i} for i in range(10)]
    assert {jhash(r, prefix, j.id)["pb"] for j in jobs} == {"cli-w"}
    raw = {w["rawname"] for w in q.get_workers()}
    assert f"{prefix}:{q.keys.encoded_name}:w:cli-w" in raw
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


@pytest.mark.parametrize(
    ("processor", "message"),
    [("tests.no_such_module:fn", "cannot import"), ("tests.processors:nope", "has no attribute"),
     ("no-colon", "module:function")],
)  # fmt: skip
def test_cli_bad_processor_path(cli: Callable[..., Any], processor: str, message: str) -> None:
    proc = cli(processor)
    assert proc.wait(20) == 2
    assert message in output(proc)


# --- --processes: the children die with the worker ---------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_processes_cli_kill_9_takes_the_children_along(q: sbqueue.Queue, cli: Callable[..., Any], r: redis.Redis,
                                                        prefix: str) -> None:  # fmt: skip
    done = q.add("quick", {"seconds": 0})
    victim = cli("tests.process_processors:sleep_job", "--processes", "2", "--concurrency", "2", "--lock-duration",
                 "1000", "--stalled-interval", "500")  # fmt: skip
    wait_for(lambda: r.zscore(f"{prefix}:{Q}:completed", done.id), timeout=30, interval=0.02, what="a job done")
    assert json.loads(jhash(r, prefix, done.id)["returnvalue"])["pid"] != victim.pid  # it ran in a child
    job = q.add("precious", {"seconds": 3600})
    wait_active_in(r, prefix, job.id, victim)
    child = int(q.get_job_logs(job.id)["logs"][0].split()[1])
    assert _alive(child)
    victim.kill()  # SIGKILL: no cleanup at all; the kernel kills the children (PR_SET_PDEATHSIG)
    victim.wait(10)
    wait_for(lambda: not _alive(child), timeout=10, what="the child process to die with its worker")
    assert "2 processes" in output(victim)

    rescuer = Worker(Q, lambda job: "rescued", r, prefix, concurrency=1, lock_duration=1000, stalled_interval=500)
    rescuer.start()
    try:
        wait_for(lambda: r.zscore(f"{prefix}:{Q}:completed", job.id), timeout=10, what="the job back and done")
    finally:
        rescuer.close(timeout=2)
    assert jhash(r, prefix, job.id)["stc"] == "1"
