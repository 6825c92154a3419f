"""Inspection SDK, queue side: typed frames over queues written by sbqueue (and hand-written bad data)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
import redis

import sbqueue
from sbqueue.engine.worker import Worker
from sbqueue.inspection import SCHEMAS, VERDICTS, Inspector, QueueInspector, bind, empty_frame, export
from sbqueue.inspection.failures import normalise_reason, top_frame
from sbqueue.inspection.queues import parse_client_name
from sbqueue.inspection.schemas import check_frame

QUEUE_METHODS = ("jobs", "failures", "stalled", "events", "metrics", "workers", "schedulers", "consistency")


@pytest.fixture
def insp(r: redis.Redis, prefix: str) -> Iterator[Inspector]:
    inspector = Inspector(r, prefix=prefix, progress=False)
    yield inspector
    inspector.close()


def process(r: redis.Redis, prefix: str, queue: str, fn: Callable[[Any], Any], expect: int, **kw: Any) -> None:
    """Run a named worker until ``expect`` jobs of ``queue`` have finished (completed + failed)."""
    q = sbqueue.Queue(queue, r, prefix=prefix)
    w = Worker(queue, fn, r, prefix, concurrency=kw.pop("concurrency", 8), name=kw.pop("name", "w1"),
               drain_delay=0.2, **kw)  # fmt: skip
    w.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            counts = q.get_job_counts("completed", "failed")
            if counts["completed"] + counts["failed"] >= expect:
                return
            time.sleep(0.02)
        raise AssertionError(f"worker did not finish {expect} jobs: {counts}")
    finally:
        w.close()


def _flaky(job: Any) -> Any:
    i = job.data["i"]
    if i % 4 == 0:
        raise TimeoutError(f"upstream timeout after {1000 + i} ms for customer {i}")
    if i % 4 == 1 and i > 10:
        raise KeyError("customer")
    return {"double": i * 2}


@pytest.fixture
def worked(r: redis.Redis, prefix: str) -> str:
    """Queue ``work``: 20 jobs processed by worker 'w1' (13 completed, 7 failed), plus waiting/delayed ones."""
    q = sbqueue.Queue("work", r, prefix=prefix)
    q.add_bulk([{"name": "even" if i % 2 == 0 else "odd", "data": {"i": i, "customer": {"id": i % 3}}}
                for i in range(20)])  # fmt: skip
    process(r, prefix, "work", _flaky, 20)
    q.add("later", {"i": 100}, delay=3_600_000)
    q.add("urgent", {"i": 101}, priority=2)
    q.add("plain", {"i": 102})
    return "work"


# --- schemas -------------------------------------------------------------------------------------------
def test_schemas_hold_for_empty_results(insp: Inspector) -> None:
    for name in SCHEMAS:
        check_frame(name, empty_frame(name))
    check_frame("queues", insp.queues())
    for method in QUEUE_METHODS:
        df = getattr(insp, method)("nothing-here")
        assert df.empty, method
        check_frame(method, df)
    check_frame("timeline", insp.timeline("nothing-here", "1"))
    for col, dtype in SCHEMAS["jobs"].items():  # the declared conventions
        if col in ("timestamp", "processed_on", "finished_on"):
            assert dtype == "datetime64[ns, UTC]"
        if col.endswith("_s"):
            assert dtype == "float64"


def test_progress_bars_and_url_connections(r: redis.Redis, prefix: str, redis_url: str) -> None:
    sbqueue.Queue("pb", r, prefix=prefix).add_bulk([{"name": "x", "data": {}} for _ in range(3)])
    with Inspector(redis_url, prefix=prefix, progress=True) as insp:  # tqdm on stderr outside notebooks
        assert len(insp.jobs("pb")) == 3 and len(insp.queues()) == 1
        assert insp.memory_by_queue()["keys"].sum() >= 4 and repr(insp).startswith("<Inspector")
    assert Inspector(r, prefix=prefix)._ctx.progress is False  # not in a notebook


def test_queues_counts_flags_and_oldest(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    q = sbqueue.Queue("emails", r, prefix=prefix)
    q.add_bulk([{"name": "send", "data": {"n": i}} for i in range(3)])
    q.add("later", None, delay=60_000)
    q.add("vip", None, priority=1)
    q.pause()
    q.set_global_concurrency(4)
    q.set_global_rate_limit(10, 2000)
    other = sbqueue.Queue("other", r, prefix=prefix)
    other.add("x", {})
    time.sleep(0.05)
    df = insp.queues()
    check_frame("queues", df)
    assert df.queue.tolist() == ["emails", "other"]
    row = df.set_index("queue").loc["emails"]
    assert (row.waiting, row.delayed, row.prioritized, row.active, row.completed) == (3, 1, 1, 0, 0)
    assert bool(row.paused) and row.global_concurrency == 4 and row.rate_limit_max == 10
    assert row.rate_limit_duration_s == 2.0 and row.workers == 0
    assert row.oldest_waiting_age_s >= 0.05 and row.oldest_waiting.tzinfo is not None
    assert row.version.startswith("sbqueue:") and pd.isna(row.parse_error)
    assert pd.isna(row.failure_rate)  # no jobs finished yet


def test_jobs_rows_are_typed(r: redis.Redis, prefix: str, insp: Inspector, worked: str) -> None:
    df = insp.jobs(worked)
    check_frame("jobs", df)
    assert len(df) == 23
    assert df.state.value_counts().to_dict() == {"completed": 13, "failed": 7, "waiting": 1, "prioritized": 1,
                                                 "delayed": 1}  # fmt: skip
    # live states first, finished last
    assert df.state.tolist()[:3] == ["waiting", "prioritized", "delayed"]
    done = df[df.state == "completed"]
    assert (done.run_s >= 0).all() and (done.wait_s >= 0).all() and (done.processed_by == "w1").all()
    assert done.returnvalue.map(lambda v: v["double"]).tolist() == [2 * d["i"] for d in done.data]
    assert (done.data_bytes > 10).all() and done.parse_error.isna().all()
    failed = df[df.state == "failed"]
    assert failed.failed_reason.str.contains("timeout|customer").all() and failed.finished_on.notna().all()
    assert (failed.attempts_made == 1).all() and (failed.max_attempts == 1).all()
    delayed = df[df.state == "delayed"].iloc[0]
    assert delayed.delay_ms == 3_600_000 and pd.isna(delayed.processed_on) and pd.isna(delayed.run_s)
    assert df[df.state == "prioritized"].iloc[0].priority == 2


def test_jobs_filters(r: redis.Redis, prefix: str, insp: Inspector, worked: str) -> None:
    assert set(insp.jobs(worked, "failed", name="even").name) == {"even"}
    timeouts = insp.jobs(worked, "failed", query={"failed_reason": r"timeout after \d+ ms"})
    assert len(timeouts) == 5 and timeouts.failed_reason.str.startswith("upstream timeout").all()
    literal = insp.jobs(worked, "failed", query={"failed_reason": "timeout after (1"})  # invalid regex -> literal
    assert literal.empty
    by_path = insp.jobs(worked, ["completed", "failed"], query={"data.customer.id": 2})
    assert len(by_path) == 6 and all(d["customer"]["id"] == 2 for d in by_path.data)
    members = insp.jobs(worked, query={"name": ["later", "urgent"]})
    assert sorted(members.name) == ["later", "urgent"]
    pred = insp.jobs(worked, "completed", query={"data.i": lambda i: i >= 15})
    assert sorted(d["i"] for d in pred.data) == [15, 18, 19]
    assert set(insp.jobs(worked, query={"processed_by": None}).state) == {"waiting", "delayed", "prioritized"}
    assert len(insp.jobs(worked, "completed", query={"returnvalue": '"double":2[0-9]'})) == 3  # stored JSON text
    assert len(insp.jobs(worked, limit=4)) == 4
    assert len(insp.jobs(worked, "completed", limit=2, query={"data.customer.id": 0})) == 2
    # time windows: finished sets by score, others by creation time
    assert len(insp.jobs(worked, ["completed", "failed"], since=dt.timedelta(minutes=5))) == 20
    assert insp.jobs(worked, "completed", until=dt.datetime(2000, 1, 1)).empty
    future = pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=1)
    assert insp.jobs(worked, "waiting", since=future.isoformat()).empty
    assert len(insp.jobs(worked, "waiting", since=time.time() * 1000 - 60_000)) == 1
    fields = insp.jobs(worked, "completed", data_fields=["i", "customer.id", "missing"])
    assert fields.columns[-3:].tolist() == ["data.i", "data.customer.id", "data.missing"]
    assert fields["data.i"].tolist() == [d["i"] for d in fields.data] and fields["data.missing"].isna().all()
    assert insp.jobs(worked, "waiting", query={"name": "nope"}, data_fields=["i"]).columns[-1] == "data.i"
    with pytest.raises(sbqueue.InvalidOptionError):
        insp.jobs(worked, query={"no_such_column": 1})
    with pytest.raises(sbqueue.InvalidStateError):
        insp.jobs(worked, "bogus")


@pytest.mark.parametrize("scripts", [True, False], ids=["lua", "pipeline"])
def test_malformed_data_becomes_parse_error_rows(r: redis.Redis, prefix: str, insp: Inspector, scripts: bool) -> None:
    if not scripts:
        insp._ctx.use_script = False
    base = f"{prefix}:bad:"
    r.hset(base + "1", mapping={"name": "j", "data": "{not json", "opts": "[1,2]", "timestamp": "yesterday",
                                "atm": "x", "progress": "{", "returnvalue": "nope"})  # fmt: skip
    r.hset(base + "2", mapping={"name": "ok", "data": '{"a":1}', "timestamp": "99999999999999999"})
    r.set(base + "3", "a string where a hash should be")
    r.hset(base + "4", mapping={"data": b"\xff\xfe not utf-8"})
    r.rpush(base + "wait", "1", "2", "3", "4", "5")  # 5 has no hash at all
    df = insp.jobs("bad")
    check_frame("jobs", df)
    rows = df.set_index("id")
    assert rows.loc["1"].data == "{not json" and "data: invalid JSON" in rows.loc["1"].parse_error
    for part in ("opts: not a JSON object", "timestamp: not a number", "atm: not a number", "returnvalue"):
        assert part in rows.loc["1"].parse_error
    assert pd.isna(rows.loc["1"].timestamp) and rows.loc["1"].max_attempts == 1
    assert "timestamp: out of range" in rows.loc["2"].parse_error and rows.loc["2"].data == {"a": 1}
    assert "unreadable" in rows.loc["3"].parse_error and "WRONGTYPE" in rows.loc["3"].parse_error
    assert "\ufffd" in rows.loc["4"].data
    assert "hash missing" in rows.loc["5"].parse_error
    check_frame("failures", insp.failures("bad"))
    check_frame("consistency", insp.consistency("bad"))
    check_frame("timeline", insp.timeline("bad", "1"))


def test_state_keys_of_the_wrong_type_become_rows(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    for suffix in ("wait", "failed", "active", "repeat", "events", "meta", "marker"):
        r.set(f"{prefix}:wt:{suffix}", "not the right type")
    jobs = insp.jobs("wt")
    check_frame("jobs", jobs)
    assert jobs.state.tolist() == ["active", "waiting", "failed"] and jobs.id.isna().all()
    assert jobs.parse_error.str.contains("WRONGTYPE").all()
    failures = insp.failures("wt")
    assert failures.signature.tolist() == ["(failed set unreadable)"] and failures["count"].tolist() == [0]
    assert insp.stalled("wt").verdict.tolist() == ["unreadable"]
    assert "WRONGTYPE" in insp.schedulers("wt").parse_error[0] and "WRONGTYPE" in insp.events("wt").parse_error[0]
    checks = insp.consistency("wt")
    assert (checks.check == "wrong_type_state_key").sum() == 4
    row = insp.queues().set_index("queue").loc["wt"]
    assert "wait" in row.parse_error and row.waiting == 0
    for method in ("metrics", "workers", "timeline"):
        getattr(insp, method)(*(("wt", "1") if method == "timeline" else ("wt",) if method != "workers" else ()))


def test_failures_group_by_signature(r: redis.Redis, prefix: str, insp: Inspector, worked: str) -> None:
    df = insp.failures(worked)
    check_frame("failures", df)
    assert df["count"].tolist() == [5, 2] and df["count"].sum() == 7
    top = df.iloc[0]
    assert top.error == "upstream timeout after <n> ms for customer <n>"
    assert re.match(r"test_inspection_queues\.py:\d+ in _flaky", top.top_frame)
    assert top.signature == f"{top.error} @ {top.top_frame}"
    assert sorted(top.names) == ["even"] and len(top.example_ids) == 5 and len(top.ids) == 5
    assert top.first_seen <= top.last_seen and top.example_reason.startswith("upstream timeout after")
    assert df.iloc[1].error == "'customer'" and sorted(df.iloc[1].names) == ["odd"]
    assert insp.failures(worked, name="odd")["count"].tolist() == [2]
    assert insp.failures(worked, limit=2)["count"].sum() == 2
    assert insp.failures(worked, since=dt.timedelta(seconds=-60)).empty
    with pytest.raises(sbqueue.InvalidOptionError):
        insp.failures(worked, query={"data.customer": 1})


def test_signature_helpers() -> None:
    assert normalise_reason("job 42 failed at 2026-01-02T03:04:05Z for a@b.io id=0x1f uuid "
                            "123e4567-e89b-12d3-a456-426614174000 hash deadbeef42") == \
        "job <n> failed at <time> for <email> id=<hex> uuid <uuid> hash <hex>"  # fmt: skip
    assert normalise_reason(None) == "(no failedReason)"
    node = ["Error: boom\n    at Worker.process (/app/src/worker.js:42:13)\n    at run (/app/node_modules/x.js:1:1)"]
    assert top_frame(node) == "worker.js:42 in Worker.process"
    assert top_frame("not a list") == "" and top_frame([]) == ""


def test_stalled_verdicts(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    base = f"{prefix}:st:"
    for job_id in ("held", "lost", "flagged"):
        r.hset(base + job_id, mapping={"name": job_id, "data": "{}", "timestamp": "1", "processedOn": "2",
                                       "ats": "1", "stc": "1" if job_id == "flagged" else "0", "pb": "w9"})  # fmt: skip
    r.set(base + "held:lock", "tok:1", px=30_000)
    r.sadd(base + "stalled", "flagged")
    r.rpush(base + "active", "held", "lost", "flagged", "gone")
    df = insp.stalled("st").set_index("id")
    check_frame("stalled", df.reset_index())
    assert set(df.verdict) <= set(VERDICTS)
    assert df.loc["held"].verdict == "processing" and 0 < df.loc["held"].lock_ttl_s <= 30
    assert df.loc["held"].lock_token == "tok:1" and not df.loc["held"].worker_connected
    assert df.loc["lost"].verdict == "orphaned" and pd.isna(df.loc["lost"].lock_ttl_s)
    assert df.loc["gone"].verdict == "hash missing" and pd.isna(df.loc["gone"].stalled_count)
    # a named worker of this queue connects: the lockless jobs will be requeued by its stalled check
    conn = redis.Redis.from_url(insp.client.sbqueue_url)
    conn.client_setname(f"{prefix}:{base64.b64encode(b'st').decode()}:w:w9")
    try:
        df = insp.stalled("st").set_index("id")
    finally:
        conn.close()
    assert df.loc["lost"].verdict == VERDICTS[1] and df.loc["lost"].worker_connected
    assert df.loc["flagged"].in_stalled_set and "failed (stalled too often)" in df.loc["flagged"].detail
    assert df.loc["held"].workers_on_queue == 1 and df.loc["held"].worker_connected


def test_events_and_timeline(r: redis.Redis, prefix: str, insp: Inspector, worked: str) -> None:
    ev = insp.events(worked)
    check_frame("events", ev)
    assert {"added", "waiting", "active", "completed", "failed", "delayed"} <= set(ev.event)
    assert ev.ts.is_monotonic_increasing and ev.parse_error.isna().all()
    done = ev[ev.event == "completed"].iloc[0]
    assert isinstance(done.fields["returnvalue"], dict) and done.prev == "active"
    last = insp.events(worked, count=5)
    assert last.event_id.tolist() == ev.event_id.tolist()[-5:]
    assert insp.events(worked, since=ev.event_id.iloc[-3]).event_id.tolist() == ev.event_id.tolist()[-3:]
    assert len(insp.events(worked, since=dt.timedelta(minutes=5), count=7)) == 7
    assert insp.events(worked, since=pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=1)).empty
    tl = insp.timeline(worked, "2")
    check_frame("timeline", tl)
    assert tl.event.tolist()[0] == "created" and tl.event.tolist()[-1] == "completed"
    assert tl.source.tolist()[-1] == "state"
    assert {"added", "active", "completed", "processed", "finished"} <= set(tl.event)
    # The producer's clock (timestamp) and Redis's (stream ids) may differ by a ms or so on one host.
    assert tl.ts.iloc[1:-1].is_monotonic_increasing and (tl.since_created_s.dropna() >= -0.05).all()
    failed = insp.timeline(worked, "1")  # job 1 has i=0: a timeout
    assert "failed" in set(failed[failed.source == "hash"].event)
    assert "timeout" in failed[failed.event == "failed"].detail.iloc[0]
    assert insp.timeline(worked, "nope").event.tolist() == ["hash missing", "unknown"]


def test_timeline_keeps_creation_first_when_the_producer_clock_is_ahead(
    r: redis.Redis, prefix: str, insp: Inspector
) -> None:
    q = sbqueue.Queue("skew", r, prefix=prefix)
    job = q.add("x", {})
    r.hset(f"{prefix}:skew:{job.id}", "timestamp", str(job.timestamp + 2_000))  # a producer 2 s ahead of Redis
    tl = insp.timeline("skew", job.id)
    assert tl.event.tolist()[0] == "created" and tl.source.tolist()[-1] == "state"
    assert "producer clock ~" in tl.detail.iloc[0] and "ms ahead" in tl.detail.iloc[0]
    assert (tl[tl.event == "added"].since_created_s < -1.5).all()
    plain = insp.timeline("skew", q.add("y", {}).id)
    assert "ahead" not in plain.detail.iloc[0]


def test_metrics(r: redis.Redis, prefix: str, insp: Inspector, worked: str) -> None:
    df = insp.metrics(worked)
    check_frame("metrics", df)
    assert df.completed.sum() == 13 and df.failed.sum() == 7 and df.partial.iloc[-1]
    # a hand-written history: minutes are continuous, newest data point is the minute before prevTS
    now_min = int(time.time() // 60)
    r.hset(f"{prefix}:m:metrics:completed", mapping={"count": 10, "prevTS": now_min * 60000 + 5, "prevCount": 7})
    r.rpush(f"{prefix}:m:metrics:completed:data", 4, 0, 3)
    r.hset(f"{prefix}:m:metrics:failed", mapping={"count": 1, "prevTS": (now_min - 2) * 60000, "prevCount": 0})
    m = insp.metrics("m")
    assert m.minute.tolist() == [pd.Timestamp((now_min - k) * 60, unit="s", tz="UTC") for k in (3, 2, 1, 0)]
    assert m.completed.tolist() == [3, 0, 4, 3] and m.failed.tolist() == [0, 1, 0, 0]
    assert m.failure_rate.tolist()[1] == 1.0
    row = insp.queues().set_index("queue").loc["m"]
    assert (row.completed_window, row.failed_window) == (10, 1)


def test_workers_recognise_node_and_plain_names(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    conns = []
    names = [f"{prefix}:{base64.b64encode(b'q1').decode()}:w:alpha", f"{prefix}:{base64.b64encode(b'q1').decode()}",
             f"{prefix}:{base64.b64encode(b'q1').decode()}:qe", f"{prefix}:plain-q:w:beta", "unrelated"]  # fmt: skip
    try:
        for name in names:
            c = redis.Redis.from_url(insp.client.sbqueue_url)
            c.client_setname(name)
            conns.append(c)
        df = insp.workers()
        check_frame("workers", df)
        assert df[["queue", "role", "worker_name", "naming"]].astype(object).where(df.notna(), None).values.tolist() \
            == [["plain-q", "worker", "beta", "plain"], ["q1", "events", None, "base64"],
                ["q1", "worker", None, "base64"], ["q1", "worker", "alpha", "base64"]]  # fmt: skip
        assert len(insp.workers("q1")) == 3
        assert insp.queues().empty  # connections alone do not make a queue
    finally:
        for c in conns:
            c.close()
    assert parse_client_name("bull:d29yaw==:w:w-alpha", "bull") == \
        {"queue": "work", "role": "worker", "worker_name": "w-alpha", "naming": "base64"}  # fmt: skip
    assert parse_client_name("bull:a:b:c", "bull") is None


def test_schedulers(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    q = sbqueue.Queue("sched", r, prefix=prefix)
    q.upsert_job_scheduler("tick", every=2000, name="tick", data={"t": 1})
    q.upsert_job_scheduler("nightly", pattern="0 30 2 * * *", tz="UTC", name="report", opts={"attempts": 2})
    r.zadd(f"{prefix}:sched:repeat", {"legacy": 1})
    r.hset(f"{prefix}:sched:repeat:legacy", mapping={"name": "old", "every": "abc", "data": "{"})
    df = insp.schedulers("sched").set_index("scheduler_id")
    check_frame("schedulers", df.reset_index())
    tick, nightly, legacy = df.loc["tick"], df.loc["nightly"], df.loc["legacy"]
    assert tick.every_s == 2.0 and tick.iteration_count == 1 and tick.pending_job_exists and not tick.legacy
    assert tick.data == {"t": 1} and tick.next_in_s <= 2
    assert nightly.pattern == "0 30 2 * * *" and nightly.tz == "UTC" and pd.isna(nightly.every_s)
    assert nightly.next_run.hour == 2 and nightly.next_run.minute == 30 and nightly.opts == {"attempts": 2}
    assert nightly.pending_job_id.startswith("repeat:nightly:")
    assert legacy.legacy and "every: not a number" in legacy.parse_error and "data: invalid JSON" in legacy.parse_error
    checks = insp.consistency("sched")
    assert "legacy_scheduler" in set(checks.check)


def test_consistency_findings(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    q = sbqueue.Queue("fsck", r, prefix=prefix)
    jobs = q.add_bulk([{"name": "a", "data": {}} for _ in range(4)])
    assert insp.consistency("fsck").empty
    k = f"{prefix}:fsck:"
    r.delete(k + jobs[0].id)  # id in wait, hash gone
    r.lrem(k + "wait", 0, jobs[1].id)  # hash, no state
    r.zadd(k + "delayed", {jobs[2].id: 1})  # in two states
    r.delete(k + "marker")  # ready jobs, no marker
    r.rpush(k + "paused", "legacy-1")  # v5 leftover
    r.hset(k + "legacy-1", mapping={"name": "old", "timestamp": "1"})
    r.zadd(k + "repeat", {"ghost": 1})  # scheduler without its hash
    r.set(k + "de:d1", "nope")  # dedup key to a missing job
    r.set(k + "77:lock", "t", px=60_000)  # lock of a non-active job
    r.zadd(k + "completed", {jobs[3].id: 5})
    df = insp.consistency("fsck")
    check_frame("consistency", df)
    found = {(row.check, row.job_id if not pd.isna(row.job_id) else None) for row in df.itertuples()}
    for expected in [("missing_hash", jobs[0].id), ("orphan_hash", jobs[1].id), ("duplicate_state", jobs[2].id),
                     ("duplicate_state", jobs[3].id), ("state_contradiction", jobs[3].id), ("missing_marker", None),
                     ("legacy_paused_list", None), ("scheduler_missing_hash", None), ("stale_dedup_key", "nope"),
                     ("stray_lock", "77")]:  # fmt: skip
        assert expected in found, expected
    assert df.suggested_fix.notna().all() and set(df.severity) <= {"error", "warning", "info"}


def test_bind_and_export(r: redis.Redis, prefix: str, insp: Inspector, worked: str, tmp_path: Any) -> None:
    qi = bind(insp, worked)
    assert isinstance(qi, QueueInspector) and insp.queue(worked).name == worked
    pd.testing.assert_frame_equal(
        qi.jobs("completed").drop(columns="age_s"), insp.jobs(worked, "completed").drop(columns="age_s")
    )
    pd.testing.assert_frame_equal(qi.failures(), insp.failures(worked))
    for method in ("stalled", "metrics", "workers", "schedulers", "consistency"):
        check_frame(method, getattr(qi, method)())
    check_frame("events", qi.events(count=3))
    check_frame("timeline", qi.timeline("1"))
    assert qi.summary().queue.tolist() == [worked]
    df = insp.jobs(worked, "failed")
    for suffix in ("csv", "parquet", "json", "jsonl"):
        path = export(df, tmp_path / f"f.{suffix}")
        assert path.stat().st_size > 0
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert json.loads(back.data.iloc[0]) == df.data.iloc[0] and str(back.timestamp.dtype).endswith("UTC]")
    assert Inspector.export(df, tmp_path / "g.csv").exists()
    with pytest.raises(sbqueue.InvalidOptionError):
        export(df, tmp_path / "f.xlsx")


def test_queue_inspector_is_bound_to_the_queue(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("bound", r, prefix=prefix)
    other = sbqueue.Queue("other", r, prefix=prefix)
    ids = [q.add("a", {"i": i}).id for i in range(3)]
    other.add("b", {})
    assert sorted(q.inspector.jobs()["id"]) == sorted(ids)
    assert q.inspector is q.inspector  # created once
    aq = sbqueue.AsyncQueue("bound", r, prefix=prefix)
    assert sorted(aq.inspector.jobs("waiting")["id"]) == sorted(ids)


# --- the read-ahead thread of jobs() -------------------------------------------------------------------------------
def _reader_threads() -> list[Any]:
    import threading

    return [t for t in threading.enumerate() if t.name == "sbqueue-inspect-read" and t.is_alive()]


def test_jobs_reads_ahead_in_order_and_leaves_no_thread(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    """Many pages (data parsed while the next page is read): every row, in order, data and errors intact."""
    q = sbqueue.Queue("ahead", r, prefix=prefix)
    q.add_bulk([{"name": "n", "data": {"i": i}} for i in range(2500)])
    r.hset(q.keys.key("7"), "data", "{not json")  # one bad row in the middle of a page
    df = insp.jobs("ahead", "waiting")
    assert len(df) == 2500 and list(df["id"]) == [str(i) for i in range(2500, 0, -1)]  # newest first
    expected = [i for i in range(2499, -1, -1) if i != 6]  # job 7 holds data {"i": 6}: now garbage
    assert [d["i"] for d in df["data"] if isinstance(d, dict)] == expected
    bad = df[df["id"] == "7"].iloc[0]
    assert bad["data"] == "{not json" and bad["parse_error"].startswith("data: invalid JSON")
    assert df["parse_error"].notna().sum() == 1
    limited = insp.jobs("ahead", "waiting", limit=3)  # stops after the first page: the reader is stopped
    assert list(limited["id"]) == ["2500", "2499", "2498"]
    assert _reader_threads() == []
    assert r.ping()  # the client is free again


def test_read_ahead_raises_the_readers_error_and_stops_when_closed() -> None:
    from sbqueue.inspection.read_ahead import read_ahead

    def failing() -> Iterator[int]:
        yield 1
        raise redis.ConnectionError("Redis went away mid-scan")

    got: list[int] = []
    with pytest.raises(redis.ConnectionError, match="mid-scan"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1] and _reader_threads() == []

    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    reader = read_ahead(endless(), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert _reader_threads() == []
    assert len(produced) <= 3 + 2 + 1  # at most `depth` (+ the one in hand) read ahead, then it stopped


def test_jobs_pauses_the_garbage_collector_only_while_it_runs(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    import gc

    from sbqueue.inspection import jobs as jobs_module

    q = sbqueue.Queue("gcq", r, prefix=prefix)
    q.add_bulk([{"name": "n", "data": {"i": i}} for i in range(10)])
    seen: list[bool] = []
    original = jobs_module.decode_jobs

    def spy(*args: Any, **kwargs: Any) -> Any:  # the real decoder, noting the collector's state meanwhile
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    jobs_module.decode_jobs = spy  # type: ignore[assignment]
    try:
        assert gc.isenabled()
        assert len(insp.jobs("gcq")) == 10
        assert seen == [False] and gc.isenabled()  # paused inside, back on after
        gc.disable()
        try:
            assert len(insp.jobs("gcq")) == 10
            assert not gc.isenabled()  # a caller who had it off keeps it off
        finally:
            gc.enable()
        with pytest.raises(sbqueue.InvalidStateError):
            insp.jobs("gcq", "no-such-state")
        assert gc.isenabled()  # and back on after an error
    finally:
        jobs_module.decode_jobs = original  # type: ignore[assignment]
