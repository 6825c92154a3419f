"""Property tests (hypothesis) for option validation, on both flavours.

Valid values are stored as BullMQ stores them; invalid ones raise a subclass of
:class:`sbqueue.SbqueueError` (also ``ValueError`` or ``TypeError``, see ``sbqueue/errors.py``) whose
message names the option, and no key is written.
"""

from __future__ import annotations

import json
import math
import os
import zoneinfo
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import sbqueue
from sbqueue._core.prepare import CAMEL_ALIASES, OPTION_NAMES, PRIORITY_MAX, RESERVED_JOB_IDS
from sbqueue._core.states import STATE_KEYS
from tests.conftest import snapshot
from tests.queue_flavours import QueueFactory, queue_factory_fixture  # noqa: F401  (fixture `queue_factory`)

#: 50 examples per property keeps the file fast; SBQUEUE_HYPOTHESIS_EXAMPLES=1000 for a deep run
PROPERTY = settings(
    max_examples=int(os.environ.get("SBQUEUE_HYPOTHESIS_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)


@pytest.fixture
def q(queue_factory: QueueFactory) -> Any:
    return queue_factory("v")


def rejects(
    r: redis.Redis, prefix: str, call: Callable[[], Any], option: str, kind: type[Exception] = ValueError
) -> sbqueue.SbqueueError:
    """``call`` raises an sbqueue error of ``kind`` naming ``option``, and writes nothing."""
    before = snapshot(r, prefix)
    with pytest.raises(sbqueue.SbqueueError) as info:
        call()
    assert isinstance(info.value, kind), repr(info.value)
    assert option in str(info.value) or repr(option) in str(info.value), (option, str(info.value))
    assert snapshot(r, prefix) == before
    return info.value


# --- strategies -------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)  # fmt: skip
bad_floats = st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not math.isfinite(f) or f < 0)
not_a_number = st.text(max_size=5) | st.booleans() | st.lists(st.integers(), max_size=2) | st.just(object())
safe_id_chars = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC-_.@", min_size=1, max_size=12)


@st.composite
def valid_job_ids(draw: st.DrawFn) -> str:
    parts = (
        draw(st.lists(safe_id_chars, min_size=1, max_size=1))
        if draw(st.booleans())
        else draw(st.lists(safe_id_chars, min_size=3, max_size=3))
    )
    job_id = ":".join(parts)
    assume(job_id not in RESERVED_JOB_IDS and parts[0] not in ("de", "dn", "metrics", "repeat"))
    return job_id


invalid_job_ids = (
    st.integers().map(str)
    | st.just("0")
    | safe_id_chars.map(lambda s: "0:" + s)
    | st.tuples(safe_id_chars, safe_id_chars).map(":".join)
    | st.lists(safe_id_chars, min_size=4, max_size=6).map(":".join)
    | st.sampled_from(sorted(RESERVED_JOB_IDS))
    | st.tuples(st.sampled_from(["de", "dn", "metrics", "repeat"]), safe_id_chars, safe_id_chars).map(":".join)
    | st.just("")
    | st.integers()
)

keep_dicts = st.fixed_dictionaries({}, optional={"age": st.integers(0, 10**6), "count": st.integers(0, 10**6)}).filter(
    bool
)
unknown_backoff_types = st.text(max_size=12).filter(lambda t: t not in ("fixed", "exponential", "custom"))
bad_jitters = bad_floats | st.floats(1.0001, 1e9) | not_a_number

unjsonable = st.sampled_from([
    float("nan"), float("inf"), -float("inf"), {1, 2}, frozenset(), b"bytes", object(), {"k": {1}},
    [1, float("nan")], {(1, 2): "tuple key"}, {"deep": [{"x": complex(1, 2)}]},
])  # fmt: skip


# --- valid values are stored as BullMQ does ---------------------------------------------------------------


@PROPERTY
@given(priority=st.integers(1, PRIORITY_MAX))
def test_valid_priority_is_stored(q: Any, r: redis.Redis, prefix: str, priority: int) -> None:
    job = q.add("p", priority=priority)
    raw = r.hgetall(f"{prefix}:v:{job.id}")
    assert raw["priority"] == str(priority) and json.loads(raw["opts"])["priority"] == priority
    assert r.zscore(f"{prefix}:v:prioritized", job.id) == priority * 2**32 + int(r.get(f"{prefix}:v:pc"))


@PROPERTY
@given(delay=st.integers(1, 10**11) | st.floats(1, 10**9))
def test_valid_delay_is_stored(q: Any, r: redis.Redis, prefix: str, delay: float) -> None:
    job = q.add("d", delay=delay)
    raw = r.hgetall(f"{prefix}:v:{job.id}")
    ms = int(round(delay))
    assert raw["delay"] == str(ms) and json.loads(raw["opts"])["delay"] == ms
    score = int(r.zscore(f"{prefix}:v:delayed", job.id))
    assert score >> 12 == int(raw["timestamp"]) + ms


@PROPERTY
@given(job_id=valid_job_ids(), data=json_values)
def test_valid_custom_id_and_data_are_stored(q: Any, r: redis.Redis, prefix: str, job_id: str, data: Any) -> None:
    r.delete(f"{prefix}:v:{job_id}")
    job = q.add("c", data, job_id=job_id)
    assert job.id == job_id
    raw = r.hgetall(f"{prefix}:v:{job_id}")
    stored = {} if data is None else data
    assert raw["data"] == json.dumps(stored, separators=(",", ":"))
    assert json.loads(raw["opts"])["jobId"] == job_id
    assert q.get_job(job_id).data == stored


@PROPERTY
@given(
    backoff=st.integers(0, 10**9)
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["fixed", "exponential"]), "delay": st.integers(0, 10**9)},
        optional={"jitter": st.floats(0, 1) | st.sampled_from([0, 1])},
    ),
    keep=st.booleans() | st.integers(0, 10**6) | keep_dicts,
    attempts=st.integers(1, 1000),
)  # fmt: skip
def test_valid_retry_options_are_stored(
    q: Any, r: redis.Redis, prefix: str, backoff: Any, keep: Any, attempts: int
) -> None:
    job = q.add("b", backoff=backoff, remove_on_complete=keep, remove_on_fail=keep, attempts=attempts)
    opts = json.loads(r.hget(f"{prefix}:v:{job.id}", "opts"))
    expected_backoff = {"type": "fixed", "delay": backoff} if isinstance(backoff, int) else backoff
    assert opts == {"backoff": expected_backoff, "removeOnComplete": keep, "removeOnFail": keep, "attempts": attempts}


