"""Queue backups (issue 23): export/import round trips, renaming, active jobs, the CLI, and bad input."""

from __future__ import annotations

import gzip
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sbqueue
from sbqueue import Job, Queue, Worker, backup
from sbqueue.cli.app import main
from sbqueue.errors import (
    BackupFormatError,
    BackupVersionError,
    InvalidOptionError,
    QueueExistsError,
    QueueNotFoundError,
    SbqueueError,
)
from tests.conftest import delete_prefix, snapshot
from tests.processors import wait_for

#: keys a restore recomputes or a backup leaves out (events only without events=True)
NOT_COMPARED = ("marker", "events", "stalled", "stalled-check")


@pytest.fixture
def prefix2(r: redis.Redis) -> Iterator[str]:
    pfx = f"sbqt{uuid.uuid4().hex[:10]}"
    yield pfx
    delete_prefix(r, pfx)


def _process(job: Job) -> Any:
    if job.name == "bad":
        raise ValueError("bad job")
    return {"echo": job.data}


def _run_until(r: redis.Redis, prefix: str, queue: str, done: Any) -> None:
    worker = Worker(queue, _process, r, prefix, concurrency=1, drain_delay=0.2)
    worker.start()
    try:
        wait_for(done, timeout=10, interval=0.02, what="worker finished")
    finally:
        worker.close(timeout=5)


def seed_flow(r: redis.Redis, prefix: str, parent_q: str, child_q: str, parent: str = "p-1:x:y") -> str:
    """A waiting-children parent with one waiting child, as FlowProducer writes them (spec §15)."""
    child = "c-1:x:y"
    now = "1796400000000"
    p, c = f"{prefix}:{parent_q}:", f"{prefix}:{child_q}:"
    r.hset(c + child, mapping={
        "data": "{}", "delay": "0", "name": "child", "priority": "0", "timestamp": now, "parentKey": p + parent,
        "opts": json.dumps({"parent": {"id": parent, "queue": f"{prefix}:{parent_q}"}, "attempts": 0}),
        "parent": json.dumps({"id": parent, "queueKey": f"{prefix}:{parent_q}"}),
    })  # fmt: skip
    r.lpush(c + "wait", child)
    r.hset(p + parent, mapping={"data": "{}", "delay": "0", "name": "parent", "opts": '{"attempts":0}',
                                "priority": "0", "timestamp": now})  # fmt: skip
    r.sadd(p + parent + ":dependencies", c + child)
    r.hset(p + parent + ":processed", f"{c}done-kid:a:b", '"ok"')
    r.zadd(p + "waiting-children", {parent: int(now)})
    return child


def rich_queue(r: redis.Redis, prefix: str, name: str = "q") -> Queue:
    """A queue with a job in every state but active, plus every kind of queue-level key."""
    q = Queue(name, r, prefix=prefix)
    q.add("ok", {"i": 1})
    q.add("bad", {"i": 2}, attempts=2)
    _run_until(r, prefix, name, lambda: q.get_job_counts("completed", "failed") == {"completed": 1, "failed": 1})
    q.add("a", {"i": 3})
    q.add("b", {"i": 4})
    q.add("lifo", {"i": 5}, lifo=True)
    q.add("p5", {"i": 6}, priority=5)
    q.add("p1", {"i": 7}, priority=1)
    q.add("later", {"i": 8}, delay=3_600_000)
    q.add("dedup", {"i": 9}, deduplication={"id": "D", "ttl": 600_000})
    q.add("custom", {"i": 10}, job_id="my-id")
    q.add("logged", {"i": 11}).log("a log line")
    q.upsert_job_scheduler("every-hour", every=3_600_000, name="tick", data={"s": 1})
    q.set_global_concurrency(7)
    q.set_global_rate_limit(100, 1000)
    seed_flow(r, prefix, name, name)
    return q


def renamed(snap: dict[str, tuple[str, object]], old: str, new: str) -> dict[str, tuple[str, object]]:
    """A snapshot with every ``old:`` key prefix (in key names and inside values) replaced by ``new:``."""
    text = json.dumps(sorted(snap.items()))
    return dict((k, (t, v)) for k, (t, v) in json.loads(text.replace(f"{old}:", f"{new}:")))


