"""sbqueue on a 3-master Redis Cluster: clients, both hash-tag layouts, the untagged-queue error, discovery on
every master, worker connections on any node, and the exporter.

The cluster is the session fixture ``redis_cluster`` (``conftest.py``); the standalone fixtures of
``tests/conftest.py`` are not used here. The main suites also run unchanged on the cluster
(``test_cluster_queue_api.py``, ``test_cluster_worker.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster

import sbqueue
from sbqueue import clients, connection
from sbqueue.connection import cluster as _cluster
from sbqueue.connection import cluster_nodes
from sbqueue.engine.events import QueueEvents
from sbqueue.engine.worker import Worker
from sbqueue.inspection import Inspector
from sbqueue.ops.exporter import QueueCollector, connect_exporter
from tests.processors import wait_for
from tests.queue_flavours import FLAVOURS, QueueFactory, complete, fail, fetch

from .conftest import Cluster, _binary
from .helpers import keys_by_node, wipe


@pytest.fixture
def url(redis_cluster: Cluster) -> str:
    return redis_cluster.url


@pytest.fixture
def cc(url: str) -> Iterator[Any]:
    """An sbqueue cluster client for direct checks."""
    client = sbqueue.connect(url)
    yield client
    client.close()


def owner(cc: Any, key: str) -> str:
    """``host:port`` of the master serving ``key``, asked of the server (CLUSTER KEYSLOT + CLUSTER SLOTS)."""
    slot = int(cc.execute_command("CLUSTER KEYSLOT", key))
    node = cc.get_default_node()
    for start, end, master, *_replicas in cc.get_redis_connection(node).execute_command("CLUSTER", "SLOTS"):
        if int(start) <= slot <= int(end):
            return f"{master[0] or node.host}:{master[1]}"
    raise AssertionError(f"no master serves slot {slot}")


def slots_of(cc: Any, keys: list[str]) -> set[int]:
    return {int(cc.execute_command("CLUSTER KEYSLOT", key)) for key in keys}


@dataclasses.dataclass
class Layout:
    """Where the hash tag goes: in the prefix (``{sbqt…}:q:…``) or in the queue name (``sbqt…:{q…}:…``)."""

    where: str
    prefix: str
    name: str

    def key(self, suffix: str) -> str:
        return f"{self.prefix}:{self.name}:{suffix}"


@pytest.fixture(params=["tag-in-prefix", "tag-in-name"])
def layout(request: pytest.FixtureRequest, cc: Any) -> Iterator[Layout]:
    hexid = uuid.uuid4().hex[:10]
    if request.param == "tag-in-prefix":
        lay = Layout(request.param, "{sbqt" + hexid + "}", "q")
    else:
        lay = Layout(request.param, f"sbqt{hexid}", "{q" + hexid + "}")
    yield lay
    wipe(cc, lay.prefix)


def assert_one_slot(cc: Any, lay: Layout) -> None:
    """Every key of the queue is on the tag's master, in one slot."""
    found = keys_by_node(cc, lay.prefix)
    assert list(found) == [owner(cc, lay.key("wait"))], found
    assert len(slots_of(cc, found[owner(cc, lay.key("wait"))])) == 1


# --- clients ---------------------------------------------------------------------------------------------------
def test_the_fixture_fails_without_the_redis_binaries() -> None:
    with pytest.raises(pytest.fail.Exception, match="required for the Redis Cluster tests"):
        _binary("sbqueue-no-such-redis-server")


