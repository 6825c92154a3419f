"""The recorder on a real Redis with a real worker: rows, resume after kill -9, gaps, bad input, compaction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

import sbqueue
from sbqueue.errors import ConfigurationError
from sbqueue.history import FILE_SCHEMA, History, Recorder
from sbqueue.inspection.history_store import Store, open_fs


def _drain(rec: Recorder, rounds: int = 20) -> None:
    for _ in range(rounds):
        rec.flush(force=True)
        if not rec.run_once():
            break
    rec.flush(force=True)


def _work(r: redis.Redis, prefix: str, queue: str, n: int, fail_every: int = 0) -> None:
    q = sbqueue.Queue(queue, r, prefix=prefix)
    for i in range(n):
        q.add("slow" if i % 2 else "fast", {"i": i, "customer": {"id": i % 3}}, attempts=1)

    def proc(job: sbqueue.Job) -> dict[str, int]:
        if fail_every and job.data["i"] % fail_every == 0:
            raise ValueError(f"boom {job.data['i']}")
        time.sleep(0.002)
        return {"i": job.data["i"]}

    w = sbqueue.Worker(queue, proc, r, prefix, concurrency=4, name="w-test").start()
    deadline = time.time() + 30
    while time.time() < deadline:
        counts = q.get_job_counts("completed", "failed")
        if counts["completed"] + counts["failed"] == n:
            break
        time.sleep(0.05)
    w.close()
    q.close()


def test_records_every_entry_with_job_fields(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    _work(r, prefix, "mail", 40, fail_every=10)
    rec = Recorder(r, prefix, tmp_path / "h", data_fields=["customer.id"], flush_interval=0)
    _drain(rec)
    stream = r.xrange(f"{prefix}:mail:events")
    h = History(tmp_path / "h")
    ev = h.events("mail")
    assert list(ev["stream_id"]) == [eid for eid, _ in stream]  # every entry, once, in order
    assert set(ev["queue"]) == {"mail"}
    done = ev[ev["event"] == "completed"]
    assert len(done) == 36 and done["worker"].eq("w-test").all() and done["attempt"].eq(1).all()
    assert done["job_name"].isin(["fast", "slow"]).all() and done["returnvalue_bytes"].gt(0).all()
    assert done["job_finished_on"].notna().all()
    assert {json.loads(d)["customer.id"] for d in done["data"]} == {0, 1, 2}
    failed = ev[ev["event"] == "failed"]
    assert sorted(failed["failed_reason"]) == sorted(f"boom {i}" for i in (0, 10, 20, 30))
    jobs = h.jobs("mail")
    assert len(jobs) == 40 and jobs["outcome"].value_counts().to_dict() == {"completed": 36, "failed": 4}
    assert (jobs[jobs["outcome"] == "completed"]["run_s"] >= 0.001).all()
    assert (jobs["wait_s"] >= 0).all() and jobs["name"].notna().all() and jobs["worker"].eq("w-test").all()
    # the file's schema is the declared one, with its version in the metadata
    path = next((tmp_path / "h").rglob("*.parquet"))
    assert pq.read_schema(path).remove_metadata() == FILE_SCHEMA.remove_metadata()
    assert pq.read_schema(path).metadata[b"sbqueue.history.schema"] == b"1"
    assert path.parent.name.startswith("hour=") and path.parent.parent.name == "queue=mail"
    assert h.gaps().empty


def test_resumes_where_it_stopped_and_finds_new_queues(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    q = sbqueue.Queue("a", r, prefix=prefix)
    for i in range(5):
        q.add("x", {"i": i})
    rec = Recorder(r, prefix, tmp_path, flush_interval=0)
    _drain(rec)
    for i in range(5):
        q.add("x", {"i": i})
    sbqueue.Queue("b", r, prefix=prefix).add("y", {})
    rec2 = Recorder(r, prefix, tmp_path, flush_interval=0, discovery_interval=0)
    _drain(rec2)
    h = History(tmp_path)
    assert sorted(h.queues()) == ["a", "b"]
    ids = list(h.events("a")["stream_id"])
    assert ids == [eid for eid, _ in r.xrange(f"{prefix}:a:events")] and len(set(ids)) == len(ids)
    assert len(h.events("b")) == len(r.xrange(f"{prefix}:b:events"))


def test_gap_row_when_the_stream_was_trimmed_past_the_position(r: redis.Redis, prefix: str, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    key = f"{prefix}:g:events"
    for i in range(10):
        r.xadd(key, {"event": "added", "jobId": str(i), "name": "n"})
    rec = Recorder(r, prefix, tmp_path, flush_interval=0)
    _drain(rec)
    for i in range(10, 30):
        r.xadd(key, {"event": "added", "jobId": str(i), "name": "n"})
    before = r.xrange(key)
    r.xtrim(key, maxlen=5, approximate=False)  # exact trim: entries 10..24 are gone before the recorder read them
    _drain(rec)
    h = History(tmp_path)
    gaps = h.gaps()
    assert len(gaps) == 1
    assert gaps.loc[0, "gap_from"] == before[9][0] and gaps.loc[0, "gap_to"] == before[25][0]
    est = gaps.loc[0, "lost_estimate"]
    info = r.xinfo_stream(key)
    assert (est == 15) if "entries-added" in info else pd_isna(est)
    assert "trimmed past the last id read" in caplog.text
    ev = h.events("g")
    assert list(ev[ev["event"] != "gap"]["job_id"]) == [str(i) for i in [*range(10), *range(25, 30)]]


def pd_isna(v: object) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def test_buggy_peer_entries_are_recorded_with_parse_errors(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    key = f"{prefix}:odd:events"
    r.xadd(key, {"jobId": "1"})  # no event field
    r.xadd(key, {"event": "completed", "jobId": "2", "returnvalue": "{not json", "prev": "active"})
    r.xadd(key, {"event": "custom", "foo": "bar", "data": "x"})
    r.xadd(key, {"event": "active", "jobId": "3", "prev": "waiting"})
    r.hset(f"{prefix}:odd:3", mapping={"ats": "99999999999999", "timestamp": "1" + "0" * 30, "pb": "w",
                                       "processedOn": "soon"})  # a buggy peer's hash
    r.set(f"{prefix}:wrongtype:events", "not a stream")
    rec = Recorder(r, prefix, tmp_path, flush_interval=0)
    _drain(rec)
    assert "WRONGTYPE" in (rec.queues["wrongtype"].error or "")
    ev = History(tmp_path).events("odd")
    assert len(ev) == 4
    assert pd_isna(ev.loc[3, "attempt"]) and pd_isna(ev.loc[3, "job_timestamp"]) and ev.loc[3, "worker"] == "w"
    assert ev.loc[0, "parse_error"] == "entry has no 'event' field" and pd_isna(ev.loc[0, "event"])
    assert "returnvalue: invalid JSON" in ev.loc[1, "parse_error"]
    assert json.loads(ev.loc[2, "extra"]) == {"foo": "bar", "data": "x"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_path_is_a_clear_error(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ConfigurationError, match="cannot write the history dataset"):
            Recorder(r, prefix, tmp_path / "x")
    finally:
        tmp_path.chmod(0o700)


def test_path_under_a_file_is_a_clear_error(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="cannot write the history dataset"):
        Recorder(r, prefix, tmp_path / "file" / "history")


def test_failed_writes_keep_rows_and_stop_reading(r: redis.Redis, prefix: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"{prefix}:w:events"
    for i in range(30):
        r.xadd(key, {"event": "added", "jobId": str(i)})
    rec = Recorder(r, prefix, tmp_path, flush_interval=0, max_rows=10, page=10)
    real = rec.store.write_table

    def broken(*a: object, **k: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(rec.store, "write_table", broken)
    for _ in range(5):
        rec.run_once()  # never raises; reading stops once the buffer is full
    assert rec._buffered == 10
    monkeypatch.setattr(rec.store, "write_table", real)
    _drain(rec)
    assert list(History(tmp_path).events("w")["job_id"]) == [str(i) for i in range(30)]


def test_compaction_merges_small_files_and_drops_covered_ones(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    key = f"{prefix}:c:events"
    base = 1_600_000_000_000  # an hour long past
    for i in range(12):
        r.xadd(key, {"event": "added", "jobId": str(i)}, id=f"{base + i}-0")
    rec = Recorder(r, prefix, tmp_path, flush_interval=0, page=3, max_rows=3)
    _drain(rec, rounds=10)
    files = sorted(tmp_path.rglob("part-*.parquet"))
    assert len(files) == 4
    # an interrupted earlier compaction left a covered copy
    stale = files[0].parent / f"part-{base}-0_{base + 1}-0.parquet"
    stale.write_bytes(files[0].read_bytes())
    assert len(History(tmp_path).events("c")) == 12  # covered files are not read twice
    assert rec.compact() == 5
    files = sorted(tmp_path.rglob("part-*.parquet"))
    assert [f.name for f in files] == [f"part-{base}-0_{base + 11}-0.parquet"]
    assert list(History(tmp_path).events("c")["job_id"]) == [str(i) for i in range(12)]
    assert Store(*open_fs(tmp_path)).last_id("c") == (base + 11, 0)


def test_kill_9_mid_run_loses_and_duplicates_nothing(redis_url: str, r: redis.Redis, prefix: str,
                                                     tmp_path: Path) -> None:
    key = f"{prefix}:k:events"
    out = tmp_path / "h"
    produced = 0
    for _round in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "sbqueue", "record", "--url", redis_url, "--prefix", prefix,
                                 "--to", str(out), "--flush-interval", "0.05"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            files_before = len(list(out.rglob("part-*.parquet")))
            started = time.time()
            end = None
            while end is None or time.time() < end:  # events keep arriving while the recorder writes
                pipe = r.pipeline()
                for _ in range(50):
                    pipe.xadd(key, {"event": "added", "jobId": str(produced), "name": "k"})
                    produced += 1
                pipe.execute()
                time.sleep(0.01)
                if end is None and len(list(out.rglob("part-*.parquet"))) > files_before:
                    end = time.time() + 0.3 + 0.2 * _round  # it writes: kill it a little later
                assert time.time() - started < 60, "the recorder never wrote"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert 0 < len(History(out).events("k")) <= produced  # the killed recorders did write
    rec = Recorder(r, prefix, out, flush_interval=0)
    _drain(rec, rounds=1000)
    ids = list(History(out).events("k")["stream_id"])
    assert len(ids) == produced == r.xlen(key)
    assert ids == [eid for eid, _ in r.xrange(key)]


def test_history_reports_corrupt_foreign_and_old_schema_files(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    key = f"{prefix}:b:events"
    for i in range(5):
        r.xadd(key, {"event": "added", "jobId": str(i)})
    rec = Recorder(r, prefix, tmp_path, flush_interval=0)
    _drain(rec)
    part = next(tmp_path.rglob("part-*.parquet"))
    (part.parent / "part-1-0_1-0.parquet").write_bytes(b"PAR1 garbage")  # corrupt
    (part.parent / "notes.txt").write_text("hello")  # foreign
    (tmp_path / "README").write_text("x")
    old = pa.table({"stream_id": ["2-0"], "ts": pa.array([2], pa.timestamp("ms", tz="UTC")),
                    "event": ["added"], "job_id": ["old"]})  # an older, smaller schema
    pq.write_table(old, part.parent / "part-2-0_2-0.parquet")
    clash = pa.table({"stream_id": ["3-0"], "ts": pa.array([3], pa.timestamp("ms", tz="UTC")),
                      "attempt": pa.array([[1]], pa.list_(pa.int64()))})  # a column of another type
    pq.write_table(clash, part.parent / "part-3-0_3-0.parquet")
    h = History(tmp_path)
    ev = h.events("b")
    assert list(ev["job_id"]) == ["old", *map(str, range(5))]  # corrupt skipped, old schema read (nulls)
    assert pd_isna(ev.loc[0, "job_name"])
    problems = h.problems()
    assert any("part-1-0_1-0" in p for p in problems["path"])
    assert any("part-3-0_3-0" in p for p in problems["path"])
    assert any(p.endswith("notes.txt") for p in problems["path"]) and any(p.endswith("README") for p in
                                                                           problems["path"])


def test_inspector_history(r: redis.Redis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r.xadd(f"{prefix}:i:events", {"event": "added", "jobId": "1", "name": "n"})
    _drain(Recorder(r, prefix, tmp_path, flush_interval=0))
    monkeypatch.delenv("SBQUEUE_HISTORY", raising=False)
    with sbqueue.Inspector(r, prefix) as insp:
        with pytest.raises(ConfigurationError, match="no history dataset"):
            insp.history()
        assert list(insp.history(tmp_path).events("i")["job_id"]) == ["1"]
    with sbqueue.Inspector(r, prefix, history=str(tmp_path)) as insp:
        assert insp.history().queues() == ["i"]


def _redis_server(port: int, home: Path) -> subprocess.Popen[bytes]:
    from sbqueue import embedded

    binary = embedded.bundled_binary() or embedded.find_binary()
    proc = subprocess.Popen([str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home),
                             "--save", "", "--appendonly", "yes"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.time() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)
    return proc


def test_recorder_survives_a_redis_outage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import socket
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _redis_server(port, tmp_path)
    client = redis.Redis(port=port, decode_responses=True)
    rec = Recorder(f"redis://127.0.0.1:{port}/0", "bull", tmp_path / "h", flush_interval=0.05, poll_ms=100,
                   discovery_interval=0.2)
    thread = threading.Thread(target=rec.run, kwargs={"duration": 60}, daemon=True)
    thread.start()
    try:
        for i in range(20):
            client.xadd("bull:o:events", {"event": "added", "jobId": str(i)})
        deadline = time.time() + 20
        while rec.queues.get("o") is None or rec.queues["o"].persisted is None or rec.queues["o"].recorded < 20:
            assert time.time() < deadline
            time.sleep(0.05)
        client.shutdown(save=True)  # the outage (the AOF keeps the stream)
        server.wait(timeout=20)
        time.sleep(1.0)  # the recorder retries meanwhile, without crashing
        assert thread.is_alive()
        server = _redis_server(port, tmp_path)
        for i in range(20, 40):
            client.xadd("bull:o:events", {"event": "added", "jobId": str(i)})
        deadline = time.time() + 30
        while rec.queues["o"].recorded < 40:
            assert time.time() < deadline and thread.is_alive()
            time.sleep(0.05)
    finally:
        rec.stop()
        thread.join(timeout=30)
        server.terminate()
        server.wait(timeout=20)
    assert "Redis unreachable or refusing" in caplog.text
    assert list(History(tmp_path / "h").events("o")["job_id"]) == [str(i) for i in range(40)]


def test_start_now_skips_the_backlog_of_existing_queues_only(r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    r.xadd(f"{prefix}:old:events", {"event": "added", "jobId": "backlog"})
    with Recorder(r, prefix, tmp_path, start="now", flush_interval=0, discovery_interval=0) as rec:
        rec.run_once()
        r.xadd(f"{prefix}:old:events", {"event": "added", "jobId": "new"})
        r.xadd(f"{prefix}:fresh:events", {"event": "added", "jobId": "first"})  # a queue created meanwhile
        _drain(rec)
    h = History(tmp_path)
    assert list(h.events("old")["job_id"]) == ["new"]
    assert list(h.events("fresh")["job_id"]) == ["first"]


def test_job_hashes_read_with_pipelines_when_scripts_are_refused(redis_url: str, r: redis.Redis, prefix: str,
                                                                 tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    user = f"{prefix}-noeval"
    r.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-eval", "-evalsha"])
    try:
        _work(r, prefix, "acl", 6)
        r.set(f"{prefix}:acl:zz", "not a hash")
        r.xadd(f"{prefix}:acl:events", {"event": "completed", "jobId": "zz", "returnvalue": "1"})
        url = urlsplit(redis_url)
        rec = Recorder(f"redis://{user}:pw@{url.hostname}:{url.port}/0", prefix, tmp_path, flush_interval=0)
        _drain(rec)
        assert rec._scripts is False
        done = History(tmp_path).events("acl", event="completed")
        assert len(done) == 7 and (done["worker"].iloc[:6] == "w-test").all() and pd_isna(done["worker"].iloc[6])
    finally:
        r.acl_deluser(user)


def test_redis_lost_while_job_hashes_are_read_skips_nothing(r: redis.Redis, prefix: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the chaos run: the stream page was read, Redis went away while the job hashes were read, and
    the page was dropped with the position already past it. Now no position moves until every read is done."""
    _work(r, prefix, "h", 30)
    rec = Recorder(r, prefix, tmp_path, flush_interval=0)
    real = rec._hmget
    calls = {"n": 0}

    def flaky(base: str, ids: list[str]) -> list[list[object] | None]:
        calls["n"] += 1
        if calls["n"] == 1:  # the connection drops in the middle of the first pass
            raise redis.ConnectionError("Connection reset by peer")
        return real(base, ids)

    monkeypatch.setattr(rec, "_hmget", flaky)
    rec.discover()
    with pytest.raises(redis.ConnectionError):
        rec.run_once()
    _drain(rec)
    ids = list(History(tmp_path).events("h")["stream_id"])
    assert calls["n"] >= 2
    assert ids == [eid for eid, _ in r.xrange(f"{prefix}:h:events")]
