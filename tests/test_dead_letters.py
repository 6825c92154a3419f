"""Dead-letter queues: the worker's letters (attempts exhausted, unrecoverable, stalled beyond the limit),
per-job override, bad input, and replaying letters back to their source queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue import UnrecoverableError
from sbqueue.engine.worker import Worker
from sbqueue.errors import InvalidOptionError, InvalidQueueNameError
from tests.conftest import snapshot
from tests.processors import wait_for

Q, DLQ = "src", "dlq"


@pytest.fixture
def q(r: redis.Redis, prefix: str) -> sbqueue.Queue:
    return sbqueue.Queue(Q, r, prefix=prefix)


@pytest.fixture
def dlq(r: redis.Redis, prefix: str) -> sbqueue.Queue:
    return sbqueue.Queue(DLQ, r, prefix=prefix)


@pytest.fixture
def make_worker(r: redis.Redis, prefix: str) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(processor: Callable[..., Any], *, queue: str = Q, start: bool = True, **kw: Any) -> Worker:
        kw.setdefault("concurrency", 1)
        w = Worker(queue, processor, r, prefix, **kw)
        made.append(w)
        return w.start() if start else w

    yield make
    for w in made:
        w.close(timeout=1)


def letters(r: redis.Redis, prefix: str, queue: str = DLQ) -> list[dict[str, Any]]:
    """The jobs waiting in ``queue``, decoded (oldest first)."""
    out = []
    for job_id in reversed(r.lrange(f"{prefix}:{queue}:wait", 0, -1)):
        h = r.hgetall(f"{prefix}:{queue}:{job_id}")
        out.append({"id": job_id, "name": h["name"], "data": json.loads(h["data"]), "opts": json.loads(h["opts"])})
    return out


def boom(job: Any) -> None:
    raise ValueError(f"bad {job.data['n']}")


def test_attempts_exhausted_writes_one_letter(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                              r: redis.Redis, prefix: str) -> None:  # fmt: skip
    job = q.add("charge", {"n": 7, "nested": {"a": [1, 2.5]}}, attempts=2, priority=3, remove_on_complete=True,
                job_id="order-7", deduplication={"id": "d7"})  # fmt: skip
    seen: list[tuple[str, str, str]] = []
    w = make_worker(boom, dead_letter_queue=DLQ, start=False)
    w.on("dead-lettered", lambda job, dlq, letter: seen.append((job.id, dlq, letter)))
    w.start()
    wait_for(lambda: r.zscore(f"{prefix}:{Q}:failed", job.id), what="the job failed for good")
    wait_for(lambda: r.zcard(f"{prefix}:{DLQ}:prioritized"), what="the letter")
    (letter_id,) = r.zrange(f"{prefix}:{DLQ}:prioritized", 0, -1)
    h = r.hgetall(f"{prefix}:{DLQ}:{letter_id}")
    assert seen == [(job.id, DLQ, letter_id)] and letter_id.startswith("dl-")
    assert h["name"] == "charge" and json.loads(h["data"]) == {"n": 7, "nested": {"a": [1, 2.5]}}
    opts = json.loads(h["opts"])
    meta = opts.pop("deadLetter")
    # carried: attempts, priority, retention; dropped: the custom id and the deduplication
    assert opts == {"attempts": 2, "priority": 3, "removeOnComplete": True}
    src = r.hgetall(f"{prefix}:{Q}:{job.id}")
    assert meta["sourceQueue"] == Q and meta["sourcePrefix"] == prefix and meta["sourceJobId"] == "order-7"
    assert meta["failedReason"] == "bad 7" and meta["attemptsMade"] == 2 and len(meta["stacktrace"]) == 2
    assert "ValueError: bad 7" in meta["stacktrace"][-1]
    assert meta["timestamp"] == int(src["timestamp"]) and meta["processedOn"] == int(src["processedOn"])
    assert abs(meta["finishedOn"] - int(src["finishedOn"])) < 5_000
    assert src["failedReason"] == "bad 7"  # the original is kept (no remove_on_fail)
    assert w.failed_count == 1


def test_unrecoverable_and_per_job_override(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                            r: redis.Redis, prefix: str) -> None:  # fmt: skip
    def proc(job: Any) -> None:
        raise UnrecoverableError("no way")

    a = q.add("a", {"n": 1}, attempts=5)
    b = q.add("b", {"n": 2}, attempts=5, dead_letter_queue="special")
    assert b.opts["deadLetterQueue"] == "special"
    make_worker(proc, dead_letter_queue=DLQ)
    wait_for(lambda: len(letters(r, prefix)) == 1 and len(letters(r, prefix, "special")) == 1, what="2 letters")
    (la,) = letters(r, prefix)
    (lb,) = letters(r, prefix, "special")
    assert la["data"] == {"n": 1} and la["opts"]["deadLetter"]["sourceJobId"] == a.id
    assert la["opts"]["deadLetter"]["attemptsMade"] == 1 and la["opts"]["deadLetter"]["failedReason"] == "no way"
    # the per-job DLQ is kept in the metadata (for a replay), not as an option: the letter is not re-lettered
    assert "deadLetterQueue" not in lb["opts"] and lb["opts"]["deadLetter"]["deadLetterQueue"] == "special"
    assert lb["opts"]["deadLetter"]["sourceJobId"] == b.id


def test_no_letter_without_a_dlq_or_for_retried_attempts(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                         r: redis.Redis, prefix: str) -> None:  # fmt: skip
    calls: list[int] = []

    def proc(job: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("once")
        return "ok"

    q.add("retried", {"n": 1}, attempts=2, dead_letter_queue=DLQ)
    make_worker(proc)
    wait_for(lambda: r.zcard(f"{prefix}:{Q}:completed"), what="completed after a retry")
    plain = q.add("plain", {"n": 2})
    wait_for(lambda: r.zscore(f"{prefix}:{Q}:failed", plain.id) or r.zcard(f"{prefix}:{Q}:completed") == 2,
             what="second job finished")  # fmt: skip
    assert not r.exists(f"{prefix}:{DLQ}:wait") and not r.exists(f"{prefix}:{DLQ}:meta")


def test_remove_on_fail_removes_the_original_keeps_the_letter(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                               r: redis.Redis, prefix: str) -> None:  # fmt: skip
    job = q.add("gone", {"n": 3}, remove_on_fail=True)
    make_worker(boom, dead_letter_queue=DLQ)
    wait_for(lambda: letters(r, prefix), what="the letter")
    wait_for(lambda: not r.exists(f"{prefix}:{Q}:{job.id}"), what="the original removed")
    (letter,) = letters(r, prefix)
    assert letter["data"] == {"n": 3} and letter["opts"]["removeOnFail"] is True


def test_stalled_beyond_the_limit_is_dead_lettered(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                   r: redis.Redis, prefix: str) -> None:  # fmt: skip
    job = q.add("stuck", {"n": 4}, attempts=3)
    # a worker took it and died: active, no lock, listed for the next stalled check
    r.lmove(f"{prefix}:{Q}:wait", f"{prefix}:{Q}:active", "RIGHT", "LEFT")
    r.sadd(f"{prefix}:{Q}:stalled", job.id)
    ran: list[str] = []
    make_worker(lambda job: ran.append(job.id), dead_letter_queue=DLQ, max_stalled_count=0, stalled_interval=200)
    wait_for(lambda: letters(r, prefix), timeout=10, what="the letter")
    (letter,) = letters(r, prefix)
    assert ran == []
    assert letter["opts"]["deadLetter"]["failedReason"] == "job stalled more than allowable limit"
    assert letter["data"] == {"n": 4}


def test_bad_dead_letter_queue_writes_nothing(q: sbqueue.Queue, r: redis.Redis, prefix: str) -> None:
    before = snapshot(r, prefix)
    with pytest.raises(InvalidOptionError, match="the queue itself"):
        Worker(Q, boom, r, prefix, dead_letter_queue=Q)
    with pytest.raises(InvalidQueueNameError):
        Worker(Q, boom, r, prefix, dead_letter_queue="a:b")
    with pytest.raises(InvalidOptionError):
        Worker(Q, boom, r, prefix, dead_letter_queue="")
    with pytest.raises(InvalidOptionError, match="the queue itself"):
        q.add("x", dead_letter_queue=Q)
    with pytest.raises(InvalidQueueNameError):
        q.add("x", dead_letter_queue="no:colons")
    with pytest.raises(InvalidOptionError, match="the queue itself"):
        q.add_bulk([{"name": "x", "opts": {"deadLetterQueue": Q}}])
    with pytest.raises(InvalidOptionError, match="the queue itself"):
        sbqueue.Queue(Q, r, prefix=prefix, default_job_options={"deadLetterQueue": Q}).add("x")
    assert snapshot(r, prefix) == before


def test_a_letter_written_twice_is_one_letter(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                              r: redis.Redis, prefix: str) -> None:  # fmt: skip
    """The crash window: the letter was written, the worker died before the finish. The job is run again
    (recovered by the stalled check) and fails at the same attempt: the same letter id, no second letter."""
    job = q.add("twice", {"n": 5})
    make_worker(boom, dead_letter_queue=DLQ)
    wait_for(lambda: r.zscore(f"{prefix}:{Q}:failed", job.id), what="failed")
    wait_for(lambda: letters(r, prefix), what="the letter")
    # undo the finish as if it had never been sent: the job back in active, unlocked, for the stalled check
    key = f"{prefix}:{Q}:{job.id}"
    r.zrem(f"{prefix}:{Q}:failed", job.id)
    r.hset(key, "atm", 0)
    r.hdel(key, "finishedOn", "failedReason")
    r.lpush(f"{prefix}:{Q}:active", job.id)
    r.sadd(f"{prefix}:{Q}:stalled", job.id)
    r.delete(f"{prefix}:{Q}:stalled-check")  # the first worker's check throttles the next one for 30 s
    make_worker(boom, dead_letter_queue=DLQ, stalled_interval=200)
    wait_for(lambda: r.zscore(f"{prefix}:{Q}:failed", job.id), timeout=10, what="failed again")
    time.sleep(0.2)
    assert len(letters(r, prefix)) == 1
    added = [e for _id, e in r.xrange(f"{prefix}:{DLQ}:events") if e["event"] in ("added", "duplicated")]
    assert [e["event"] for e in added] == ["added", "duplicated"]


def dead_letter(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str,
                jobs: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[str]:  # fmt: skip
    """Add ``jobs`` (name, data, options) to the source queue and let a worker dead-letter them all."""
    ids = [q.add(name, data, **opts).id for name, data, opts in jobs]
    w = make_worker(boom, dead_letter_queue=DLQ)
    wait_for(lambda: w.failed_count == len(jobs), what="all failed")
    wait_for(lambda: r.llen(f"{prefix}:{DLQ}:wait") + r.zcard(f"{prefix}:{DLQ}:prioritized") == len(jobs),
             what="all letters")  # fmt: skip
    w.close(timeout=1)
    return ids


def test_replay_dry_run_then_real(q: sbqueue.Queue, dlq: sbqueue.Queue, make_worker: Callable[..., Worker],
                                  r: redis.Redis, prefix: str) -> None:  # fmt: skip
    ids = dead_letter(q, make_worker, r, prefix, [("a", {"n": 1}, {"attempts": 2, "job_id": "a-1"}),
                                                  ("b", {"n": 2}, {"dead_letter_queue": DLQ}),
                                                  ("a", {"n": 3}, {})])  # fmt: skip
    before = snapshot(r, prefix)
    plan = dlq.replay_dead_letters(name="a")
    assert snapshot(r, prefix) == before  # a dry run writes nothing
    assert list(plan.columns) == ["dead_letter_id", "source_queue", "source_job_id", "target_queue", "new_job_id",
                                  "name", "failed_reason", "dead_lettered", "action"]  # fmt: skip
    assert sorted(plan["source_job_id"]) == sorted([ids[0], ids[2]]) and set(plan["action"]) == {"would replay"}
    assert set(plan["target_queue"]) == {Q} and plan["new_job_id"].isna().all()
    assert str(plan["dead_lettered"].dtype) == "datetime64[ns, UTC]"

    done = dlq.replay_dead_letters(name="a", dry_run=False)
    assert list(done["action"]) == ["replayed", "replayed"]
    for row in done.itertuples():
        h = r.hgetall(f"{prefix}:{Q}:{row.new_job_id}")
        opts = json.loads(h["opts"])
        assert h["name"] == "a" and "deadLetter" not in opts and "jobId" not in opts
        assert not r.exists(f"{prefix}:{DLQ}:{row.dead_letter_id}")
    data = [json.loads(r.hget(f"{prefix}:{Q}:{new_id}", "data")) for new_id in done.new_job_id]
    assert sorted(d["n"] for d in data) == [1, 3]
    assert r.lrange(f"{prefix}:{Q}:wait", 0, -1)[:2] == list(reversed(done["new_job_id"]))
    # the per-job DLQ option comes back with a replay of b
    back = dlq.replay_dead_letters(job_ids=[ids[1]], dry_run=False)
    assert list(back["action"]) == ["replayed"]
    assert json.loads(r.hget(f"{prefix}:{Q}:{back.new_job_id.iloc[0]}", "opts"))["deadLetterQueue"] == DLQ
    assert dlq.replay_dead_letters().empty
    removed = [e for _id, e in r.xrange(f"{prefix}:{DLQ}:events") if e["event"] == "removed"]
    assert len(removed) == 3


def test_replay_filters_and_bad_input(q: sbqueue.Queue, dlq: sbqueue.Queue, make_worker: Callable[..., Worker],
                                      r: redis.Redis, prefix: str) -> None:  # fmt: skip
    import datetime as dt
    import re

    dead_letter(q, make_worker, r, prefix, [(f"j{i}", {"n": i}, {}) for i in range(5)])
    assert len(dlq.replay_dead_letters()) == 5
    assert list(dlq.replay_dead_letters(failed_reason="bad 3")["name"]) == ["j3"]
    assert list(dlq.replay_dead_letters(failed_reason=re.compile(r"bad [12]$"))["name"]) == ["j1", "j2"]
    assert len(dlq.replay_dead_letters(limit=2)) == 2
    assert dlq.replay_dead_letters(source_queue="other").empty
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert dlq.replay_dead_letters(since=future).empty and len(dlq.replay_dead_letters(until=future)) == 5
    plan = dlq.replay_dead_letters(to="elsewhere", limit=1)
    assert list(plan["target_queue"]) == ["elsewhere"]
    before = snapshot(r, prefix)
    for bad in ({"to": DLQ}, {"to": "a:b"}, {"limit": 0}, {"failed_reason": 3}, {"job_ids": "dl-x"},
                {"since": dt.datetime(2026, 1, 1)}, {"since": future, "until": 0}, {"name": []}):  # fmt: skip
        with pytest.raises(InvalidOptionError):
            dlq.replay_dead_letters(dry_run=False, **bad)
    assert snapshot(r, prefix) == before
    moved = dlq.replay_dead_letters(to="elsewhere", name=["j0", "j4"], dry_run=False)
    assert list(moved["action"]) == ["replayed", "replayed"] and r.llen(f"{prefix}:elsewhere:wait") == 2


def test_concurrent_replays_replay_each_letter_once(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                    r: redis.Redis, prefix: str, redis_url: str) -> None:  # fmt: skip
    dead_letter(q, make_worker, r, prefix, [(f"j{i}", {"n": i}, {}) for i in range(40)])
    results: list[Any] = []
    start = threading.Barrier(4)

    def replay() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            mine = sbqueue.Queue(DLQ, client, prefix=prefix)
            start.wait()
            results.append(mine.replay_dead_letters(dry_run=False, batch_size=7))
        finally:
            client.close()

    threads = [threading.Thread(target=replay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    replayed = [lid for df in results for lid in df.loc[df.action == "replayed", "dead_letter_id"]]
    assert len(results) == 4 and len(replayed) == 40 and len(set(replayed)) == 40
    assert r.llen(f"{prefix}:{Q}:wait") == 40 and r.llen(f"{prefix}:{DLQ}:wait") == 0
    others = {a for df in results for a in df["action"]} - {"replayed"}
    assert others <= {"gone"}


def test_replay_is_audited_when_applied(q: sbqueue.Queue, dlq: sbqueue.Queue, make_worker: Callable[..., Worker],
                                        r: redis.Redis, prefix: str) -> None:  # fmt: skip
    from sbqueue.engine import audit

    dead_letter(q, make_worker, r, prefix, [("a", {"n": 1}, {})])
    with audit.acting("runbook:failed-jobs"):
        dlq.replay_dead_letters(name="a")
        assert not r.exists(f"{prefix}:sbqueue:audit")
        done = dlq.replay_dead_letters(name="a", dry_run=False)
    entries = [e for _id, e in r.xrange(f"{prefix}:sbqueue:audit")]
    assert [e["action"] for e in entries] == ["replay-dead-letters"]
    assert json.loads(entries[0]["ids"]) == list(done["dead_letter_id"]) and entries[0]["count"] == "1"


def test_inspector_dead_letters(q: sbqueue.Queue, dlq: sbqueue.Queue, make_worker: Callable[..., Worker],
                                r: redis.Redis, prefix: str) -> None:  # fmt: skip
    from sbqueue.inspection import Inspector
    from sbqueue.inspection.schemas import check_frame

    ids = dead_letter(q, make_worker, r, prefix, [("a", {"n": 1}, {}), ("b", {"n": 2}, {"priority": 2})])
    dlq.add("not-a-letter", {"x": 1})  # other jobs of the DLQ are left out
    with Inspector(r, prefix=prefix, progress=False) as insp:
        df = insp.dead_letters(DLQ)
        check_frame("dead_letters", df)
        assert sorted(df["source_job_id"]) == sorted(ids) and set(df["source_queue"]) == {Q}
        assert set(df["state"]) == {"waiting", "prioritized"} and set(df["source_prefix"]) == {prefix}
        assert sorted(df["failed_reason"]) == ["bad 1", "bad 2"] and set(df["attempts_made"]) == {1}
        assert df["dead_lettered"].is_monotonic_decreasing and df["created"].notna().all()
        assert "ValueError" in df["stacktrace"].iloc[0][-1]
        check_frame("dead_letters", insp.dead_letters(Q))
        assert insp.dead_letters(Q).empty and len(insp.dead_letters(DLQ, limit=1)) == 1
    check_frame("dead_letters", dlq.inspector.dead_letters())


def test_runbook_replays_dead_letters_and_checks(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                 r: redis.Redis, prefix: str) -> None:  # fmt: skip
    from sbqueue import runbook

    dead_letter(q, make_worker, r, prefix, [("a", {"n": 1}, {}), ("b", {"n": 2}, {})])
    before = snapshot(r, prefix)
    finding = runbook.diagnose_dead_letters(DLQ, r, prefix, name="a")
    assert finding.outcome == runbook.ACTION_NEEDED and "2 dead letters" in finding.cause
    assert list(finding.plan["jobs"]) == [1] and finding.plan["automatic"].all()
    with pytest.raises(InvalidOptionError):
        finding.apply()  # needs confirm=True
    assert snapshot(r, prefix) == before
    finding.carry_out(dry_run=False)
    assert finding.outcome == runbook.FIXED and finding.verified is not None and finding.verified[0]
    assert finding.applied == ["replayed 1 of 1 letters"]
    assert runbook.diagnose_dead_letters(DLQ, r, prefix, name="a").plan["action"].tolist() == ["choose letters"]
    assert runbook.diagnose_dead_letters("nope", r, prefix).outcome == runbook.NOT_FOUND


def test_jobs_processed_by_hand_are_dead_lettered_too(q: sbqueue.Queue, r: redis.Redis, prefix: str) -> None:
    w = Worker(Q, None, r, prefix, dead_letter_queue=DLQ)
    seen: list[tuple[str, str, str]] = []
    w.on("dead-lettered", lambda job, dlq, letter: seen.append((job.id, dlq, letter)))
    try:
        retried = q.add("charge", {"n": 1}, attempts=2)
        job = w.get_next_job("tok", block=False)
        assert job is not None and job.id == retried.id
        job.move_to_failed(ValueError("first"), "tok")  # a retry: no letter
        assert letters(r, prefix) == [] and seen == []
        job = w.get_next_job("tok", block=False)
        assert job is not None
        job.move_to_failed(ValueError("second"), "tok")  # attempts exhausted: the letter, then the failure
        own = q.add("refund", {"n": 2}, dead_letter_queue="own-dlq")
        job2 = w.get_next_job("tok", block=False)
        assert job2 is not None and job2.id == own.id
        job2.move_to_failed(UnrecoverableError("never"), "tok")
    finally:
        w.close()
    (letter,) = letters(r, prefix)
    assert letter["name"] == "charge" and letter["data"] == {"n": 1}
    meta = letter["opts"]["deadLetter"]
    assert meta["sourceJobId"] == retried.id and meta["failedReason"] == "second" and meta["attemptsMade"] == 2
    (other,) = letters(r, prefix, "own-dlq")
    assert other["data"] == {"n": 2} and other["opts"]["deadLetter"]["failedReason"] == "never"
    assert seen == [(retried.id, DLQ, letter["id"]), (own.id, "own-dlq", other["id"])]
    assert r.zscore(f"{prefix}:{Q}:failed", retried.id) is not None and r.zscore(f"{prefix}:{Q}:failed", own.id)
    assert {"dlq", "own-dlq"} <= r.smembers(f"{prefix}:sbqueue:dead-letter-queues")