def test_connect_picks_cluster_clients(url: str, redis_cluster: Cluster, cc: Any) -> None:
    assert isinstance(cc, redis.cluster.RedisCluster) and cc.ping()
    assert connection.url_of(cc) == url
    forced = sbqueue.connect(f"{url}/0?cluster=1")
    assert isinstance(forced, redis.cluster.RedisCluster)
    forced.close()
    single = sbqueue.connect(f"{redis_cluster.node_url(1)}?cluster=0")  # one node as a plain server
    assert isinstance(single, redis.Redis) and not _cluster.is_cluster(single)
    single.close()
    with pytest.raises(sbqueue.ConfigurationError, match="cluster=1 or cluster=0"):
        sbqueue.connect(f"{url}?cluster=maybe")
    assert clients.sync_client(cc) == (cc, False)  # decodes already: used as it is

    async def async_side() -> None:
        made = connection.connect_async(url)
        assert isinstance(made, redis.asyncio.cluster.RedisCluster)
        twin, owned = clients.async_client(cc)  # a sync cluster client -> an asyncio one on the same cluster
        assert isinstance(twin, redis.asyncio.cluster.RedisCluster) and owned
        assert await made.ping() and await twin.ping()
        await made.aclose()
        await twin.aclose()

    asyncio.run(async_side())
    twin = clients.sync_twin(cc, client_name="sbqt-twin")
    try:
        assert twin.client_getname() == "sbqt-twin"
        assert {a for a, _ in _cluster.addresses(twin)} == {"127.0.0.1"}
        assert sorted(p for _, p in _cluster.addresses(twin)) == sorted(redis_cluster.ports)
    finally:
        twin.close()


def test_unreachable_cluster_url_is_a_clear_error() -> None:
    from .conftest import _free_ports

    (port,) = _free_ports(1)
    with pytest.raises(sbqueue.ConnectionFailedError, match="cannot reach the Redis Cluster"):
        sbqueue.connect(f"redis://:secret-pw@127.0.0.1:{port}?cluster=1", socket_connect_timeout=0.5)


def test_plain_redis_py_cluster_clients_are_accepted(redis_cluster: Cluster) -> None:
    """Clients the caller made with redis-py (not sbqueue.connect) work everywhere, and stay the caller's."""
    pfx = "{sbqt" + uuid.uuid4().hex[:10] + "}"
    plain = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[1], decode_responses=True)
    try:
        q = sbqueue.Queue("q", plain, prefix=pfx)
        job = q.add("j", {"n": 1})
        q.close()
        assert plain.ping()  # closing the queue left the caller's cluster client usable
        done = threading.Event()
        w = Worker("q", lambda job: done.set(), plain, pfx, name="plain").start()
        assert done.wait(5)
        w.close(timeout=5)
        events = QueueEvents("q", plain, prefix=pfx, last_event_id="0-0")
        assert [e["jobId"] for e in events.read(block_ms=100) if e["event"] == "completed"] == [job.id]
        events.close()
        insp = Inspector(plain, pfx)
        assert list(insp.queues()["queue"]) == ["q"] and list(insp.jobs("q")["state"]) == ["completed"]
        insp.close()
        collector = QueueCollector(plain, pfx, queues=["q"])
        samples = {(s.name, s.labels.get("queue")): s.value for fam in collector.collect() for s in fam.samples}
        assert samples[("bullmq_queue_completed", "q")] == 1

        async def async_side() -> None:
            aplain = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[2],
                                                        decode_responses=True)  # fmt: skip
            aq = sbqueue.AsyncQueue("q", aplain, prefix=pfx)
            assert (await aq.get_job_counts("completed")) == {"completed": 1}
            await aq.close()
            assert await aplain.ping()
            await aplain.aclose()

        asyncio.run(async_side())
    finally:
        wipe(plain, pfx)
        plain.close()


