"""Telling dead-letter queues apart: the registry the worker writes (``<prefix>:sbqueue:dead-letter-queues``),
``Inspector.queues()``'s ``dead_letter`` column; and replaying across Redis Cluster slots (the fallback,
forced here on a plain Redis; tests/cluster/test_cluster_dead_letters.py runs it on the test cluster)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue.engine.worker import Worker
from sbqueue.inspection import Inspector
from sbqueue.inspection.schemas import check_frame
from tests.processors import wait_for
from tests.test_dead_letters import DLQ, Q, boom, dead_letter


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
        w = Worker(queue, processor, r, prefix, concurrency=1, **kw)
        made.append(w)
        return w.start() if start else w

    yield make
    for w in made:
        w.close(timeout=1)


def registry(r: redis.Redis, prefix: str) -> set[str]:
    return set(r.smembers(f"{prefix}:sbqueue:dead-letter-queues"))


def two_dlqs(q: sbqueue.Queue, make_worker: Callable[..., Worker]) -> None:
    """One letter in DLQ (the worker's), one in ``vip`` (the job's own)."""
    q.add("a", {"n": 1})
    q.add("b", {"n": 2}, dead_letter_queue="vip")
    w = make_worker(boom, dead_letter_queue=DLQ)
    wait_for(lambda: w.failed_count == 2, what="both dead-lettered")
    w.close(timeout=1)


def test_the_worker_registers_each_dead_letter_queue(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                     r: redis.Redis, prefix: str) -> None:  # fmt: skip
    assert not registry(r, prefix)
    two_dlqs(q, make_worker)
    assert registry(r, prefix) == {DLQ, "vip"}
    q.add("c", {"n": 3}, dead_letter_queue="vip")  # a DLQ already registered: written again, same set
    w = make_worker(boom, dead_letter_queue=DLQ)
    wait_for(lambda: w.failed_count == 1, what="failed")
    assert registry(r, prefix) == {DLQ, "vip"}


def test_a_refused_registry_write_still_writes_the_letter(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                          r: redis.Redis, prefix: str) -> None:  # fmt: skip
    """The registry is best effort: a key that refuses SADD (here: not a set) costs neither the letter nor the
    ``dead-lettered`` event; Inspector.queues() then recognises the DLQ by its letter."""
    r.set(f"{prefix}:sbqueue:dead-letter-queues", "not a set")
    errors: list[Exception] = []
    seen: list[str] = []
    w = make_worker(boom, dead_letter_queue=DLQ, start=False)
    w.on("error", errors.append)
    w.on("dead-lettered", lambda job, queue, letter: seen.append(letter))
    w.start()
    q.add("a", {"n": 1})
    wait_for(lambda: seen, what="dead-lettered")
    assert r.llen(f"{prefix}:{DLQ}:wait") == 1 and not errors
    with Inspector(r, prefix=prefix, progress=False) as insp:
        df = insp.queues().set_index("queue")
    assert bool(df.loc[DLQ, "dead_letter"]) and not bool(df.loc[Q, "dead_letter"])


def test_inspector_queues_marks_dead_letter_queues(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                   r: redis.Redis, prefix: str) -> None:  # fmt: skip
    two_dlqs(q, make_worker)
    sbqueue.Queue("plain", r, prefix=prefix).add("x", {})
    # an unregistered queue whose next job is a letter (written by an older sbqueue): recognised by the letter
    r.srem(f"{prefix}:sbqueue:dead-letter-queues", "vip")
    # a registered DLQ whose letters are all gone: still a DLQ
    sbqueue.Queue(DLQ, r, prefix=prefix).drain()
    with Inspector(r, prefix=prefix, progress=False) as insp:
        df = insp.queues()
        check_frame("queues", df)
        flags = dict(zip(df["queue"], df["dead_letter"], strict=True))
        assert flags == {Q: False, DLQ: True, "vip": True, "plain": False}
        assert str(df["dead_letter"].dtype) == "bool"
        assert insp.queues.__doc__ is not None and "dead_letter" in insp.queues.__doc__


def test_cross_slot_replay_fallback_on_plain_redis(q: sbqueue.Queue, dlq: sbqueue.Queue,
                                                   make_worker: Callable[..., Worker], r: redis.Redis, prefix: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The path Redis Cluster takes when the DLQ and the target are on different slots, forced here: the new job
    gets an id derived from the letter (``rp-...``), the letter is claimed first and removed after."""
    from sbqueue.engine._sync import dead_letters as sync_dead

    monkeypatch.setattr(sync_dead, "_same_slot", lambda client, a, b: False)
    ids = dead_letter(q, make_worker, r, prefix, [("a", {"n": 1}, {"priority": 2}), ("b", {"n": 2}, {})])
    done = dlq.replay_dead_letters(dry_run=False)
    assert list(done["action"]) == ["replayed", "replayed"]
    assert all(new.startswith("rp-") for new in done["new_job_id"])
    for row in done.itertuples():
        h = r.hgetall(f"{prefix}:{Q}:{row.new_job_id}")
        opts = json.loads(h["opts"])
        assert h["name"] == row.name and "deadLetter" not in opts and "jobId" not in opts
        assert not r.exists(f"{prefix}:{DLQ}:{row.dead_letter_id}")
    assert sorted(done["source_job_id"]) == sorted(ids)
    assert r.zcard(f"{prefix}:{Q}:prioritized") == 1 and r.llen(f"{prefix}:{Q}:wait") == 1
    assert dlq.replay_dead_letters().empty


