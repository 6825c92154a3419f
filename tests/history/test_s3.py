"""The dataset on S3 (a local moto server): record, resume, read back with predicate pushdown, compact."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from sbqueue.history import History, Recorder

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("history-bucket")
    try:
        yield opts
    finally:
        server.stop()


def test_records_and_reads_on_s3(r: redis.Redis, prefix: str, s3: dict[str, str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    key = f"{prefix}:s3q:events"
    base = 1_600_000_000_000
    for i in range(6):  # two hours, long past
        r.xadd(key, {"event": "added", "jobId": str(i), "name": "n"}, id=f"{base + i * 1_800_000}-0")
    url = f"s3://history-bucket/{prefix}"
    rec = Recorder(r, prefix, url, flush_interval=0, page=1, max_rows=1, storage_options=s3)
    for _ in range(8):
        rec.flush()
        rec.run_once()
    rec.flush()
    r.xadd(key, {"event": "added", "jobId": "6", "name": "n"}, id=f"{base + 6 * 1_800_000}-0")
    again = Recorder(r, prefix, url, flush_interval=0, storage_options=s3)  # resumes from the object names
    again.run_once()
    again.flush()
    h = History(url, storage_options=s3)
    assert h.queues() == ["s3q"]
    ev = h.events("s3q")
    assert list(ev["job_id"]) == [str(i) for i in range(7)] and len(set(ev["stream_id"])) == 7
    window = h.events("s3q", since=base + 1_800_000, until=base + 3 * 1_800_000)
    assert list(window["job_id"]) == ["1", "2"]
    assert again.compact() == 6  # three finished hours of two one-row files each
    fs = s3fs.S3FileSystem(**s3)
    names = fs.find(f"history-bucket/{prefix}")
    assert any(n.endswith("_recorder.json") for n in names)
    parts = [n for n in names if n.endswith(".parquet")]
    assert len(parts) == 4  # one file per hour after compaction (2020-09-13T12..T15)
    assert list(History(url, storage_options=s3).events("s3q")["job_id"]) == [str(i) for i in range(7)]
