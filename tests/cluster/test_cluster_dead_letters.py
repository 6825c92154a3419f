"""Dead letters on the test Redis Cluster, the source queue and its dead-letter queue on different hash slots
(tags in the queue names, none in the prefix): the worker writes the letter and names the DLQ in the registry,
``Inspector.queues()`` marks it, and a replay takes the cross-slot path (claim, add under an id derived from the
letter, remove) — concurrent replays still make one job per letter."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.crc import key_slot

import sbqueue
from sbqueue.engine.worker import Worker
from sbqueue.inspection import Inspector
from tests.processors import wait_for

from .conftest import Cluster
from .helpers import wipe


@pytest.fixture
def cc(redis_cluster: Cluster) -> Iterator[Any]:
    client = sbqueue.connect(redis_cluster.url)
    yield client
    client.close()


@pytest.fixture
def names(cc: Any) -> Iterator[tuple[str, str, str]]:
    """(prefix without a tag, source queue, DLQ): the two queues on different slots."""
    hexid = uuid.uuid4().hex[:10]
    pfx, src, dlq = f"sbqt{hexid}", "{s" + hexid + "}", "{d" + hexid + "}"
    assert key_slot(f"{pfx}:{src}:wait".encode()) != key_slot(f"{pfx}:{dlq}:wait".encode())
    yield pfx, src, dlq
    wipe(cc, pfx)


def fail(job: Any) -> None:
    raise ValueError(f"bad {job.data['n']}")


def test_dead_letters_across_slots(cc: Any, names: tuple[str, str, str], redis_cluster: Cluster) -> None:
    pfx, src, dlq_name = names
    q = sbqueue.Queue(src, cc, prefix=pfx)
    dlq = sbqueue.Queue(dlq_name, cc, prefix=pfx)
    for i in range(12):
        q.add("charge", {"n": i}, priority=2 if i == 0 else None)
    worker = Worker(src, fail, redis_cluster.url, pfx, dead_letter_queue=dlq_name).start()
    try:
        wait_for(lambda: worker.failed_count == 12, 20, what="12 jobs dead-lettered")
    finally:
        worker.close()
    assert dlq.get_job_counts("waiting", "prioritized") == {"waiting": 11, "prioritized": 1}
    assert cc.smembers(f"{pfx}:sbqueue:dead-letter-queues") == {dlq_name}
    with Inspector(cc, prefix=pfx, progress=False) as insp:
        flags = dict(zip(*(insp.queues()[c] for c in ("queue", "dead_letter")), strict=True))
    assert flags == {src: False, dlq_name: True}

    results: list[Any] = []
    start = threading.Barrier(3)

    def replay() -> None:
        client = sbqueue.connect(redis_cluster.url)
        try:
            mine = sbqueue.Queue(dlq_name, client, prefix=pfx)
            start.wait()
            results.append(mine.replay_dead_letters(dry_run=False, batch_size=4))
        finally:
            client.close()

    threads = [threading.Thread(target=replay) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3
    replayed = [row for df in results for row in df.loc[df.action == "replayed"].itertuples()]
    assert len(replayed) == 12 and len({row.dead_letter_id for row in replayed}) == 12
    assert all(row.new_job_id.startswith("rp-") for row in replayed)
    assert {a for df in results for a in df["action"]} <= {"replayed", "gone", "claimed"}
    # one job per letter in the source queue, none left in the DLQ
    counts = q.get_job_counts("waiting", "prioritized")
    assert counts == {"waiting": 11, "prioritized": 1}
    assert sum(dlq.get_job_counts().values()) == 0
    job = q.get_job(replayed[0].new_job_id)
    assert job is not None and job.name == "charge" and "deadLetter" not in job.opts
    # claimed letters a concurrent replay skipped are not lost: nothing is left to replay
    assert dlq.replay_dead_letters().empty
