"""The history recorder under chaos: ``sbqueue record`` runs beside the workers through the Redis restart and
the client kills, is SIGKILLed mid-run and restarted. Afterwards its dataset must hold every entry still in the
events stream exactly once, and whatever the stream lost before the recorder read it must show as a gap row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from sbqueue.history import History
from sbqueue.inspection.history_store import Store, open_fs


class RecorderProc:
    """One ``sbqueue record`` process at a time, restarted after each kill; the dataset is ``path``.

    Like the shipped systemd unit (``Restart=always``) and Kubernetes Deployment, a recorder that exits on its own
    is started again (:meth:`supervise`): ``sbqueue record`` refuses to start while Redis is unreachable (it
    fails fast on a wrong URL), which happens when its restart falls into the chaos run's Redis restart.
    """

    def __init__(self, url: str, prefix: str, queue: str, path: Path, logdir: Path) -> None:
        self.url, self.prefix, self.queue, self.path = url, prefix, queue, path
        self.logdir = logdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.exits: list[int] = []  # exit codes of recorders that stopped on their own (then restarted)
        self._restart_at: float | None = None

    def start(self) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        with open(self.logdir / f"recorder-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sbqueue", "record", "--url", self.url, "--prefix", self.prefix,
                 "--queues", self.queue, "--to", str(self.path), "--flush-interval", "0.5",
                 "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no final flush, the rows in memory are gone; the restarted recorder must read them again."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def supervise(self, delay: float = 1.0) -> None:
        """Restart a recorder that exited on its own, ``delay`` seconds after it did (a supervisor's RestartSec)."""
        if self.proc is None or self.proc.poll() is None:
            return
        if self._restart_at is None:
            self.exits.append(self.proc.returncode)
            self._restart_at = time.monotonic() + delay
        elif time.monotonic() >= self._restart_at:
            self._restart_at = None
            self.start()

    def last_recorded(self) -> tuple[int, int] | None:
        return Store(*open_fs(self.path)).last_id(self.queue)

    def wait_caught_up(self, client: redis.Redis, key: str, timeout: float = 90.0) -> bool:
        """True once the dataset's last stream id is the stream's last id (the recorder has read it all)."""
        newest = client.xrevrange(key, count=1)
        if not newest:
            return True
        ms, seq = (int(x) for x in newest[0][0].split("-"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervise()
            last = self.last_recorded()
            if last is not None and last >= (ms, seq):
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> int | None:
        """SIGTERM (a final flush), then the exit code; None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2_000:] for p in sorted(self.logdir.glob("recorder-*.log")))


def stream_ids(client: redis.Redis, key: str, chunk: int = 10_000) -> list[str]:
    ids: list[str] = []
    start = "-"
    while True:
        batch = client.xrange(key, min=start, count=chunk)
        ids += [eid for eid, _ in batch]
        if len(batch) < chunk:
            return ids
        start = "(" + batch[-1][0]


def account_recorder(rec: RecorderProc, client: redis.Redis, key: str, exact: bool) -> tuple[dict[str, Any], list[str]]:
    """Compare the dataset with the stream. ``exact``: Redis lost no acknowledged write (clean restarts), so the
    dataset may hold nothing the stream does not."""
    problems: list[str] = []
    caught_up = rec.wait_caught_up(client, key)
    code = rec.stop()
    if not caught_up:
        problems.append(f"the recorder did not catch up with the stream; its log:\n{rec.logs()}")
    if code != 0:
        problems.append(f"the recorder exited with {code} on SIGTERM; its log:\n{rec.logs()}")
    in_stream = stream_ids(client, key)
    history = History(rec.path)
    recorded = [str(x) for x in history.events(rec.queue)["stream_id"]]
    unique = set(recorded)
    missing = set(in_stream) - unique
    extra = unique - set(in_stream)
    gaps = history.gaps(rec.queue)
    # the stream is never trimmed in a chaos run: a gap row would mean the recorder lost its place
    if missing:
        problems.append(f"{len(missing)} events in the stream are not in the recorded history "
                        f"(e.g. {sorted(missing)[:3]})")  # fmt: skip
    if len(recorded) != len(unique):
        problems.append(f"{len(recorded) - len(unique)} events recorded twice")
    if extra and exact:
        problems.append(f"{len(extra)} recorded events are not in the stream (e.g. {sorted(extra)[:3]})")
    if len(gaps):
        problems.append(f"gap rows although the stream was never trimmed: {gaps.to_dict('records')}")
    details = {
        "recorder_starts": rec.starts,
        "recorder_kills": rec.kills,
        "recorder_exits": rec.exits,
        "recorded_events": len(recorded),
        "stream_events": len(in_stream),
        "recorder_missing": len(missing),
        "recorder_duplicates": len(recorded) - len(unique),
        "recorder_extra": len(extra),
        "recorder_gaps": len(gaps),
    }
    return details, problems
