"""Queue backups: every queue of a prefix (or some) into one portable file, restore it anywhere, and
server-level RDB snapshots.

``Queue.export`` / ``Queue.import_`` handle one queue; the functions here take a ``connection`` like every
sbqueue class and work on several queues at once (flows between them keep their links)::

    from sbqueue.engine import backup
    backup.export("queues.sbq.gz", prefix="bull")                       # every queue of the prefix
    backup.restore("queues.sbq.gz", connection="redis://other:6379/0")  # same names, another Redis
    backup.restore("queues.sbq.gz", prefix="copy", dry_run=True).frame()
    backup.rdb_snapshot("/backups/")                                     # BGSAVE + copy dump.rdb

The file format (versioned, gzip-compressed JSON lines) and what "consistent" means for a live queue are
specified in ``docs/backup-format.md``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from sbqueue._core.backup import BackupSummary, RestoreReport
from sbqueue._core.keys import QUEUE_KEYS, validate_prefix
from sbqueue.connection import clients
from sbqueue.engine._sync.backup import export_queues
from sbqueue.engine._sync.restore import restore_backup
from sbqueue.errors import BackupError, QueueNotFoundError

__all__ = ["BackupSummary", "RdbSnapshot", "RestoreReport", "discover", "export", "rdb_snapshot", "restore"]

_MARKERS = frozenset(QUEUE_KEYS) | {"repeat"}


def discover(client: Any, prefix: str) -> list[str]:
    """Names of the queues under ``prefix`` (a SCAN: a queue exists when one of its queue keys does)."""
    head = prefix + ":"
    names: set[str] = set()
    pattern = "".join("\\" + c if c in "\\*?[]" else c for c in head) + "*"
    for key in client.scan_iter(match=pattern, count=1000):
        queue, sep, suffix = key[len(head) :].partition(":")
        if sep and queue and suffix in _MARKERS:
            names.add(queue)
    return sorted(names)


def export(
    path: str | os.PathLike[str],
    *,
    connection: Any = None,
    prefix: str = "bull",
    queues: list[str] | None = None,
    events: bool = False,
    pause: bool = False,
    pause_timeout: float = 30.0,
    progress: bool = False,
) -> BackupSummary:
    """Back up ``queues`` (default: every queue of ``prefix``) into one file; see :meth:`Queue.export`."""
    validate_prefix(prefix)
    client, owned = clients.sync_client(connection)
    try:
        names = list(queues) if queues is not None else discover(client, prefix)
        if not names:
            raise QueueNotFoundError(f"no queue found under prefix {prefix!r}: nothing to back up")
        version = str(client.info("server").get("redis_version", ""))
        return export_queues(client, prefix, names, path, events=events, pause=pause, pause_timeout=pause_timeout,
                             redis_version=version, progress=progress)  # fmt: skip
    finally:
        if owned:
            client.close()


def restore(
    path: str | os.PathLike[str],
    *,
    connection: Any = None,
    prefix: str | None = None,
    queues: Any = None,
    overwrite: bool = False,
    dry_run: bool = False,
    events: bool = True,
    progress: bool = False,
) -> RestoreReport:
    """Restore a backup: every queue in it (or ``queues``: a name, a list, or ``{backup name: new name}``)
    under ``prefix`` (default: the backup's). See :meth:`Queue.import_` for what is restored and refused."""
    if prefix is not None:
        validate_prefix(prefix)
    client, owned = clients.sync_client(connection)
    try:
        return restore_backup(client, path, prefix=prefix, queues=queues, overwrite=overwrite, dry_run=dry_run,
                              events=events, progress=progress)  # fmt: skip
    finally:
        if owned:
            client.close()


# --- server level: RDB snapshots --------------------------------------------------------------------------
@dataclass(frozen=True)
class RdbSnapshot:
    """A finished BGSAVE: where the server wrote it and, when it could be copied, where to."""

    server_path: str  # CONFIG GET dir + dbfilename ("" when CONFIG is not allowed)
    saved_at: int  # the server's rdb_last_save_time (epoch seconds)
    seconds: float  # how long the BGSAVE took, as seen from here
    copied_to: str | None  # None when the file is not readable from here (see ``how_to_copy``)
    how_to_copy: str  # instructions when it was not copied


def _local(client: Any) -> bool:
    """True when the server runs on this machine (a unix socket or a loopback address)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    return "path" in kwargs or kwargs.get("host") in ("127.0.0.1", "localhost", "::1")


def rdb_snapshot(
    dest: str | os.PathLike[str] | None, *, connection: Any = None, timeout: float = 600.0
) -> RdbSnapshot:
    """Trigger ``BGSAVE``, wait until it finished (``INFO persistence``), and copy the RDB file to ``dest``
    (a file or a directory) when the server runs on this machine and its file is readable; otherwise the
    result says how to fetch it (e.g. ``kubectl cp`` from the pod's ``/data``). Raises
    :class:`~sbqueue.errors.BackupError` when the save fails or does not finish within ``timeout`` s."""
    client, owned = clients.sync_client(connection)
    try:
        return _rdb(client, dest, timeout)
    finally:
        if owned:
            client.close()


def _rdb(client: Any, dest: str | os.PathLike[str] | None, timeout: float) -> RdbSnapshot:
    start = time.monotonic()
    deadline = start + timeout
    while int(client.info("persistence").get("rdb_bgsave_in_progress", 0)):  # someone else's save: let it end
        if time.monotonic() > deadline:
            raise BackupError("a BGSAVE already running did not finish in time; try again later")
        time.sleep(0.1)
    server_now = int(client.time()[0])
    try:
        client.bgsave()
    except redis.ResponseError as exc:
        if "in progress" not in str(exc).lower():
            raise BackupError(f"BGSAVE refused by the server: {exc}") from None
    while True:
        info = client.info("persistence")
        if not int(info.get("rdb_bgsave_in_progress", 0)) and int(info.get("rdb_last_save_time", 0)) >= server_now:
            break
        if time.monotonic() > deadline:
            raise BackupError(f"BGSAVE did not finish within {timeout:g} s (INFO persistence still shows it running)")
        time.sleep(0.05)
    if info.get("rdb_last_bgsave_status") != "ok":
        raise BackupError(f"BGSAVE failed on the server (rdb_last_bgsave_status={info.get('rdb_last_bgsave_status')})")
    saved_at = int(info.get("rdb_last_save_time", 0))
    try:
        directory = client.config_get("dir").get("dir", "")
        filename = client.config_get("dbfilename").get("dbfilename", "dump.rdb")
        server_path = str(Path(directory) / filename) if directory else ""
    except redis.ResponseError:
        server_path, filename = "", "dump.rdb"
    hint = (
        f"the server wrote {server_path or 'its RDB file (CONFIG GET is not allowed here)'} on its own host. Copy it "
        "from there: on a VM, scp/rsync that file; in Kubernetes, `kubectl cp <namespace>/<redis pod>:/data/"
        f"{filename} ./{filename}` (the data directory of deploy/k8s/redis-statefulset.yaml is /data); on a "
        "managed Redis, use the provider's snapshot export"
    )
    copied: str | None = None
    source = Path(server_path) if server_path else None
    if dest is not None and source is not None and _local(client) and os.access(source, os.R_OK):
        target = Path(dest)
        if target.is_dir():
            target = target / f"{source.stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(saved_at))}.rdb"
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        copied = str(target)
    return RdbSnapshot(server_path=server_path, saved_at=saved_at, seconds=time.monotonic() - start,
                       copied_to=copied, how_to_copy="" if copied else hint)  # fmt: skip