# --- invalid values: an error naming the option, nothing written -------------------------------------------


@PROPERTY
@given(
    priority=st.integers(max_value=-1)
    | st.integers(min_value=PRIORITY_MAX + 1)
    | st.booleans()
    | st.floats()
    | st.text(max_size=3)
)
def test_invalid_priority(q: Any, r: redis.Redis, prefix: str, priority: Any) -> None:
    err = rejects(r, prefix, lambda: q.add("x", priority=priority), "priority")
    assert isinstance(err, sbqueue.InvalidOptionError) and err.option == "priority"
    assert str(PRIORITY_MAX) in str(err)  # names the allowed values


@PROPERTY
@given(delay=bad_floats | st.integers(max_value=-1) | not_a_number | st.integers(min_value=2**53 + 1))
def test_invalid_delay(q: Any, r: redis.Redis, prefix: str, delay: Any) -> None:
    rejects(r, prefix, lambda: q.add("x", delay=delay), "delay")


@PROPERTY
@given(
    backoff=st.fixed_dictionaries({"type": unknown_backoff_types})
    | st.fixed_dictionaries({"type": st.just("fixed"), "delay": st.integers(0, 10), "jitter": bad_jitters})
    | st.fixed_dictionaries({"type": st.just("fixed"), "delay": bad_floats | st.text(max_size=3)})
    | st.fixed_dictionaries({"type": st.just("fixed"), "unknown": st.integers()})
    | bad_floats | st.text(max_size=3)
)  # fmt: skip
def test_invalid_backoff(q: Any, r: redis.Redis, prefix: str, backoff: Any) -> None:
    rejects(r, prefix, lambda: q.add("x", backoff=backoff), "backoff")


@PROPERTY
@given(job_id=invalid_job_ids)
def test_invalid_job_id(q: Any, r: redis.Redis, prefix: str, job_id: Any) -> None:
    err = rejects(r, prefix, lambda: q.add("x", job_id=job_id), "job_id")
    assert isinstance(err, sbqueue.InvalidJobIdError)


@PROPERTY
@given(data=unjsonable)
def test_non_json_data(q: Any, r: redis.Redis, prefix: str, data: Any) -> None:
    err = rejects(r, prefix, lambda: q.add("x", data), "data", TypeError)
    assert isinstance(err, sbqueue.DataError)
    job = q.add("ok")  # nothing half-written: the next add is a normal one
    rejects(r, prefix, lambda: job.update_data(data), "data", TypeError)


def test_data_size_limit(queue_factory: QueueFactory, r: redis.Redis, prefix: str) -> None:
    q = queue_factory("small", max_job_bytes=100)
    err = rejects(r, prefix, lambda: q.add("x", {"blob": "x" * 200}), "data", TypeError)
    assert "100" in str(err)