def comparable(snap: dict[str, tuple[str, object]]) -> dict[str, tuple[str, object]]:
    return {k: v for k, v in snap.items() if k.rsplit(":", 1)[-1] not in NOT_COMPARED}


def as_json(snap: dict[str, tuple[str, object]]) -> dict[str, Any]:
    return json.loads(json.dumps(snap))


# --- round trips --------------------------------------------------------------------------------------------
def test_round_trip_restores_every_key_into_another_prefix(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path
) -> None:
    q = rich_queue(r, prefix)
    before = snapshot(r, prefix)
    summary = q.export(tmp_path / "q.sbq.gz")
    assert snapshot(r, prefix) == before  # a backup writes nothing
    assert summary.jobs == {"q": {"completed": 1, "delayed": 1, "failed": 1, "prioritized": 2, "wait": 8,
                                  "waiting-children": 1}}  # fmt: skip
    assert summary.total_jobs == 14 and summary.skipped == {} and summary.max_batch_ms < 1000
    report = Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz")
    assert report.targets == {f"{prefix}:q": f"{prefix2}:q"} and report.external_refs == ()
    after = snapshot(r, prefix2)
    # every key and value, scores, list order and TTL'd dedup key included, exactly as in the source
    assert as_json(comparable(after)) == as_json(comparable(renamed(before, prefix, prefix2)))
    # the marker wakes workers now ("0") and at the first delayed job's due time ("1")
    due = int(r.zrange(f"{prefix2}:q:delayed", 0, 0, withscores=True)[0][1]) // 4096
    assert r.zrange(f"{prefix2}:q:marker", 0, -1, withscores=True) == [("0", 0.0), ("1", float(due))]
    assert 590_000 < r.pttl(f"{prefix2}:q:de:D") <= 600_000
    q2 = Queue("q", r, prefix=prefix2)
    assert q2.get_job_counts() == q.get_job_counts()
    bad = q2.get_job(q.get_jobs(["failed"])[0].id)
    assert bad is not None and bad.attempts_made == 2 and bad.failed_reason == "bad job"
    assert q2.get_job_scheduler("every-hour") == q.get_job_scheduler("every-hour")


def test_restored_queue_is_processed_in_the_original_order(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path
) -> None:
    q = Queue("q", r, prefix=prefix)
    for name, opts in [("a", {}), ("b", {}), ("lifo", {"lifo": True}), ("p2", {"priority": 2}),
                       ("p1", {"priority": 1}), ("c", {})]:  # fmt: skip
        q.add(name, {}, **opts)
    q.export(tmp_path / "q.sbq.gz")
    q2 = Queue("q", r, prefix=prefix2)
    q2.import_(tmp_path / "q.sbq.gz")
    order: list[str] = []
    worker = Worker("q", lambda job: order.append(job.name), r, prefix2, concurrency=1, drain_delay=0.2)
    worker.start()
    try:
        wait_for(lambda: len(order) == 6, timeout=10, what="6 jobs processed")
    finally:
        worker.close(timeout=5)
    assert order == ["lifo", "a", "b", "c", "p1", "p2"]
    assert q2.get_job_counts("completed")["completed"] == 6


def test_active_jobs_come_back_waiting_and_run_once(r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path) -> None:
    q = Queue("q", r, prefix=prefix)
    release = threading.Event()
    q.add("held", {"n": 1})
    worker = Worker("q", lambda job: release.wait(10), r, prefix, concurrency=1)
    worker.start()
    try:
        wait_for(lambda: q.get_job_counts("active")["active"] == 1, timeout=10, what="job active")
        q.add("queued", {"n": 2})
        summary = q.export(tmp_path / "q.sbq.gz")
    finally:
        release.set()
        worker.close(timeout=5)
    assert summary.active_ids == {"q": ["1"]} and summary.jobs["q"] == {"active": 1, "wait": 1}
    report = Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz")
    assert report.jobs == {f"{prefix2}:q": {"wait": 2}}
    # the interrupted job is next (tail of wait, as a stalled job is requeued), without its lock
    assert r.lrange(f"{prefix2}:q:wait", 0, -1) == ["2", "1"]
    assert not r.exists(f"{prefix2}:q:1:lock") and r.hget(f"{prefix2}:q:1", "ats") == "1"
    done: list[str] = []
    w2 = Worker("q", lambda job: done.append(job.id), r, prefix2, concurrency=1, drain_delay=0.2)
    w2.start()
    try:
        wait_for(lambda: len(done) == 2, timeout=10, what="restored jobs processed")
    finally:
        w2.close(timeout=5)
    assert done == ["1", "2"]
    assert r.hget(f"{prefix2}:q:1", "ats") == "2"  # attempts continue from the backup


