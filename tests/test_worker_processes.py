"""``Worker(processes=n)`` against a real Redis: jobs run in spawned child processes; what they do through their
job reaches Redis through the worker; crashes, timeouts, recycling, memory caps and shutdown stop only children."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue import InvalidOptionError, Job, WorkerProcessError
from sbqueue.engine.worker import Worker
from sbqueue.engine.worker.process_runner import ProcessRunner
from sbqueue.engine.worker.process_target import processor_target
from sbqueue.engine.worker.runners import JobCancelledError
from tests import process_processors as pp
from tests.processors import stream_events, wait_for

Q = "pq"
P = "tests.process_processors"


@pytest.fixture
def q(r: redis.Redis, prefix: str) -> sbqueue.Queue:
    return sbqueue.Queue(Q, r, prefix=prefix)


@pytest.fixture
def make_worker(r: redis.Redis, prefix: str) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(processor: Any, *, start: bool = True, **kw: Any) -> Worker:
        kw.setdefault("processes", 1)
        w = Worker(Q, processor, r, prefix, **kw)
        w.on("error", lambda exc: print("worker error:", exc))
        made.append(w)
        return w.start() if start else w

    yield make
    for w in made:
        w.close(timeout=5)
        assert not w.running


def jhash(r: redis.Redis, prefix: str, job_id: str) -> dict[str, str]:
    return r.hgetall(f"{prefix}:{Q}:{job_id}")


def wait_state(r: redis.Redis, prefix: str, job_id: str, state: str, timeout: float = 30) -> None:
    zsets = ("completed", "failed", "delayed", "waiting-children")
    if state in zsets:
        wait_for(lambda: r.zscore(f"{prefix}:{Q}:{state}", job_id) is not None, timeout, 0.02, f"job {job_id} {state}")
    else:
        wait_for(lambda: job_id in r.lrange(f"{prefix}:{Q}:{state}", 0, -1), timeout, 0.02, f"job {job_id} {state}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def logged_pid(q: sbqueue.Queue, job_id: str) -> int:
    lines = wait_for(lambda: [ln for ln in q.get_job_logs(job_id)["logs"] if ln.startswith("pid ")], 30, 0.02,
                     what="the child's pid in the job's logs")  # fmt: skip
    return int(lines[0].split()[1])


# --- running and talking through the job ------------------------------------------------------------------------


def test_a_job_runs_in_a_child_and_its_reports_reach_redis(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                           r: redis.Redis, prefix: str) -> None:  # fmt: skip
    job = q.add("hello", {"n": 1})
    progress: list[tuple[str, Any]] = []
    w = make_worker(f"{P}:info", processes=2, start=False)
    assert w.concurrency == 2
    w.on("progress", lambda j, value: progress.append((j.id, value)))
    w.start()
    wait_state(r, prefix, job.id, "completed")
    result = json.loads(jhash(r, prefix, job.id)["returnvalue"])
    assert result["pid"] != os.getpid() and result["name"] == "hello" and result["attempts_made"] == 0
    assert result["data"] == {"n": 1, "seen": True} and result["progress"] == 50  # the child's job sees its changes
    assert result["timestamp"] == job.timestamp
    h = jhash(r, prefix, job.id)
    assert h["progress"] == "50" and json.loads(h["data"]) == {"n": 1, "seen": True}
    assert q.get_job_logs(job.id)["logs"] == [f"hello from {result['pid']}"]
    wait_for(lambda: progress, what="the progress event")
    assert progress == [(job.id, 50)]
    assert [e["data"] for e in stream_events(r, prefix, Q, job.id) if e["event"] == "progress"] == ["50"]


def test_async_processor_and_module_level_function(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                   r: redis.Redis, prefix: str) -> None:  # fmt: skip
    job = q.add("a")
    make_worker(pp.async_info)  # a function object that imports back to itself is accepted
    wait_state(r, prefix, job.id, "completed")
    assert json.loads(jhash(r, prefix, job.id)["returnvalue"])["progress"] == 7
    assert q.get_job_logs(job.id)["logs"] == ["async hello"]


# --- how a job steers itself, and failures ---------------------------------------------------------------------


def test_the_four_steering_exceptions_act_as_in_threads(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                        r: redis.Redis, prefix: str) -> None:  # fmt: skip
    unrecoverable = q.add("u", {"kind": "unrecoverable"}, attempts=3)
    delayed = q.add("d", {"kind": "delayed"}, attempts=3)
    rated = q.add("r", {"kind": "rate"}, attempts=3)
    parent = sbqueue.Queue(Q, r, prefix=prefix).add("p", {"kind": "children"})
    kids = sbqueue.Queue("kids", r, prefix=prefix)
    kids.add("kid", {}, parent={"id": parent.id, "queue": f"{prefix}:{Q}"})
    make_worker(f"{P}:steer", processes=2)
    wait_state(r, prefix, unrecoverable.id, "failed")
    h = jhash(r, prefix, unrecoverable.id)
    assert h["failedReason"] == "cannot ever work" and h["atm"] == "1"  # no retry
    wait_state(r, prefix, delayed.id, "delayed")
    assert "failedReason" not in jhash(r, prefix, delayed.id)
    wait_state(r, prefix, rated.id, "completed")
    h = jhash(r, prefix, rated.id)
    assert json.loads(h["returnvalue"]) == "ran after the rate limit" and h["atm"] == "1"  # the limit cost no attempt
    wait_state(r, prefix, parent.id, "waiting-children")
    kid_worker = Worker("kids", lambda j: "kid done", r, prefix, concurrency=1).start()
    try:
        wait_state(r, prefix, parent.id, "completed")
    finally:
        kid_worker.close(timeout=2)
    assert json.loads(jhash(r, prefix, parent.id)["returnvalue"]) == {f"{prefix}:kids:1": "kid done"}


def test_an_exception_keeps_its_class_message_and_the_childs_traceback(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    value = q.add("v", {"kind": "value"})
    unpicklable = q.add("u", {"kind": "unpicklable"})
    bad_result = q.add("b", {"kind": "bad-result"})
    exits = q.add("e", {"kind": "exit"})
    failures: dict[str, BaseException] = {}
    w = make_worker(f"{P}:steer", start=False)
    w.on("failed", lambda job, exc: failures.setdefault(job.id, exc))
    w.start()
    for job in (value, unpicklable, bad_result, exits):
        wait_state(r, prefix, job.id, "failed")
    h = jhash(r, prefix, value.id)
    assert h["failedReason"] == "bad value 42"
    (trace,) = json.loads(h["stacktrace"])
    assert "process_processors.py" in trace and "in deep_failure" in trace and "RemoteTraceback" in trace
    assert trace.rstrip().endswith("ValueError: bad value 42")
    assert type(failures[value.id]) is ValueError
    assert jhash(r, prefix, unpicklable.id)["failedReason"] == "holds a lock"
    assert "in steer" in json.loads(jhash(r, prefix, unpicklable.id)["stacktrace"])[0]
    assert "cannot be sent back from the worker child process" in jhash(r, prefix, bad_result.id)["failedReason"]
    assert jhash(r, prefix, exits.id)["failedReason"] == "5"  # SystemExit(5): an ordinary failure, never the worker's


def test_a_crashed_child_fails_only_its_job_and_is_replaced(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                            r: redis.Redis, prefix: str) -> None:  # fmt: skip
    exits = q.add("x", {"how": "exit"}, attempts=2)
    segv = q.add("s", {"how": "segv"}, attempts=2)
    failures: list[str] = []
    w = make_worker(f"{P}:crash", processes=2, start=False)
    w.on("failed", lambda job, exc: failures.append(str(exc)))
    w.start()
    others = [q.add("ok", {"how": "none"}) for _ in range(4)]
    for job in (exits, segv, *others):
        wait_state(r, prefix, job.id, "completed")
    exit_pid, segv_pid = logged_pid(q, exits.id), logged_pid(q, segv.id)
    assert sorted(failures) == sorted([
        f"job {exits.id}: worker child process {exit_pid} died: exited with code 3",
        f"job {segv.id}: worker child process {segv_pid} died: killed by signal SIGSEGV",
    ])  # fmt: skip
    for job in (exits, segv):
        h = jhash(r, prefix, job.id)
        assert h["atm"] == "2" and json.loads(h["returnvalue"]).startswith("survived in ")  # the retry ran
    assert not alive(exit_pid) and not alive(segv_pid)
    assert w.running


# --- timeouts, recycling, memory -------------------------------------------------------------------------------


def test_a_timed_out_job_is_stopped_never_running_beside_its_retry(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    t0 = time.monotonic()
    job = q.add("slow", {"seconds": 3, "marker": str(marker)}, attempts=2, timeout=500)
    make_worker(f"{P}:slow_then_mark")
    wait_state(r, prefix, job.id, "completed")
    h = jhash(r, prefix, job.id)
    first_pid = logged_pid(q, job.id)
    result = json.loads(h["returnvalue"])
    assert result["attempt"] == 1 and result["pid"] != first_pid  # the retry ran in a replacement child
    (trace,) = json.loads(h["stacktrace"])
    assert f"job {job.id} timed out after 500 ms" in trace and f"child process {first_pid} was stopped" in trace
    assert not alive(first_pid)
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))  # past the time the first attempt would have written it
    assert not marker.exists()


def test_max_jobs_per_child_recycles_children(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                              prefix: str) -> None:  # fmt: skip
    jobs = [q.add("p", {}) for _ in range(5)]
    make_worker(f"{P}:pid", max_jobs_per_child=2)
    for job in jobs:
        wait_state(r, prefix, job.id, "completed")
    pids = [json.loads(jhash(r, prefix, job.id)["returnvalue"]) for job in jobs]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert not alive(pids[0]) and not alive(pids[2])


def test_max_memory_per_child_turns_an_overrun_into_a_clear_failure(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    greedy = q.add("g", {"mb": 4096})
    modest = q.add("m", {"mb": 1})
    make_worker(f"{P}:hog", max_memory_per_child=1024)
    wait_state(r, prefix, greedy.id, "failed")
    reason = jhash(r, prefix, greedy.id)["failedReason"]
    assert re.fullmatch(rf"job {greedy.id}: out of memory in worker child process \d+ \(max_memory_per_child is "
                        r"1024 MB\)", reason), reason  # fmt: skip
    wait_state(r, prefix, modest.id, "completed")
    assert json.loads(jhash(r, prefix, modest.id)["returnvalue"]) == 2**20


# --- shutdown ------------------------------------------------------------------------------------------------------


def test_close_lets_in_flight_jobs_finish_then_puts_back_the_rest(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    short = q.add("short", {"seconds": 0.5})
    w = make_worker(f"{P}:sleep_job")
    short_pid = logged_pid(q, short.id)
    w.close(timeout=30)
    assert r.zscore(f"{prefix}:{Q}:completed", short.id) is not None
    assert not alive(short_pid)

    long = q.add("long", {"seconds": 60})
    w2 = make_worker(f"{P}:sleep_job")
    long_pid = logged_pid(q, long.id)
    t0 = time.monotonic()
    w2.close(timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert r.lrange(f"{prefix}:{Q}:wait", 0, -1) == [long.id] and jhash(r, prefix, long.id).get("atm", "0") == "0"
    assert not alive(long_pid)  # stopped with the worker: it never runs beside the job's next attempt


def test_a_processor_the_child_cannot_import_stops_the_worker_clearly(
    q: sbqueue.Queue, r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "parent_only_mod.py").write_text(
        "import sys\nif sys.argv[:1] == ['-c']:\n    raise ImportError('only importable in the parent')\n"
        "def work(job):\n    return 1\n"
    )  # fmt: skip
    job = q.add("j")
    sys.path.insert(0, str(tmp_path))  # the children get the worker's sys.path as it is when they start
    try:
        w = Worker(Q, "parent_only_mod:work", r, prefix, processes=1)
        with pytest.raises(WorkerProcessError, match="only importable in the parent") as info:
            w.run()
    finally:
        sys.path.remove(str(tmp_path))
    assert "parent_only_mod:work cannot be loaded in a worker child process" in str(info.value)
    assert r.lrange(f"{prefix}:{Q}:wait", 0, -1) == [job.id]  # nothing was taken


# --- bad input ---------------------------------------------------------------------------------------------------


def _nested(job: Any) -> None:
    pass


@pytest.mark.parametrize(("processor", "kw", "message"), [
    (lambda job: 1, {}, "module-level function"),
    (_nested.__get__(object()), {}, "module-level function|importable as"),
    ("tests.no_such_module:fn", {}, "cannot import 'tests.no_such_module'"),
    (f"{P}:missing", {}, "has no attribute 'missing'"),
    (f"{P}:NOT_CALLABLE", {}, "is not callable"),
    (f"{P}", {}, "must look like package.module:function"),
    (f"{P}:pid", {"processes": 0}, "processes must be an integer 1..1024"),
    (f"{P}:pid", {"processes": "2"}, "processes must be an integer"),
    (f"{P}:pid", {"processes": True}, "processes must be an integer"),
    (f"{P}:pid", {"processes": 2, "concurrency": 1}, "concurrency must be at least 2"),
    (f"{P}:pid", {"processes": None, "max_jobs_per_child": 3}, "max_jobs_per_child needs processes"),
    (f"{P}:pid", {"processes": None, "max_memory_per_child": 512}, "max_memory_per_child needs processes"),
    (f"{P}:pid", {"max_jobs_per_child": 0}, "max_jobs_per_child must be an integer"),
    (f"{P}:pid", {"max_memory_per_child": 10}, r"max_memory_per_child \(MB\) must be an integer 64"),
])  # fmt: skip
def test_bad_input_is_refused_before_anything_is_written(r: redis.Redis, prefix: str, processor: Any,
                                                         kw: dict[str, Any], message: str) -> None:  # fmt: skip
    kw = {"processes": 1, **kw}
    with pytest.raises(InvalidOptionError, match=message):
        Worker(Q, processor, r, prefix, **kw)
    assert list(r.scan_iter(f"{prefix}:*")) == []


def test_a_nested_function_is_refused_with_the_way_out() -> None:
    def local(job: Any) -> None:
        pass

    with pytest.raises(InvalidOptionError, match=r"pass it as 'package.module:function'"):
        processor_target(local)


# --- the runner alone: cancellation ---------------------------------------------------------------------------


def test_cancel_stops_the_child_and_the_run_raises_job_cancelled() -> None:
    async def scenario() -> tuple[BaseException | None, int, bool]:
        runner = ProcessRunner(processor_target(f"{P}:slow_then_mark"), 1, emit=lambda *a: None)
        await runner.start()
        try:
            (child,) = runner.pool.children
            job = Job(queue=None, id="7", data={"seconds": 30, "marker": os.devnull})
            job.queue = type("Q", (), {"add_job_log": lambda self, *a, **k: 1})()
            run = asyncio.ensure_future(runner.run(job))
            await asyncio.sleep(0.3)
            assert not runner.cancel(Job(queue=None, id="8"), "not running here")
            assert runner.cancel(job, "the user asked")
            try:
                await asyncio.wait_for(run, 10)
                error = None
            except JobCancelledError as exc:
                error = exc
            return error, child.pid, alive(child.pid)
        finally:
            runner.shutdown()

    error, pid, still_alive = asyncio.run(scenario())
    assert isinstance(error, JobCancelledError) and error.reason == "the user asked"
    assert not still_alive and not alive(pid)


def test_a_result_the_worker_cannot_unpickle_fails_the_job_not_the_pool(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    w = make_worker(f"{P}:odd_result")
    for _ in range(2):  # the second runs in the replacement child
        odd = q.add("odd")
        wait_state(r, prefix, odd.id, "failed")
        assert "cannot be read in the worker" in jhash(r, prefix, odd.id)["failedReason"]
    assert w.running


def test_concurrency_above_processes_keeps_jobs_ready_but_runs_one_per_child(
    q: sbqueue.Queue, r: redis.Redis, prefix: str, make_worker: Callable[..., Worker]
) -> None:
    jobs = [q.add("s", {"seconds": 0.3}) for _ in range(6)]
    w = make_worker(f"{P}:timed_sleep", processes=2, concurrency=4)
    active_seen = []
    for _ in range(40):
        active_seen.append(r.llen(f"{prefix}:{Q}:active"))
        if r.zcard(f"{prefix}:{Q}:completed") == 6:
            break
        time.sleep(0.05)
    for job in jobs:
        wait_state(r, prefix, job.id, "completed")
    runs = [json.loads(jhash(r, prefix, job.id)["returnvalue"]) for job in jobs]
    spans = sorted((run["start"], run["end"], run["pid"]) for run in runs)
    for start, _end, _pid in spans:  # never more than 2 at once: one per child
        assert sum(1 for s, e, _ in spans if s <= start < e) <= 2, spans
    assert len({run["pid"] for run in runs}) <= 2 and max(active_seen) > 2  # the extra ones were fetched, ready
    assert w.concurrency == 4


def test_cancel_job_stops_its_child_and_a_waiting_job_at_once(
    q: sbqueue.Queue, r: redis.Redis, prefix: str, make_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    running = q.add("slow", {"seconds": 3, "marker": str(marker)})
    waiting = q.add("slow", {"seconds": 3, "marker": str(tmp_path / "other")})
    w = make_worker(f"{P}:slow_then_mark", processes=1, concurrency=2)  # the second job waits for the child
    first_pid = logged_pid(q, running.id)
    wait_for(lambda: r.llen(f"{prefix}:{Q}:active") == 2, 10, 0.02, what="both jobs fetched")
    wait_for(lambda: w.cancel_job(waiting.id, "not needed any more"), 10, what="the waiting job cancelled")
    wait_for(lambda: w.cancel_job(running.id, "the user asked"), 10, what="the running job cancelled")
    wait_state(r, prefix, waiting.id, "failed")
    wait_state(r, prefix, running.id, "failed")
    assert jhash(r, prefix, waiting.id)["failedReason"] == "not needed any more"
    assert jhash(r, prefix, running.id)["failedReason"] == "the user asked"
    wait_for(lambda: not alive(first_pid), 10, 0.05, what="the cancelled job's child stopped")
    time.sleep(3.2)  # past the time the cancelled attempt would have written its marker
    assert not marker.exists() and not (tmp_path / "other").exists()
    assert not w.cancel_job(running.id, "again")  # over already