@PROPERTY
@given(pattern=st.sampled_from([
    "", "   ", "* * * *", "60 * * * *", "* 24 * * *", "* * 32 * *", "* * * 13 *", "not a cron", "* * * * * * *",
    "61 * * * * *", "*/0 * * * *",
]) | st.integers(60, 10**6).map(lambda n: f"{n} * * * *") | st.integers())  # fmt: skip
def test_invalid_cron_pattern(q: Any, r: redis.Redis, prefix: str, pattern: Any) -> None:
    rejects(r, prefix, lambda: q.upsert_job_scheduler("s", pattern=pattern), "pattern")
    rejects(r, prefix, lambda: q.add("x", repeat={"pattern": pattern}), "pattern")


@PROPERTY
@given(tz=st.text(max_size=20).filter(lambda t: t not in zoneinfo.available_timezones()) | st.integers())
def test_invalid_timezone(q: Any, r: redis.Redis, prefix: str, tz: Any) -> None:
    try:  # a name zoneinfo resolves although it is not in available_timezones() is a valid zone
        zoneinfo.ZoneInfo(tz)
        assume(False)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        pass
    rejects(r, prefix, lambda: q.upsert_job_scheduler("s", pattern="0 * * * *", tz=tz), "tz")
    rejects(r, prefix, lambda: q.upsert_job_scheduler("s", every=1000, tz=tz), "tz")


@PROPERTY
@given(
    every=bad_floats | st.just(0) | st.integers(max_value=-1) | not_a_number,
    scheduler_id=st.sampled_from(["", "a:b", "x:y:z"]) | st.integers(),
)
def test_invalid_scheduler_options(q: Any, r: redis.Redis, prefix: str, every: Any, scheduler_id: Any) -> None:
    rejects(r, prefix, lambda: q.upsert_job_scheduler("s", every=every), "every")
    rejects(r, prefix, lambda: q.upsert_job_scheduler(scheduler_id, every=1000), "scheduler_id")
    rejects(r, prefix, lambda: q.upsert_job_scheduler("s"), "every")
    rejects(r, prefix, lambda: q.upsert_job_scheduler("s", every=1000, pattern="* * * * *"), "every")
    rejects(r, prefix, lambda: q.upsert_job_scheduler("s", every=1000, opts={"delay": 5}), "delay")
    rejects(r, prefix, lambda: q.add("x", repeat={"every": 1000, "bogus": 1}), "repeat")


@PROPERTY
@given(name=st.text(max_size=10).map(lambda s: s + ":") | st.just("") | st.integers())
def test_invalid_queue_name(queue_factory: QueueFactory, r: redis.Redis, prefix: str, name: Any) -> None:
    err = rejects(r, prefix, lambda: queue_factory(name), "name")
    assert isinstance(err, sbqueue.InvalidQueueNameError)


@PROPERTY
@given(
    key=st.text(min_size=1, max_size=15).filter(
        lambda key: key not in OPTION_NAMES and key not in CAMEL_ALIASES
    ),
    bad_position=st.integers(0, 3),
)
def test_add_bulk_validates_everything_first(q: Any, r: redis.Redis, prefix: str, key: str, bad_position: int) -> None:
    entries: list[Any] = [{"name": f"ok{i}", "data": {"i": i}} for i in range(4)]
    entries[bad_position] = {"name": "bad", "opts": {key: 1}}
    rejects(r, prefix, lambda: q.add_bulk(entries), key)
    entries[bad_position] = {"name": "bad", "data": {float("nan")}}
    rejects(r, prefix, lambda: q.add_bulk(entries), "data", TypeError)
    entries[bad_position] = {"name": "bad", "opts": {"priority": -1}}
    rejects(r, prefix, lambda: q.add_bulk(entries), "priority")
    entries[bad_position] = {"name": "bad", "extra": 1}
    rejects(r, prefix, lambda: q.add_bulk(entries), "extra")
    entries[bad_position] = {"data": 1}
    rejects(r, prefix, lambda: q.add_bulk(entries), "name")


@PROPERTY
@given(state=st.text(max_size=15).filter(lambda s: s not in STATE_KEYS))
def test_unknown_state_names(q: Any, r: redis.Redis, prefix: str, state: str) -> None:
    for call in (
        lambda: q.get_job_counts(state),
        lambda: q.get_job_counts("waiting", state),
        lambda: q.get_jobs([state]),
        lambda: q.get_jobs(state),
        lambda: q.clean(0, 10, state),
        lambda: q.retry_jobs(state),
    ):
        err = rejects(r, prefix, call, "state")
        assert isinstance(err, sbqueue.InvalidStateError)