# --- the queue, in both layouts and both flavours ------------------------------------------------------------------
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_queue_core_on_cluster(flavour: str, layout: Layout, url: str, cc: Any) -> None:
    factory = QueueFactory(flavour, url, layout.prefix)
    try:
        q = factory(layout.name)
        assert _cluster.is_cluster(q.client)
        plain = q.add("plain", {"n": 1})
        delayed = q.add("delayed", 2, delay=60_000)
        prio = q.add("prio", 3, priority=5)
        lifo = q.add("lifo", 4, lifo=True)
        custom = q.add("custom", 5, job_id="my-id")
        assert q.add("custom", 6, job_id="my-id").id == "my-id"  # duplicate: a no-op
        dedup = q.add("dedup", 7, deduplication={"id": "d1"})
        assert q.add("dedup", 8, deduplication={"id": "d1"}).id == dedup.id
        bulk = q.add_bulk([{"name": "bulk", "data": i} for i in range(3)])
        assert [j.name for j in bulk] == ["bulk"] * 3
        counts = q.get_job_counts()
        assert (counts["waiting"], counts["delayed"], counts["prioritized"]) == (7, 1, 1)
        assert q.get_job_ids("waiting", asc=True)[:2] == [lifo.id, plain.id]  # next to run first
        assert q.get_job_ids("waiting")[0] == bulk[-1].id
        for job, state in ((delayed, "delayed"), (prio, "prioritized"), (custom, "waiting")):
            assert q.get_job_state(job.id) == state
        assert q.get_job("my-id").data == 5

        # through active to completed and failed (as a worker would), then the getters
        (first, t1), (second, t2) = fetch(q, 2)
        assert (first, second) == (lifo.id, plain.id)
        assert complete(q, first, t1) == 1 and fail(q, second, t2) == 1
        assert q.get_job_state(first) == "completed" and q.get_job_state(second) == "failed"
        assert [j.id for j in q.get_completed()] == [first] and [j.id for j in q.get_failed()] == [second]
        q.add_job_log(custom.id, "a line")
        assert q.get_job_logs(custom.id)["logs"] == ["a line"]
        q.update_job_progress(custom.id, 42)
        assert q.get_job(custom.id).progress == 42

        q.pause()
        assert q.is_paused() and fetch(q, 1) == []
        q.resume()
        assert not q.is_paused()
        q.retry_job(second)
        assert q.get_job_state(second) == "waiting"
        q.promote_job(delayed.id)
        assert q.get_job_state(delayed.id) == "waiting"
        assert q.clean(0, 10, "completed") == [first]
        assert q.remove(custom.id) is True and q.get_job(custom.id) is None
        assert q.drain() == 7 and q.get_job_counts("waiting") == {"waiting": 0}  # prioritized ones too

        # schedulers: every (its first iteration is due now) and cron
        it = q.upsert_job_scheduler("tick", every=60_000, data={"t": 1})
        q.upsert_job_scheduler("cron", pattern="0 3 * * *", tz="Europe/Paris")
        assert {s["id"] for s in q.get_job_schedulers()} == {"tick", "cron"}
        assert it.id.startswith("repeat:tick:") and q.get_job_state(it.id) in ("waiting", "delayed")
        assert q.remove_job_scheduler("cron") is True and q.get_job_scheduler("cron") is None

        assert_one_slot(cc, layout)
        q.obliterate(force=True)
        assert keys_by_node(cc, layout.prefix) == {}
    finally:
        factory.close()


# --- the worker, in both layouts ----------------------------------------------------------------------------------
def test_worker_on_cluster(layout: Layout, url: str, cc: Any) -> None:
    q = sbqueue.Queue(layout.name, url, prefix=layout.prefix)
    events = QueueEvents(layout.name, url, prefix=layout.prefix, block_ms=200)
    seen: list[str] = []
    events.on("completed", lambda e: seen.append(e["jobId"]))
    events.start()
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def proc(job: Any) -> Any:
        with lock:
            attempts[job.id] = attempts.get(job.id, 0) + 1
        if job.data == "flaky" and attempts[job.id] == 1:
            raise RuntimeError("first attempt fails")
        if job.data == "bad":
            raise ValueError("always fails")
        return {"id": job.id}

    # a job whose worker "died": fetched with a 300 ms lock that nobody renews
    orphan = q.add("orphan", 0)
    assert [i for i, _token in fetch(q, 1, lock_ms=300)] == [orphan.id]
    ok = [q.add("ok", i) for i in range(5)]
    flaky = q.add("flaky", "flaky", attempts=2)
    bad = q.add("bad", "bad", attempts=2)
    w = Worker(layout.name, proc, url, layout.prefix, concurrency=4, stalled_interval=300, name="cw")
    stalled: list[str] = []
    w.on("stalled", stalled.append)
    try:
        w.start()
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 7, 10, what="7 completed jobs")
        wait_for(lambda: q.get_job_counts("failed")["failed"] == 1, 5, what="1 failed job")
        assert q.get_job(flaky.id).attempts_made == 2 and q.get_job(flaky.id).returnvalue == {"id": flaky.id}
        assert q.get_job(bad.id).failed_reason == "always fails" and attempts[bad.id] == 2
        assert stalled == [orphan.id] and q.get_job(orphan.id).stalled_count == 1
        workers = q.get_workers()
        assert [wk["rawname"] for wk in workers] == [q.keys.client_name("cw")]
        assert workers[0]["node"] == owner(cc, layout.key("marker"))  # one connection, on the queue's master
        wait_for(lambda: len(seen) >= 7, 5, what="completed events")
        assert set(seen) == {j.id for j in [*ok, flaky, orphan]}
    finally:
        w.close(timeout=5)
        events.close()
        q.close()
    assert not w.running
    assert_one_slot(cc, layout)


