"""Queue backups on Redis Cluster: export and restore a hash-tagged queue (SCAN on every master, pipelines
and the read script routed by slot); a target without a hash tag is refused before anything is written."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from sbqueue import Queue, backup
from sbqueue.errors import ClusterKeyError

from .helpers import keys_by_node, prefix, r, redis_url, wipe  # noqa: F401  (shadow the standalone fixtures)


def test_backup_and_restore_on_a_cluster(r: Any, prefix: str, tmp_path: Path) -> None:  # noqa: F811
    q = Queue("q", r, prefix=prefix)
    for i in range(300):
        q.add("j", {"i": i}, priority=i % 3, delay=60_000 if i % 10 == 0 else None)
    logged = q.add("logged")
    logged.log("a line")
    q.upsert_job_scheduler("tick", every=60_000)
    summary = q.export(tmp_path / "q.sbq.gz")
    assert summary.total_jobs == 302
    target = "{sbqt" + uuid.uuid4().hex[:10] + "}"
    try:
        report = backup.restore(tmp_path / "q.sbq.gz", connection=r, prefix=target)
        assert report.total_jobs == 302
        q2 = Queue("q", r, prefix=target)
        assert q2.get_job_counts() == q.get_job_counts()
        assert q2.get_job_logs(logged.id)["logs"] == ["a line"]
        assert len(keys_by_node(r, target)) == 1  # every key of the restored queue on one node (one slot)
        with pytest.raises(ClusterKeyError):
            backup.restore(tmp_path / "q.sbq.gz", connection=r, prefix="untagged-" + uuid.uuid4().hex[:6])
    finally:
        wipe(r, target)