@PROPERTY
@given(
    grace=bad_floats | st.integers(max_value=-1) | not_a_number,
    limit=st.integers(max_value=-1) | st.floats() | st.booleans(),
)
def test_invalid_clean_and_batch_arguments(q: Any, r: redis.Redis, prefix: str, grace: Any, limit: Any) -> None:
    rejects(r, prefix, lambda: q.clean(grace, 10, "completed"), "grace_ms")
    rejects(r, prefix, lambda: q.clean(0, limit, "completed"), "limit")
    rejects(r, prefix, lambda: q.retry_jobs(count=limit if limit != 1 else 0), "count")
    rejects(r, prefix, lambda: q.promote_jobs(count=limit if limit != 1 else 0), "count")


@PROPERTY
@given(
    dedup=st.just({}) | st.just({"id": ""}) | st.fixed_dictionaries({"id": st.integers()})
    | st.fixed_dictionaries({"id": st.just("d"), "ttl": bad_floats | st.just(0) | not_a_number})
    | st.fixed_dictionaries({"id": st.just("d"), "extend": st.just(True)})  # extend needs a ttl
    | st.fixed_dictionaries({"id": st.just("d"), "replace": st.integers() | st.text(max_size=2)})
    | st.fixed_dictionaries({"id": st.just("d"), "bogus": st.booleans()}) | st.text(max_size=3),
    keep=st.integers(max_value=-1) | st.floats() | st.text(max_size=3)
    | st.fixed_dictionaries({"age": st.integers(max_value=-1)}) | st.just({"bogus": 1}) | st.just({}),
)  # fmt: skip
def test_invalid_dedup_and_keep_options(q: Any, r: redis.Redis, prefix: str, dedup: Any, keep: Any) -> None:
    rejects(r, prefix, lambda: q.add("x", deduplication=dedup), "deduplication")
    rejects(r, prefix, lambda: q.add("x", remove_on_complete=keep), "remove_on_complete")
    rejects(r, prefix, lambda: q.add("x", remove_on_fail=keep), "remove_on_fail")


@PROPERTY
@given(
    value=st.integers(max_value=0)
    | st.floats()
    | st.booleans()
    | st.text(max_size=3)
    | st.integers(min_value=10**6 + 1),
)
def test_invalid_counts(q: Any, r: redis.Redis, prefix: str, value: Any) -> None:
    rejects(r, prefix, lambda: q.add("x", attempts=value), "attempts")
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        rejects(r, prefix, lambda: q.add("x", keep_logs=value), "keep_logs")
        rejects(r, prefix, lambda: q.add("x", stack_trace_limit=value), "stack_trace_limit")
    if not isinstance(value, bool):
        rejects(r, prefix, lambda: q.add("x", lifo=value), "lifo")
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 2**53):
        rejects(r, prefix, lambda: q.add("x", timeout=value), "timeout")


def test_unknown_keyword_arguments_are_a_type_error_naming_them(q: Any, r: redis.Redis, prefix: str) -> None:
    before = snapshot(r, prefix)
    with pytest.raises(TypeError, match="bogus"):
        q.add("x", bogus=1)
    with pytest.raises(sbqueue.InvalidOptionError, match="bogus"):
        q.add_bulk([{"name": "x", "opts": {"bogus": 1}}])
    with pytest.raises(sbqueue.InvalidOptionError, match="bogus"):
        sbqueue.Queue("x", connection=r, prefix=prefix, default_job_options={"bogus": 1})
    assert snapshot(r, prefix) == before


def test_error_tree() -> None:
    assert issubclass(sbqueue.InvalidJobIdError, sbqueue.InvalidOptionError)
    assert issubclass(sbqueue.InvalidStateError, ValueError) and issubclass(sbqueue.DataError, TypeError)
    for cls in (sbqueue.InvalidOptionError, sbqueue.DataError, sbqueue.JobNotFoundError, sbqueue.JobStateError):
        assert issubclass(cls, sbqueue.SbqueueError)
    assert not issubclass(sbqueue.UnrecoverableError, sbqueue.SbqueueError)


def test_unknown_keyword_is_an_sbqueue_error(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("unknown-kw", r, prefix=prefix)
    before = snapshot(r, prefix)
    with pytest.raises(sbqueue.UnknownOptionError, match="attemps") as info:
        q.add("a", {}, attemps=3)  # type: ignore[call-arg]
    assert isinstance(info.value, TypeError) and isinstance(info.value, sbqueue.SbqueueError)
    with pytest.raises(sbqueue.UnknownOptionError, match="removeOnCompleted"):
        q.add_bulk([{"name": "a", "opts": {"removeOnCompleted": True}}])
    assert snapshot(r, prefix) == before