def test_renaming_a_queue_rewrites_job_keys_inside_values(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    Queue("q", r, prefix=prefix).add("x")
    child = seed_flow(r, prefix, "q", "q")
    Queue("q", r, prefix=prefix).export(tmp_path / "q.sbq.gz")
    Queue("copy", r, prefix=prefix).import_(tmp_path / "q.sbq.gz")
    new = f"{prefix}:copy"
    assert r.hget(f"{new}:{child}", "parentKey") == f"{new}:p-1:x:y"
    assert json.loads(r.hget(f"{new}:{child}", "parent") or "") == {"id": "p-1:x:y", "queueKey": new}
    assert json.loads(r.hget(f"{new}:{child}", "opts") or "")["parent"]["queue"] == new
    assert r.smembers(f"{new}:p-1:x:y:dependencies") == {f"{new}:{child}"}
    assert r.hgetall(f"{new}:p-1:x:y:processed") == {f"{new}:done-kid:a:b": '"ok"'}
    assert r.zrange(f"{new}:waiting-children", 0, -1) == ["p-1:x:y"]
    # the source is untouched
    assert r.hget(f"{prefix}:q:{child}", "parentKey") == f"{prefix}:q:p-1:x:y"


def test_prefix_backup_keeps_cross_queue_flows_and_reports_outside_references(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path
) -> None:
    child = seed_flow(r, prefix, "parents", "children")
    Queue("other", r, prefix=prefix).add("solo")
    path = tmp_path / "all.sbq.gz"
    summary = backup.export(path, connection=r, prefix=prefix)
    assert summary.queues == ("children", "other", "parents")
    report = backup.restore(path, connection=r, prefix=prefix2)
    assert report.external_refs == ()
    assert r.hget(f"{prefix2}:children:{child}", "parentKey") == f"{prefix2}:parents:p-1:x:y"
    assert r.smembers(f"{prefix2}:parents:p-1:x:y:dependencies") == {f"{prefix2}:children:{child}"}
    # only the children queue, renamed: its parent stays outside, and the report says so
    report = backup.restore(path, connection=r, prefix=prefix2, queues={"children": "kids"}, dry_run=True)
    assert report.external_refs == (f"{prefix}:parents",)
    frame = report.frame()
    assert list(frame.columns) == ["source", "target", "kind", "count"]
    assert frame.loc[frame["kind"] == "jobs:wait", "count"].tolist() == [1]
    assert not r.exists(f"{prefix2}:kids:{child}")  # dry run


def test_pause_makes_the_backup_exact_and_resumes(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    q = Queue("q", r, prefix=prefix)
    q.add_bulk([{"name": "j", "data": {"i": i}} for i in range(50)])
    done: list[str] = []

    def slow(job: Job) -> None:
        threading.Event().wait(0.01)
        done.append(job.id)

    worker = Worker("q", slow, r, prefix, concurrency=2, drain_delay=0.2)
    worker.start()
    try:
        wait_for(lambda: len(done) >= 5, timeout=10, what="some jobs done")
        summary = q.export(tmp_path / "q.sbq.gz", pause=True, pause_timeout=5)
        assert not q.is_paused()
        wait_for(lambda: len(done) == 50, timeout=20, what="all jobs done after the backup")
    finally:
        worker.close(timeout=5)
    assert summary.paused and summary.active_ids == {"q": []}
    states = summary.jobs["q"]
    assert states.get("completed", 0) + states.get("wait", 0) == 50 and "active" not in states
    with gzip.open(tmp_path / "q.sbq.gz", "rt") as fh:
        meta = next(json.loads(line) for line in fh if '"key":"meta"' in line)
    assert "paused" not in meta["value"]  # paused by the backup, not by the queue's owner


def test_overwrite_replaces_an_existing_queue(r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path) -> None:
    q = Queue("q", r, prefix=prefix)
    q.add("from-backup")
    q.export(tmp_path / "q.sbq.gz")
    target = Queue("q", r, prefix=prefix2)
    for i in range(3):
        target.add("stale", {"i": i})
    report = target.import_(tmp_path / "q.sbq.gz", overwrite=True)
    assert report.overwritten == (f"{prefix2}:q",)
    assert [j.name for j in target.get_jobs(["waiting"])] == ["from-backup"]
    assert not r.exists(f"{prefix2}:q:2", f"{prefix2}:q:3")


def test_events_are_optional(r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path) -> None:
    q = Queue("q", r, prefix=prefix)
    q.add("a")
    q.add("b")
    summary = q.export(tmp_path / "q.sbq.gz", events=True)
    assert summary.events == r.xlen(f"{prefix}:q:events") == 4  # added + waiting per job
    Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz")
    assert r.xrange(f"{prefix2}:q:events") == r.xrange(f"{prefix}:q:events")
    delete_prefix(r, prefix2)
    Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz", events=False)
    assert not r.exists(f"{prefix2}:q:events")


def test_async_queue_exports_and_imports(redis_url: str, prefix: str, prefix2: str, tmp_path: Path) -> None:
    import asyncio

    async def go() -> tuple[Any, Any]:
        async with sbqueue.AsyncQueue("q", redis_url, prefix=prefix) as q:
            await q.add("a", {"x": 1})
            summary = await q.export(tmp_path / "q.sbq.gz")
        async with sbqueue.AsyncQueue("q", redis_url, prefix=prefix2) as q2:
            report = await q2.import_(tmp_path / "q.sbq.gz")
            counts = await q2.get_job_counts("waiting")
        return summary, (report, counts)

    summary, (report, counts) = asyncio.run(go())
    assert summary.total_jobs == 1 and report.total_jobs == 1 and counts == {"waiting": 1}


def test_reads_stay_short_on_a_large_queue(r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path) -> None:
    q = Queue("big", r, prefix=prefix)
    for start in range(0, 20_000, 2000):
        q.add_bulk([{"name": "j", "data": {"i": i, "pad": "x" * 100}} for i in range(start, start + 2000)])
    summary = q.export(tmp_path / "big.sbq.gz")
    assert summary.jobs == {"big": {"wait": 20_000}}
    assert summary.batches > 20  # many short reads, never one long one
    assert summary.max_batch_ms < 250, summary  # round trip; the server part is far shorter (see interop test)
    assert summary.bytes < 20_000 * 100 / 5  # compressed
    Queue("big", r, prefix=prefix2).import_(tmp_path / "big.sbq.gz")
    assert r.lrange(f"{prefix2}:big:wait", 0, -1) == r.lrange(f"{prefix}:big:wait", 0, -1)


# --- the CLI ------------------------------------------------------------------------------------------------
def test_cli_backup_and_restore(
    redis_url: str, r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Queue("a", r, prefix=prefix).add("x")
    Queue("b", r, prefix=prefix).add("y", delay=60_000)
    out = tmp_path / "all.sbq.gz"
    assert main(["backup", "--all", "--url", redis_url, "--prefix", prefix, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{prefix}:a: wait 1" in text and f"{prefix}:b: delayed 1" in text and "wrote" in text
    assert main(["restore", str(out), "--url", redis_url, "--prefix", prefix2, "--dry-run"]) == 0
    assert "would restore 2 jobs" in capsys.readouterr().out and not list(r.scan_iter(f"{prefix2}:*"))
    assert main(["restore", str(out), "--url", redis_url, "--prefix", prefix2, "--queue", "b=b2"]) == 0
    assert f"restored {prefix}:b -> {prefix2}:b2: delayed 1" in capsys.readouterr().out
    assert r.zcard(f"{prefix2}:b2:delayed") == 1 and not r.exists(f"{prefix2}:a:1")
    # the target exists now: refused (exit 2, a clear message), then --force
    assert main(["restore", str(out), "--url", redis_url, "--prefix", prefix2, "--queue", "b=b2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["restore", str(out), "--url", redis_url, "--prefix", prefix2, "--queue", "b=b2", "--force"]) == 0
    assert main(["backup", "--url", redis_url, "--prefix", prefix]) == 2  # neither names nor --all
    assert "--all" in capsys.readouterr().err
    outdir = tmp_path / "dir"
    outdir.mkdir()
    assert main(["backup", "a", "--url", redis_url, "--prefix", prefix, "-o", str(outdir)]) == 0
    (made,) = outdir.iterdir()  # -o DIR: <prefix>-<UTC time>.sbq.gz inside it
    assert made.name.startswith(f"{prefix}-") and made.name.endswith(".sbq.gz")
    assert backup.restore(made, connection=r, prefix=prefix2, queues={"a": "a3"}).total_jobs == 1


# --- bad input: a clear SbqueueError subclass, nothing written ----------------------------------------------
@pytest.fixture
def good_backup(r: redis.Redis, prefix: str, tmp_path: Path) -> Path:
    q = Queue("q", r, prefix=prefix)
    for i in range(30):
        q.add("j", {"i": i, "text": "some payload " * 5})
    q.upsert_job_scheduler("s", every=60_000)
    path = tmp_path / "good.sbq.gz"
    q.export(path)
    return path


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return fh.readlines()


def _write(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    return path


def _bad_files(good: Path, tmp: Path) -> dict[str, tuple[Path, type[SbqueueError], str]]:
    raw = good.read_bytes()
    lines = _lines(good)
    header = json.loads(lines[0])
    newer = _write(tmp / "newer.gz", [json.dumps({**header, "version": 99}) + "\n", *lines[1:]])
    no_trailer = _write(tmp / "no-trailer.gz", lines[:-3])
    corrupt = _write(tmp / "corrupt.gz", [*lines[:3], '{"rec":"job","queue":"q","id":"1","state":"flying"}\n',
                                         *lines[3:]])  # fmt: skip
    (tmp / "truncated.gz").write_bytes(raw[: len(raw) // 2])
    (tmp / "foreign.txt").write_text("id,name\n1,hello\n")
    foreign_gz = _write(tmp / "foreign.gz", ['{"hello": "world"}\n'])
    miscounted = _write(tmp / "miscounted.gz", [*lines[:2], *lines[3:]])
    return {
        "truncated": (tmp / "truncated.gz", BackupFormatError, "truncated"),
        "cut at a line": (no_trailer, BackupFormatError, "without its trailer"),
        "foreign": (tmp / "foreign.txt", BackupFormatError, "not an sbqueue backup"),
        "foreign gzip": (foreign_gz, BackupFormatError, "not an sbqueue backup"),
        "newer version": (newer, BackupVersionError, "format version 99"),
        "corrupt record": (corrupt, BackupFormatError, "unknown state"),
        "record missing": (miscounted, BackupFormatError, "trailer counts"),
        "missing file": (tmp / "nope.gz", BackupFormatError, "does not exist"),
    }


@pytest.mark.parametrize("case", ["truncated", "cut at a line", "foreign", "foreign gzip", "newer version",
                                  "corrupt record", "record missing", "missing file"])  # fmt: skip
def test_bad_backup_files_are_refused_before_anything_is_written(
    r: redis.Redis, good_backup: Path, prefix2: str, tmp_path: Path, case: str
) -> None:
    path, error, words = _bad_files(good_backup, tmp_path)[case]
    target = Queue("q", r, prefix=prefix2)
    for dry_run in (True, False):
        with pytest.raises(error, match=words):
            target.import_(path, dry_run=dry_run)
    assert snapshot(r, prefix2) == {}
    assert issubclass(error, sbqueue.BackupError)


def test_existing_target_is_refused_and_left_as_it_was(
    r: redis.Redis, good_backup: Path, prefix: str, prefix2: str
) -> None:
    target = Queue("q", r, prefix=prefix2)
    target.add("mine", {"keep": True})
    before = snapshot(r, prefix2)
    with pytest.raises(QueueExistsError, match="already exists; nothing was written"):
        target.import_(good_backup)
    # the source queue itself (same prefix and name) is an existing target too
    with pytest.raises(QueueExistsError):
        Queue("q", r, prefix=prefix).import_(good_backup)
    assert snapshot(r, prefix2) == before


def test_backup_of_a_missing_queue_is_refused_and_writes_no_file(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    with pytest.raises(QueueNotFoundError, match="does not exist"):
        Queue("ghost", r, prefix=prefix).export(tmp_path / "ghost.sbq.gz")
    with pytest.raises(QueueNotFoundError, match="no queue found"):
        backup.export(tmp_path / "none.sbq.gz", connection=r, prefix=prefix)
    assert list(tmp_path.iterdir()) == []
    assert snapshot(r, prefix) == {}


def test_choosing_a_queue_the_backup_does_not_hold_is_refused(
    r: redis.Redis, good_backup: Path, prefix2: str
) -> None:
    with pytest.raises(InvalidOptionError, match="not in this backup"):
        Queue("q", r, prefix=prefix2).import_(good_backup, queue="other")
    with pytest.raises(InvalidOptionError, match="not in this backup"):
        backup.restore(good_backup, connection=r, prefix=prefix2, queues=["q", "zzz"])
    with pytest.raises(sbqueue.InvalidQueueNameError):
        backup.restore(good_backup, connection=r, prefix=prefix2, queues={"q": "bad:name"})
    assert snapshot(r, prefix2) == {}


# --- server level: BGSAVE + copy ------------------------------------------------------------------------------
def test_rdb_snapshot_saves_waits_and_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.security.servers import private_redis

    with private_redis(tmp_path / "srv") as srv:
        admin = srv.admin()
        admin.set("bull:q:marker-of-this-test", "rdb-payload-1234")
        out = tmp_path / "out"
        out.mkdir()
        snap = backup.rdb_snapshot(out, connection=srv.url)
        assert snap.server_path == str(tmp_path / "srv" / "dump.rdb") and snap.how_to_copy == ""
        assert snap.copied_to is not None and Path(snap.copied_to).parent == out
        data = Path(snap.copied_to).read_bytes()
        assert data.startswith(b"REDIS") and b"rdb-payload-1234" in data
        assert snap.saved_at >= int(admin.time()[0]) - 60
        # nowhere to copy to: the save still happens, and the result says how to fetch the file
        snap = backup.rdb_snapshot(None, connection=srv.url)
        assert snap.copied_to is None and "kubectl cp" in snap.how_to_copy and snap.server_path in snap.how_to_copy
        assert main(["backup", "--rdb", str(out / "copy.rdb"), "--url", srv.url]) == 0
        assert "copied the RDB file to" in capsys.readouterr().out
        assert (out / "copy.rdb").read_bytes().startswith(b"REDIS")
        admin.close()


def test_restore_raises_the_id_counter_to_the_highest_restored_id(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path
) -> None:
    """A job added after the counter was read is in the backup: the restored counter must cover it, or the
    next add would get a restored job's id (and be dropped as a duplicate)."""
    q = Queue("q", r, prefix=prefix)
    for i in range(5):
        q.add("j", {"i": i})
    q.export(tmp_path / "q.sbq.gz")
    lines = [line.replace('"key":"id","type":"string","ttl_ms":null,"value":"5"', '"key":"id","type":"string",'
                          '"ttl_ms":null,"value":"2"') for line in _lines(tmp_path / "q.sbq.gz")]  # fmt: skip
    assert any('"value":"2"' in line for line in lines)
    Queue("q", r, prefix=prefix2).import_(_write(tmp_path / "old-counter.gz", lines))
    assert r.get(f"{prefix2}:q:id") == "5"
    assert Queue("q", r, prefix=prefix2).add("new").id == "6"


def test_unwritable_or_unreadable_paths_are_backup_errors(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    q = Queue("q", r, prefix=prefix)
    q.add("j")
    with pytest.raises(sbqueue.BackupError, match="cannot write the backup file"):
        q.export(tmp_path / "no-such-dir" / "q.sbq.gz")
    with pytest.raises(sbqueue.BackupError, match="cannot read the backup file"):
        q.import_(tmp_path)  # a directory


def test_big_sub_keys_and_owner_paused_queues_round_trip(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path
) -> None:
    """Sub-keys larger than one read (10,000 members) are paged; a queue its owner paused stays paused (and
    gets no wake-up marker)."""
    q = Queue("q", r, prefix=prefix)
    job = q.add("parent-like", {"x": 1})
    base = f"{prefix}:q:{job.id}"
    n = 10_050
    r.rpush(f"{base}:logs", *[f"line {i}" for i in range(n)])
    r.sadd(f"{base}:dependencies", *[f"{prefix}:q:kid-{i}:a:b" for i in range(n)])
    r.hset(f"{base}:processed", mapping={f"{prefix}:q:done-{i}:a:b": str(i) for i in range(n)})
    r.zadd(f"{base}:unsuccessful", {f"{prefix}:q:bad-{i}:a:b": i for i in range(n)})
    q.pause()
    before = snapshot(r, prefix)
    q.export(tmp_path / "q.sbq.gz")
    Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz")
    after = snapshot(r, prefix2)
    assert as_json(comparable(after)) == as_json(comparable(renamed(before, prefix, prefix2)))
    assert Queue("q", r, prefix=prefix2).is_paused()
    assert not r.exists(f"{prefix2}:q:marker")


# --- fuzz: any damage to a file is refused with a BackupError before anything is written, or restores cleanly ---
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_FUZZ = settings(
    max_examples=min(int(os.environ.get("SBQUEUE_HYPOTHESIS_EXAMPLES", "60")), 10_000),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _restore_or_refuse(r: redis.Redis, path: Path, prefix2: str) -> None:
    try:
        Queue("q", r, prefix=prefix2).import_(path)
    except sbqueue.BackupError:
        assert snapshot(r, prefix2) == {}  # refused: nothing written
    else:
        delete_prefix(r, prefix2)


@_FUZZ
@given(data=st.data())
def test_fuzzed_records_are_refused_or_restored(
    r: redis.Redis, good_backup: Path, prefix2: str, tmp_path: Path, data: st.DataObject
) -> None:
    lines = _lines(good_backup)
    n = data.draw(st.integers(1, len(lines) - 2), label="line")
    rec = json.loads(lines[n])
    field = data.draw(st.sampled_from(sorted(rec) + ["sub", "extra"]), label="field")
    if data.draw(st.booleans(), label="delete"):
        rec.pop(field, None)
    else:
        rec[field] = data.draw(_JSON, label="value")
    lines[n] = json.dumps(rec) + "\n"
    _restore_or_refuse(r, _write(tmp_path / "fuzzed.gz", lines), prefix2)


@_FUZZ
@given(offset=st.integers(0, 10**6), byte=st.integers(0, 255))
def test_damaged_bytes_are_refused_or_restored(
    r: redis.Redis, good_backup: Path, prefix2: str, tmp_path: Path, offset: int, byte: int
) -> None:
    raw = bytearray(good_backup.read_bytes())
    raw[offset % len(raw)] = byte
    (tmp_path / "damaged.gz").write_bytes(bytes(raw))
    _restore_or_refuse(r, tmp_path / "damaged.gz", prefix2)


def test_a_backup_needs_only_read_commands(tmp_path: Path) -> None:
    """Run as an ACL user that may only read (Redis checks the commands scripts run too): the backup works,
    so it writes nothing; the same user cannot restore."""
    from tests.security.servers import private_redis

    with private_redis(tmp_path / "srv") as srv, srv.admin() as admin:
        rich_queue(admin, "bull")
        admin.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["*"],
                          commands=["-@all", "+@read", "+info", "+ping", "+evalsha", "+script|load"])  # fmt: skip
        before = snapshot(admin, "bull")
        summary = Queue("q", srv.url_for("reader", "pw"), prefix="bull").export(tmp_path / "q.sbq.gz")
        assert summary.total_jobs == 14
        assert snapshot(admin, "bull") == before
        assert admin.acl_log() == []  # nothing was refused
        with pytest.raises(redis.exceptions.NoPermissionError):
            Queue("copy", srv.url_for("reader", "pw"), prefix="bull").import_(tmp_path / "q.sbq.gz")


def test_reads_stop_at_their_budget_when_jobs_are_large(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path
) -> None:
    """40 jobs with 3,000 log lines each: no read returns much more than 5,000 members (one job's worth at
    most beyond), so a batch of large jobs is split over many short reads, and every line comes back."""
    q = Queue("q", r, prefix=prefix)
    jobs = q.add_bulk([{"name": "chatty", "data": {"i": i}} for i in range(40)])
    with r.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.rpush(f"{prefix}:q:{job.id}:logs", *[f"{job.id} line {n}" for n in range(3000)])
        pipe.execute()
    summary = q.export(tmp_path / "q.sbq.gz")
    assert summary.total_jobs == 40 and summary.batches >= 40 * 3000 // 6000
    Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz")
    for job in jobs[::7]:
        assert r.lrange(f"{prefix2}:q:{job.id}:logs", 0, -1) == r.lrange(f"{prefix}:q:{job.id}:logs", 0, -1)
    assert r.llen(f"{prefix2}:q:wait") == 40


def test_progress_bars(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = Queue("q", r, prefix=prefix)
    q.add_bulk([{"name": "j"} for _ in range(500)])
    q.export(tmp_path / "q.sbq.gz", progress=True)
    assert "backing up q" in capsys.readouterr().err
    Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz", progress=True)
    assert "restoring" in capsys.readouterr().err
    q.export(tmp_path / "quiet.sbq.gz")
    assert capsys.readouterr().err == ""


def test_keys_a_peer_garbled_do_not_stop_a_backup(r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path) -> None:
    """Wrong-typed containers read as empty, wrong-typed queue keys and job keys are left out and counted."""
    q = Queue("q", r, prefix=prefix)
    q.add("a")
    q.add("b", priority=2)
    r.delete(f"{prefix}:q:wait")
    r.set(f"{prefix}:q:wait", "garbage")  # job 1 is now in no readable state
    r.hset(f"{prefix}:q:completed", "x", "y")
    r.set(f"{prefix}:q:repeat", "not a zset")
    r.set(f"{prefix}:q:broken:a:b", "a string where a job hash should be")
    summary = q.export(tmp_path / "q.sbq.gz")
    assert summary.jobs == {"q": {"prioritized": 1, "unknown": 1}}
    assert summary.skipped == {"repeat not a zset": 1, "job key not a hash (string)": 1}
    Queue("q", r, prefix=prefix2).import_(tmp_path / "q.sbq.gz")
    assert r.hget(f"{prefix2}:q:1", "name") == "a" and not r.exists(f"{prefix2}:q:wait")
    assert r.zrange(f"{prefix2}:q:prioritized", 0, -1) == ["2"]


def test_an_sbqueue_flow_restored_under_another_prefix_completes(
    r: redis.Redis, prefix: str, prefix2: str, tmp_path: Path
) -> None:
    """A flow across two queues (sbqueue's FlowProducer), backed up with every queue of its prefix and restored
    under another prefix: sbqueue workers run the children, then the parent, which sees their results."""
    flow = sbqueue.FlowProducer(r, prefix)
    node = flow.add({"name": "parent", "queue_name": "parents", "data": {"p": 1}, "children": [
        {"name": "kid", "queue_name": "kids", "data": {"k": i}} for i in range(3)
    ]})  # fmt: skip
    flow.close()
    backup.export(tmp_path / "flow.sbq.gz", connection=r, prefix=prefix)
    assert backup.restore(tmp_path / "flow.sbq.gz", connection=r, prefix=prefix2).external_refs == ()
    results: dict[str, Any] = {}

    def run(job: Job) -> Any:
        if job.name == "parent":
            results["children"] = job.get_children_values()
        return {"k": job.data.get("k")}

    workers = [Worker(q, run, r, prefix2, concurrency=2, drain_delay=0.2) for q in ("kids", "parents")]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: Queue("parents", r, prefix=prefix2).get_job_state(node.job.id) == "completed",
                 timeout=15, what="restored parent completed")  # fmt: skip
    finally:
        for worker in workers:
            worker.close(timeout=5)
    assert sorted(results["children"]) == sorted(f"{prefix2}:kids:{c.job.id}" for c in node.children)
    assert Queue("parents", r, prefix=prefix).get_job_state(node.job.id) == "waiting-children"  # source untouched