# --- no hash tag: a clear error, before any write ------------------------------------------------------------------
def test_untagged_queue_is_refused_before_any_write(url: str, cc: Any) -> None:
    pfx = f"sbqt{uuid.uuid4().hex[:10]}"
    before = cluster_nodes.dbsize(cc)
    for make in (
        lambda: sbqueue.Queue("plain", url, prefix=pfx),
        lambda: sbqueue.Queue("plain", cc, prefix=pfx),
        lambda: sbqueue.AsyncQueue("plain", url, prefix=pfx),
        lambda: sbqueue.AsyncQueue("plain", cc, prefix=pfx),
        lambda: Worker("plain", lambda job: None, url, pfx),
        lambda: Worker("plain", lambda job: None, cc, pfx),
    ):
        with pytest.raises(sbqueue.ClusterKeyError) as info:
            make()
        text = str(info.value)
        assert "hash tag" in text and f"prefix='{{{pfx}}}'" in text and "'{plain}'" in text
    assert keys_by_node(cc, pfx) == {} and cluster_nodes.dbsize(cc) == before
    # the same names are fine on a single server, and tagged ones on the cluster
    tagged = sbqueue.Queue("{plain}", cc, prefix=pfx)
    tagged.close()


def test_min_replicas_is_refused_on_a_cluster_before_any_write(url: str, cc: Any) -> None:
    """WAIT must follow the add on the connection that made it; a cluster pipeline cannot promise that."""
    pfx = f"{{sbqt{uuid.uuid4().hex[:10]}}}"
    before = cluster_nodes.dbsize(cc)
    for make in (lambda: sbqueue.Queue("q", url, prefix=pfx, min_replicas=1),
                 lambda: sbqueue.Queue("q", cc, prefix=pfx, min_replicas=1),
                 lambda: sbqueue.AsyncQueue("q", url, prefix=pfx, min_replicas=1)):
        with pytest.raises(sbqueue.ConfigurationError, match="min_replicas=1 is not supported on Redis Cluster"):
            make()
    assert keys_by_node(cc, pfx) == {} and cluster_nodes.dbsize(cc) == before
    sbqueue.Queue("q", cc, prefix=pfx, min_replicas=0).close()  # the default is fine


# --- discovery on every master -----------------------------------------------------------------------------------
@pytest.fixture
def spread(cc: Any) -> Iterator[tuple[str, dict[str, str]]]:
    """A prefix and ``{queue name: master}``: one queue (tag in the name) on each of the three masters."""
    pfx = f"sbqt{uuid.uuid4().hex[:10]}"
    names: dict[str, str] = {}
    masters = {n.name for n in cc.get_primaries()}
    i = 0
    while set(names.values()) != masters:
        name = f"{{n{i}}}"
        node = owner(cc, f"{pfx}:{name}:wait")
        if node not in names.values():
            names[name] = node
        i += 1
    yield pfx, names
    wipe(cc, pfx)


