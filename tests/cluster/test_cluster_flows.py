"""Flows on Redis Cluster: a flow whose queues share one hash tag runs end to end (one script writes the tree,
the workers update parents); queues with different tags are refused before any write."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import sbqueue
from sbqueue.connection import cluster_nodes
from sbqueue.engine.worker import Worker
from tests.processors import wait_for

from .conftest import Cluster
from .helpers import keys_by_node, wipe


@pytest.fixture
def cc(redis_cluster: Cluster) -> Iterator[Any]:
    client = sbqueue.connect(redis_cluster.url)
    yield client
    client.close()


def test_flow_with_a_tagged_prefix_runs_on_cluster(redis_cluster: Cluster, cc: Any) -> None:
    prefix = "{sbqt" + uuid.uuid4().hex[:10] + "}"
    url = redis_cluster.url
    workers: list[Worker] = []
    try:
        fp = sbqueue.FlowProducer(url, prefix=prefix)
        node = fp.add({"name": "parent", "queue_name": "parents", "children": [
            {"name": "c", "queue_name": "kids", "data": {"i": i}, "opts": {"ignore_dependency_on_failure": True}}
            for i in range(3)]})  # fmt: skip
        workers.append(Worker("kids", lambda job: job.data["i"], url, prefix, concurrency=2).start())
        workers.append(Worker("parents", lambda job: sorted(job.get_children_values().values()), url, prefix).start())
        parents = sbqueue.Queue("parents", url, prefix=prefix)
        wait_for(lambda: parents.get_job_state(node.job.id) == "completed", 15, what="parent completed")
        assert parents.get_job(node.job.id).returnvalue == [0, 1, 2]  # type: ignore[union-attr]
        assert len(keys_by_node(cc, prefix)) == 1  # one slot, one master
        parents.close()
        fp.close()
    finally:
        for w in workers:
            w.close(timeout=5)
        wipe(cc, prefix)


def test_flow_over_two_hash_tags_is_refused_before_any_write(redis_cluster: Cluster, cc: Any) -> None:
    prefix = f"sbqt{uuid.uuid4().hex[:10]}"
    before = cluster_nodes.dbsize(cc)
    fp = sbqueue.FlowProducer(redis_cluster.url, prefix=prefix)
    try:
        with pytest.raises(sbqueue.ClusterKeyError, match="same hash tag"):
            fp.add({"name": "p", "queue_name": "{a}", "children": [{"name": "c", "queue_name": "{b}"}]})
        with pytest.raises(sbqueue.ClusterKeyError, match="hash tag"):
            fp.add({"name": "p", "queue_name": "untagged"})
    finally:
        fp.close()
    assert keys_by_node(cc, prefix) == {} and cluster_nodes.dbsize(cc) == before
