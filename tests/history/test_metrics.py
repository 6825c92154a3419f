"""Recorder lag and gaps as Prometheus metrics, served by the exporter's HTTP server."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import redis

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from sbqueue.cli.exporter import serve
from sbqueue.history import Recorder
from sbqueue.ops.exporter import QueueCollector, connect_exporter
from sbqueue.ops.recorder_metrics import RecorderCollector


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_exporter_serves_recorder_lag_and_gaps(redis_url: str, r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    key = f"{prefix}:m:events"
    for i in range(5):
        r.xadd(key, {"event": "added", "jobId": str(i)})
    rec = Recorder(r, prefix, tmp_path, flush_interval=0, page=2, max_rows=2)
    rec.run_once()
    rec.flush()  # two of five read: behind the stream
    for i in range(5, 20):
        r.xadd(key, {"event": "added", "jobId": str(i)})
    r.xtrim(key, maxlen=3, approximate=False)
    rec.run_once()
    rec.flush()
    client = connect_exporter(redis_url)
    server, _ = serve(QueueCollector(client, prefix, ["m"]), 0, "127.0.0.1", (RecorderCollector(tmp_path),))
    try:
        s = _samples(server.server_port)
        assert s[("sbqueue_recorder_up", ())] == 1
        assert s[("sbqueue_recorder_gaps_total", (("queue", "m"),))] == 1
        assert s[("sbqueue_recorder_lag_seconds", (("queue", "m"),))] >= 0
        assert 0 <= s[("sbqueue_recorder_status_age_seconds", ())] < 60
        assert s[("sbqueue_recorder_position_timestamp_seconds", (("queue", "m"),))] > 1.7e9
        assert ("bullmq_queue_waiting", (("queue", "m"),)) in s  # the queue metrics are still served
        # a restarted recorder keeps counting gaps where the last one stopped
        Recorder(r, prefix, tmp_path, flush_interval=0).flush()
        again = Recorder(r, prefix, tmp_path, flush_interval=0)
        again.run_once()
        again.flush()
        assert _samples(server.server_port)[("sbqueue_recorder_gaps_total", (("queue", "m"),))] == 1
    finally:
        server.shutdown()
        server.server_close()
        client.close()
    missing = RecorderCollector(tmp_path / "nowhere")
    assert [m.samples[0].value for m in missing.collect()] == [0]