def test_inspector_finds_queues_on_every_master(url: str, cc: Any, spread: tuple[str, dict[str, str]]) -> None:
    pfx, names = spread
    for n, name in enumerate(sorted(names)):
        q = sbqueue.Queue(name, cc, prefix=pfx)
        q.add_bulk([{"name": "j", "data": {"i": i}} for i in range(n + 2)])
        q.add("big", {"blob": "x" * 50_000})
        ((job_id, token),) = fetch(q, 1)
        assert complete(q, job_id, token) == 1
        q.close()
    found = keys_by_node(cc, pfx)
    assert set(found) == set(names.values())  # really spread over the three masters

    for connection_arg in (url, cc):
        insp = Inspector(connection_arg, pfx)
        try:
            queues = insp.queues().set_index("queue")
            assert set(queues.index) == set(names)
            for n, name in enumerate(sorted(names)):
                assert queues.loc[name, "waiting"] == n + 2 and queues.loc[name, "completed"] == 1
                jobs = insp.jobs(name)
                assert len(jobs) == n + 3 and jobs["parse_error"].isna().all()
                assert insp.jobs(name, "completed")["data"].iloc[0] is not None
            big = insp.bigkeys(match=f"{pfx}:*", top=100)
            assert set(big["queue"]) == set(names)
            assert {owner(cc, key) for key in big["key"]} == set(names.values())
            top = big.iloc[0]
            assert top["role"] == "job hash" and top["bytes"] > 50_000
            memory = insp.memory_by_queue()
            assert set(memory["queue"].dropna()) == set(names)
            assert memory[memory["role"] == "job hash"].set_index("queue")["keys"].to_dict() == {
                name: n + 3 for n, name in enumerate(sorted(names))
            }
        finally:
            insp.close()


def test_get_workers_sees_workers_on_every_node(url: str, cc: Any, spread: tuple[str, dict[str, str]]) -> None:
    pfx, names = spread
    workers = [Worker(name, lambda job: None, url, pfx, name=f"w{i}").start() for i, name in enumerate(sorted(names))]
    queues = [sbqueue.Queue(name, cc, prefix=pfx) for name in sorted(names)]
    try:
        for i, (name, q) in enumerate(zip(sorted(names), queues, strict=True)):
            listed = wait_for(lambda q=q: q.get_workers(), 20, what=f"the worker of {name}")
            assert [(c["rawname"], c["node"]) for c in listed] == [(q.keys.client_name(f"w{i}"), names[name])]
        insp = Inspector(cc, pfx)
        try:
            table = insp.workers()
            assert sorted(table["queue"]) == sorted(names) and sorted(table["worker_name"]) == ["w0", "w1", "w2"]
            queues_view = insp.queues().set_index("queue")
            assert (queues_view.loc[sorted(names), "workers"] == 1).all()
        finally:
            insp.close()
    finally:
        for w in workers:
            w.close(timeout=5)
        for q in queues:
            q.close()


def test_exporter_on_cluster(url: str, cc: Any, spread: tuple[str, dict[str, str]]) -> None:
    pfx, names = spread
    for n, name in enumerate(sorted(names)):
        q = sbqueue.Queue(name, cc, prefix=pfx)
        q.add_bulk([{"name": "j"} for _ in range(n + 1)])
        q.close()
    client = connect_exporter(f"{url}?cluster=1")
    assert _cluster.is_cluster(client)
    try:
        collector = QueueCollector(client, pfx, discovery_interval=0, scan_budget=1000)
        samples = {}
        for _ in range(10):  # discovery walks one master per SCAN page: a few scrapes at most
            samples = {(s.name, s.labels.get("queue")): s.value for fam in collector.collect() for s in fam.samples}
            if all(("bullmq_queue_waiting", name) in samples for name in names):
                break
        assert samples[("redis_up", None)] == 1
        for n, name in enumerate(sorted(names)):
            assert samples[("bullmq_queue_waiting", name)] == n + 1
    finally:
        client.close()


def test_inspector_other_views_work_on_a_cluster(cc: Any, spread: tuple[str, dict[str, str]]) -> None:
    pfx, names = spread
    name = sorted(names)[0]
    q = sbqueue.Queue(name, cc, prefix=pfx)
    job = q.add("j", 1)
    q.upsert_job_scheduler("s", every=60_000)
    q.close()
    insp = Inspector(cc, pfx)
    try:
        assert len(insp.clients()) >= 3  # CLIENT LIST of every node: our own connection to each master
        for view in ("info", "persistence", "slowlog", "latency", "memory", "commandstats", "config_audit"):
            getattr(insp, view)()  # server views describe the first master
        assert "RedisDown" not in set(insp.alerts(0).query("firing")["name"])
        for view in ("stalled", "events", "metrics", "schedulers", "consistency", "failures"):
            getattr(insp, view)(name)
        assert len(insp.timeline(name, job.id)) >= 1
        assert len(insp.queue(name).summary()) == 1
    finally:
        insp.close()