def test_replay_picks_letters_in_every_state(q: sbqueue.Queue, dlq: sbqueue.Queue,
                                             make_worker: Callable[..., Worker], r: redis.Redis,
                                             prefix: str) -> None:  # fmt: skip
    """Regression: the states were filtered against a generator consumed by the first test, so only waiting
    letters were ever picked; prioritized ones (and failed, completed, delayed) are letters too."""
    dead_letter(q, make_worker, r, prefix, [("a", {"n": 1}, {"priority": 2}), ("b", {"n": 2}, {})])
    assert sorted(dlq.replay_dead_letters()["name"]) == ["a", "b"]
    done = dlq.replay_dead_letters(dry_run=False)
    assert list(done["action"]) == ["replayed", "replayed"] and r.zcard(f"{prefix}:{Q}:prioritized") == 1


def test_cross_slot_replay_that_died_half_way_is_finished_once(q: sbqueue.Queue, dlq: sbqueue.Queue,
                                                               make_worker: Callable[..., Worker], r: redis.Redis,
                                                               prefix: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A replay that claimed a letter and added its job, then died: its claim holds (``claimed``) for the lease,
    then the next replay takes it over, adds the same job id again (a no-op) and removes the letter."""
    from sbqueue._core import dead_letters as core
    from sbqueue.engine._sync import dead_letters as sync_dead
    from sbqueue.engine.scripting import ScriptRunner

    monkeypatch.setattr(sync_dead, "_same_slot", lambda client, a, b: False)
    dead_letter(q, make_worker, r, prefix, [("a", {"n": 1}, {})])
    (letter,) = r.lrange(f"{prefix}:{DLQ}:wait", 0, -1)
    settle = ScriptRunner(r, dlq.keys)
    now = int(time.time() * 1000)
    assert settle("settle_dead_letters", ["claim", "dead-replay", now, 60_000, 1, letter]) == [1]
    assert not r.llen(f"{prefix}:{DLQ}:wait") and r.zcard(f"{prefix}:{DLQ}:delayed") == 1  # out of consumers' reach
    new_id = core.replayed_id(letter, Q)
    q.add("a", {"n": 1}, job_id=new_id)  # the dead replay's add got through
    assert list(dlq.replay_dead_letters(dry_run=False)["action"]) == ["claimed"]
    monkeypatch.setattr(sync_dead, "LEASE_MS", 0)
    done = dlq.replay_dead_letters(dry_run=False)
    assert list(done["action"]) == ["replayed"] and list(done["new_job_id"]) == [new_id]
    assert r.llen(f"{prefix}:{Q}:wait") == 1 and not r.exists(f"{prefix}:{DLQ}:{letter}")
    assert [e["event"] for _id, e in r.xrange(f"{prefix}:{Q}:events")][-1] == "duplicated"
    # a claim of another token is refused by "remove"; an unknown letter is -1
    assert settle("settle_dead_letters", ["remove", "other", now, 60_000, 1, letter]) == [-1]
