"""Every Inspector method runs as a Redis ACL user that cannot write (rules: ``INSPECTOR_ACL``)."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import pytest
import redis

import sbqueue
from sbqueue.engine import audit
from sbqueue.inspection import INSPECTOR_ACL, Inspector, QueueInspector, bind
from sbqueue.inspection.schemas import check_frame

from .conftest import snapshot
from .test_inspection_queues import _flaky, process

#: every public Inspector method -> how the test calls it (and the schema it must return)
CALLS: dict[str, tuple[tuple[Any, ...], str]] = {
    "queues": ((), "queues"), "jobs": (("ro",), "jobs"), "failures": (("ro",), "failures"),
    "stalled": (("ro",), "stalled"), "events": (("ro",), "events"), "timeline": (("ro", "1"), "timeline"),
    "metrics": (("ro",), "metrics"), "workers": ((), "workers"), "schedulers": (("ro",), "schedulers"),
    "consistency": (("ro",), "consistency"), "info": ((), "info"), "clients": ((), "clients"),
    "persistence": ((), "persistence"), "slowlog": ((), "slowlog"), "latency": ((), "latency"),
    "memory": ((), "memory"), "commandstats": ((), "commandstats"), "bigkeys": ((), "bigkeys"),
    "memory_by_queue": ((), "memory_by_queue"), "config_audit": ((), "config_audit"),
    "alerts": ((0.2,), "alerts"), "flow": (("ro", "1"), "flow"), "flows": (("ro",), "flow"),
    "audit": ((), "audit"), "dead_letters": (("ro",), "dead_letters"),
}  # fmt: skip
NOT_FRAMES = {"close", "queue", "export", "client", "history"}  # history(): the Parquet dataset, no Redis


def _url_for(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, parts.fragment))


@pytest.fixture
def readonly_url(r: redis.Redis, redis_url: str) -> Iterator[Callable[[str], str]]:
    """A factory of throw-away ACL users (``rules`` -> URL); every user is deleted afterwards."""
    made: list[str] = []

    def make(rules: str) -> str:
        user, password = f"sbq-ro-{secrets.token_hex(4)}", secrets.token_hex(12)
        r.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules.split())
        made.append(user)
        return _url_for(redis_url, user, password)

    yield make
    for user in made:
        r.execute_command("ACL", "DELUSER", user)


@pytest.fixture
def data(r: redis.Redis, prefix: str) -> str:
    q = sbqueue.Queue("ro", r, prefix=prefix)
    q.add_bulk([{"name": "n", "data": {"i": i, "customer": {"id": i}}} for i in range(8)])
    process(r, prefix, "ro", _flaky, 8)
    q.add("later", {"i": 1}, delay=60_000)
    q.add("now", {"i": 2}, priority=3)
    q.upsert_job_scheduler("tick", every=60_000, name="tick")
    r.hset(f"{prefix}:ro:bad", mapping={"name": "b", "data": "{", "opts": "x"})
    r.rpush(f"{prefix}:ro:wait", "bad", "gone")
    r.rpush(f"{prefix}:ro:active", "gone-too")
    with audit.acting("runbook:test"):  # an operator's action: the trail the inspector reads
        q.remove_rate_limit_key()
    return "ro"


def test_calls_cover_every_public_method() -> None:
    public = {n for n, _ in inspect.getmembers(Inspector) if not n.startswith("_")}
    assert public - NOT_FRAMES == set(CALLS)
    bound = {n for n, _ in inspect.getmembers(QueueInspector) if not n.startswith("_")} - {"summary"}
    assert bound == {n for n, (args, _) in CALLS.items() if args and args[0] == "ro"} | {"workers"}


def test_every_method_runs_read_only(r: redis.Redis, prefix: str, data: str, readonly_url: Any) -> None:
    url = readonly_url(INSPECTOR_ACL)
    probe = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        probe.set(f"{prefix}:ro:probe", 1)
    with pytest.raises(redis.ResponseError, match=r"(?i)permission|can't run"):
        probe.eval("return redis.call('SET', KEYS[1], 1)", 1, f"{prefix}:ro:probe")  # ACL holds inside scripts
    probe.close()
    before = snapshot(r, prefix)
    with Inspector(url, prefix=prefix, progress=False) as insp:
        for method, (args, schema) in CALLS.items():
            df = getattr(insp, method)(*args)
            assert isinstance(df, pd.DataFrame), method
            check_frame(schema, df)
            if method not in ("workers", "slowlog", "latency", "stalled", "schedulers", "consistency", "flows",
                              "dead_letters"):  # fmt: skip
                assert not df.empty, method
        assert insp._ctx.use_script is True  # the fast read path is allowed for this user
        qi = bind(insp, data)
        for method in ("jobs", "failures", "stalled", "events", "metrics", "workers", "schedulers", "consistency",
                       "dead_letters"):  # fmt: skip
            check_frame(method, getattr(qi, method)())
        check_frame("timeline", qi.timeline("2"))
        check_frame("queues", qi.summary())
        jobs = insp.jobs(data)
        alerts = insp.alerts(0.2)
    assert snapshot(r, prefix) == before
    assert {"bad", "gone"} <= set(jobs.id) and jobs.set_index("id").loc["gone"].parse_error.startswith("job hash")
    assert not alerts.set_index(["name", "scope"]).loc[("RedisDown", "server")].firing


def test_without_script_permission_reads_fall_back_to_pipelines(
    r: redis.Redis, prefix: str, data: str, readonly_url: Any
) -> None:
    rules = " ".join(rule for rule in INSPECTOR_ACL.split() if rule not in ("+eval", "+evalsha"))
    assert "eval" not in rules
    with Inspector(r, prefix=prefix, progress=False) as insp:
        expected = insp.jobs(data).drop(columns="age_s")
    with Inspector(readonly_url(rules), prefix=prefix, progress=False) as insp:
        got = insp.jobs(data).drop(columns="age_s")
        assert insp._ctx.use_script is False
        check_frame("consistency", insp.consistency(data))
    pd.testing.assert_frame_equal(got, expected)