def test_blocking_client_follows_moved(url: str, cc: Any, redis_cluster: Cluster) -> None:
    """A worker's blocking connection starts on a wrong node (as after a failover) and follows MOVED."""
    key = "{sbqt-moved}:q:marker"
    right = owner(cc, key)
    wrong = next(n for n in cc.get_primaries() if n.name != right)

    async def scenario() -> None:
        client = _cluster.BlockingNodeClient(cc, key, client_name="sbqt-blocking", socket_timeout=5)
        client._addr = (wrong.host, int(wrong.port))
        assert await client.ping()  # PING has no key: answered by whichever node
        assert await client.bzpopmin(key, timeout=0.05) is None  # MOVED -> re-sent to the right master
        assert client.address is not None and f"{client.address[0]}:{client.address[1]}" == right
        await client.aclose()

    asyncio.run(scenario())
    time.sleep(0.05)
    named = [c for c in cluster_nodes.client_list(cc) if c.get("name") == "sbqt-blocking"]
    assert named == []  # closed


# --- ACL users on a cluster ----------------------------------------------------------------------------------------
def test_acl_roles_with_cluster_rules_run_a_queue_on_every_node(url: str, cc: Any) -> None:
    """``acl.setuser(..., cluster=True)`` creates the user on every node, with what a cluster client needs."""
    from sbqueue import acl

    pfx = "{acl" + uuid.uuid4().hex[:8] + "}"
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    host_port = url.split("://", 1)[1].split("?", 1)[0]
    user_url = f"redis://{user}:{password}@{host_port}?cluster=1"
    try:
        acl.setuser(cc, user, password, "producer", "worker", prefix=pfx)  # no cluster rules: refused
        with pytest.raises(sbqueue.SbqueueError):
            sbqueue.Queue("jobs", user_url, prefix=pfx).add("x", 1)
        acl.setuser(cc, user, password, "producer", "worker", prefix=pfx, cluster=True)
        for node in cc.get_nodes():  # users are per node: every node has it
            assert node.redis_connection.acl_getuser(user) is not None
        q = sbqueue.Queue("jobs", user_url, prefix=pfx)
        ids = [q.add("x", i).id for i in range(5)]
        done: list[str] = []
        w = Worker("jobs", lambda job: done.append(job.id), user_url, pfx, concurrency=2)
        w.start()
        try:
            wait_for(lambda: len(done) == 5, 10, what="5 jobs done by the ACL user")
        finally:
            w.close(timeout=5)
        assert sorted(done) == sorted(ids) and q.get_job_counts("completed")["completed"] == 5
        with pytest.raises(redis.exceptions.NoPermissionError):
            q.client.set("elsewhere", 1)  # nothing outside its prefix
        q.close()
    finally:
        cc.execute_command("ACL", "DELUSER", user, target_nodes=cc.get_nodes())
        for key in cc.scan_iter(match=f"{pfx}:*"):
            cc.delete(key)


@pytest.mark.parametrize("form", ["cluster-bytes", "asyncio-cluster-bytes"])
def test_every_class_with_a_users_cluster_client(redis_cluster: Cluster, cc: Any, form: str) -> None:
    """The client-matrix cycle (tests/clients) with the cluster clients redis-py makes by default (bytes)."""
    from tests.clients.test_client_matrix import full_cycle

    port = redis_cluster.ports[0]
    user_client: Any = (redis.cluster.RedisCluster(host="127.0.0.1", port=port) if form == "cluster-bytes"
                        else redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port))  # fmt: skip
    pfx = f"{{sbqt{uuid.uuid4().hex[:8]}}}"
    try:
        full_cycle(user_client, pfx)
    finally:
        wipe(cc, pfx)
        if form == "cluster-bytes":
            user_client.close()
