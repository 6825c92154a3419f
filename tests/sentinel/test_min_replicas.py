"""``Queue(..., min_replicas=n, replica_timeout=ms)``: an add waits for ``n`` replicas (Redis ``WAIT`` on the
add's own connection) and raises :class:`ReplicationTimeoutError` when fewer acknowledge in time."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

import sbqueue
from sbqueue.errors import InvalidOptionError, ReplicationTimeoutError
from tests.conftest import delete_prefix

from .servers import SentinelGroup


@pytest.fixture
def prefix(sentinel_group: SentinelGroup) -> Iterator[str]:
    pfx = f"sbqr{uuid.uuid4().hex[:8]}"
    yield pfx
    with sbqueue.connect(sentinel_group.url) as admin:
        delete_prefix(admin, pfx)


def test_adds_wait_for_the_replica(sentinel_group: SentinelGroup, prefix: str) -> None:
    q = sbqueue.Queue("mr", sentinel_group.url, prefix=prefix, min_replicas=1, replica_timeout=5_000)
    job = q.add("a", {"x": 1})
    jobs = q.add_bulk([{"name": "b", "data": {"i": i}} for i in range(3)])
    with sentinel_group.node(sentinel_group.replica_port()) as replica:  # already there: WAIT returned
        assert replica.hget(f"{prefix}:mr:{job.id}", "name") == "a"
        assert all(replica.exists(f"{prefix}:mr:{j.id}") for j in jobs)
    q.close()


def test_too_few_replicas_raise_and_a_retry_is_a_no_op(sentinel_group: SentinelGroup, prefix: str) -> None:
    q = sbqueue.Queue("mr", sentinel_group.url, prefix=prefix, min_replicas=2, replica_timeout=200)
    started = time.monotonic()
    with pytest.raises(ReplicationTimeoutError, match=r"only 1 of min_replicas=2 .* job\(s\) x1 within 200 ms") as err:
        q.add("a", {"x": 1}, job_id="x1")
    assert 0.15 < time.monotonic() - started < 3
    assert err.value.job_ids == ["x1"] and err.value.acknowledged == 1 and isinstance(err.value, sbqueue.SbqueueError)
    with pytest.raises(ReplicationTimeoutError) as err:
        q.add_bulk([{"name": "b", "data": {}, "opts": {"job_id": f"y{i}"}} for i in range(7)])
    assert err.value.job_ids == [f"y{i}" for i in range(7)] and "y0, y1, y2, y3, y4 and 2 more" in str(err.value)
    # the jobs are on the master; the retry of a timed-out add keeps the first one
    relaxed = sbqueue.Queue("mr", sentinel_group.url, prefix=prefix, min_replicas=1)
    assert relaxed.add("a", {"x": 2}, job_id="x1").id == "x1"
    assert relaxed.get_job("x1").data == {"x": 1} and relaxed.get_job_counts("waiting")["waiting"] == 8

    async def async_add() -> None:
        aq = sbqueue.AsyncQueue("mr", sentinel_group.url, prefix=prefix, min_replicas=2, replica_timeout=100)
        try:
            with pytest.raises(ReplicationTimeoutError):
                await aq.add("c", None, job_id="z1")
        finally:
            await aq.close()

    asyncio.run(async_add())
    q.close()
    relaxed.close()


@pytest.mark.parametrize(("kwargs", "option"), [({"min_replicas": -1}, "min_replicas"),
                                                ({"min_replicas": "1"}, "min_replicas"),
                                                ({"replica_timeout": 0}, "replica_timeout")])  # fmt: skip
def test_bad_replica_options_are_refused(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(InvalidOptionError) as err:
        sbqueue.Queue("mr", "redis://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]
    assert err.value.option == option


def test_the_producer_acl_allows_min_replicas(sentinel_group: SentinelGroup, prefix: str) -> None:
    from sbqueue import acl

    master = sentinel_group.master_port()
    with sentinel_group.node(master) as admin:
        acl.setuser(admin, "sbq-producer", "pw-1", "producer", prefix=prefix)
    try:
        url = f"redis://sbq-producer:pw-1@127.0.0.1:{master}/0"
        q = sbqueue.Queue("mr", url, prefix=prefix, min_replicas=1, replica_timeout=5_000)
        assert q.add("a", {"x": 1}).id == "1" and len(q.add_bulk([{"name": "b"}])) == 1
        q.close()
    finally:
        with sentinel_group.node(master) as admin:
            admin.acl_deluser("sbq-producer")
