"""The dataset layout shared by the recorder and the reader: one schema, file names, listing, atomic writes.

Layout (Hive partitioning, readable by Spark, DuckDB, Trino, ``pyarrow.dataset``)::

    <root>/queue=<queue, URI-escaped>/hour=<YYYY-MM-DDTHH>/part-<first stream id>_<last stream id>.parquet

Every file holds the rows of one queue and one UTC hour (the hour of the stream id's time), sorted by stream id.
Its name carries the range of stream ids it covers: the recorder resumes from the highest id found in the
names (so the position is persisted *with* the data: no separate checkpoint can disagree with it), and a file
whose range lies inside another's (left over by an interrupted compaction) is ignored and later deleted.
Files whose name does not match are foreign: never read, reported.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sbqueue.errors import ConfigurationError

#: Version of :data:`FILE_SCHEMA`, stored in every file's metadata (``sbqueue.history.schema``).
SCHEMA_VERSION = 1
_UTC_MS = pa.timestamp("ms", tz="UTC")

#: The columns of every data file (declared once; the partition columns ``queue`` and ``hour`` come from the
#: path). Files of an older version lack some columns: readers see them as nulls.
FILE_SCHEMA = pa.schema(
    [
        pa.field("stream_id", pa.string(), nullable=False),  # "<ms>-<seq>", the events stream entry id
        pa.field("ts", _UTC_MS, nullable=False),  # the entry's time (the ms part of its id)
        pa.field("id_seq", pa.int64()),  # the seq part of its id (orders entries of the same ms)
        pa.field("event", pa.string()),  # added, waiting, active, completed, failed, ..., or "gap"
        pa.field("job_id", pa.string()),
        pa.field("job_name", pa.string()),  # from an `added` entry, else from the job hash
        pa.field("attempt", pa.int32()),  # ats (active) / atm (completed, failed) read from the job hash
        pa.field("prev", pa.string()),
        pa.field("failed_reason", pa.string()),
        pa.field("returnvalue_bytes", pa.int64()),  # size of the JSON return value (completed)
        pa.field("progress", pa.string()),  # JSON text of a progress entry's data
        pa.field("worker", pa.string()),  # the job hash's `pb` (processedBy) when it names a worker
        pa.field("extra", pa.string()),  # the entry's other fields, JSON object text (delay, count, ...)
        pa.field("job_timestamp", _UTC_MS),  # job hash timestamps, when the hash still existed at the read
        pa.field("job_processed_on", _UTC_MS),
        pa.field("job_finished_on", _UTC_MS),
        pa.field("data", pa.string()),  # JSON object of the selected `data` fields (--data-fields)
        pa.field("gap_from", pa.string()),  # gap rows: last id read before the hole
        pa.field("gap_to", pa.string()),  # gap rows: first id after it (the oldest id left in the stream)
        pa.field("lost_estimate", pa.int64()),  # gap rows: entries lost (null when Redis cannot tell)
        pa.field("parse_error", pa.string()),  # why an entry was odd (no event field, bad JSON, ...)
    ],
    metadata={b"sbqueue.history.schema": str(SCHEMA_VERSION).encode()},
)

#: The partition columns (from the path).
PARTITION_SCHEMA = pa.schema([pa.field("queue", pa.string()), pa.field("hour", pa.string())])
#: What readers see: the file columns plus the partition columns.
DATASET_SCHEMA = pa.unify_schemas([FILE_SCHEMA, PARTITION_SCHEMA])

_FILE = re.compile(r"part-([0-9]+)-([0-9]+)_([0-9]+)-([0-9]+)\.parquet")
_HOUR = re.compile(r"hour=([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2})")
STATUS_FILE = "_recorder.json"


def parse_id(stream_id: str) -> tuple[int, int]:
    """``"1733-2"`` -> ``(1733, 2)`` (``ValueError`` for anything else)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


def hour_of(ms: int) -> str:
    """The hour partition value of a time in epoch ms: ``"2026-12-04T22"`` (UTC)."""
    return _hour(int(ms) // 3_600_000)


@functools.lru_cache(maxsize=4096)
def _hour(hours: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(hours * 3600, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H")


def queue_dir(queue: str) -> str:
    return "queue=" + urllib.parse.quote(queue, safe="")


@dataclasses.dataclass(frozen=True)
class DataFile:
    """A data file of the dataset and the stream id range its name says it covers."""

    path: str
    queue: str
    hour: str
    first: tuple[int, int]
    last: tuple[int, int]


def open_fs(path: Any, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, root path)`` for a local folder or an fsspec URL (``s3://bucket/history``);
    ``storage_options`` go to the filesystem (e.g. ``{"endpoint_url": ...}`` for s3fs)."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - the history extra installs it
        raise ConfigurationError("the history dataset needs fsspec: pip install 'sbqueue[history]'") from None
    text = str(path)
    try:
        fs, root = fsspec.core.url_to_fs(text, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise ConfigurationError(f"cannot open history path {text!r}: {exc}") from exc
    return fs, root.rstrip("/") or "/"


def is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


class Store:
    """Listing and atomic writes of a dataset rooted at ``root`` on ``fs``."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root
        self.foreign: set[str] = set()  # names seen that are not ours (reported, never read)

    def _ls(self, path: str) -> tuple[list[str], list[str]]:
        """(folders, files) directly under ``path``; nothing when it does not exist."""
        try:
            if is_local(self.fs):
                entries = self.fs.ls(path, detail=True)
            else:
                self.fs.invalidate_cache(path)
                entries = self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        dirs: list[str] = []
        files: list[str] = []
        for entry in entries:
            name = entry["name"].rstrip("/")
            if name == path.rstrip("/"):
                continue
            (dirs if entry["type"] == "directory" else files).append(name)
        return sorted(dirs), sorted(files)

    def _foreign(self, paths: list[str]) -> None:
        for path in paths:
            if not path.rsplit("/", 1)[-1].startswith(("_", ".")):
                self.foreign.add(path)

    def queues(self) -> list[str]:
        """The queues that have a folder in the dataset."""
        dirs, files = self._ls(self.root)
        self._foreign(files + [d for d in dirs if not d.rsplit("/", 1)[-1].startswith("queue=")])
        return [urllib.parse.unquote(d.rsplit("/", 1)[-1][len("queue="):]) for d in dirs
                if d.rsplit("/", 1)[-1].startswith("queue=")]

    def hours(self, queue: str) -> list[str]:
        """The hour partitions of a queue, oldest first."""
        dirs, files = self._ls(f"{self.root}/{queue_dir(queue)}")
        out = []
        for path in dirs:
            m = _HOUR.fullmatch(path.rsplit("/", 1)[-1])
            if m:
                out.append(m.group(1))
            else:
                self._foreign([path])
        self._foreign(files)
        return out

    def files(self, queue: str, hour: str, *, covered: bool = False) -> list[DataFile]:
        """The data files of one partition ordered by range; ``covered=True`` also returns the files whose
        range lies inside another's (duplicates left by an interrupted compaction)."""
        dirs, files = self._ls(f"{self.root}/{queue_dir(queue)}/hour={hour}")
        self._foreign(dirs)
        found = []
        for path in files:
            m = _FILE.fullmatch(path.rsplit("/", 1)[-1])
            if not m:
                self._foreign([path])
                continue
            g = [int(x) for x in m.groups()]
            found.append(DataFile(path, queue, hour, (g[0], g[1]), (g[2], g[3])))
        found.sort(key=lambda f: (f.first, (-f.last[0], -f.last[1])))
        if covered:
            return found
        out: list[DataFile] = []
        for f in found:  # sorted by first, widest first: a file inside the previous kept one is covered
            if out and f.last <= out[-1].last:
                continue
            out.append(f)
        return out

    def covered(self, queue: str, hour: str) -> list[DataFile]:
        keep = {f.path for f in self.files(queue, hour)}
        return [f for f in self.files(queue, hour, covered=True) if f.path not in keep]

    def last_id(self, queue: str) -> tuple[int, int] | None:
        """The highest stream id recorded for ``queue`` (from the newest hour's file names), or None."""
        for hour in reversed(self.hours(queue)):
            files = self.files(queue, hour)
            if files:
                return max(f.last for f in files)
        return None

    def iter_files(self, queue: str, first_hour: str | None = None, last_hour: str | None = None) -> Iterator[DataFile]:
        for hour in self.hours(queue):
            if (first_hour is None or hour >= first_hour) and (last_hour is None or hour <= last_hour):
                yield from self.files(queue, hour)

    def path_for(self, queue: str, hour: str, first: tuple[int, int], last: tuple[int, int]) -> str:
        return f"{self.root}/{queue_dir(queue)}/hour={hour}/part-{format_id(first)}_{format_id(last)}.parquet"

    def write_table(self, table: pa.Table, path: str) -> None:
        """Write ``table`` to ``path`` so that readers see the whole file or nothing: a temporary name and a
        rename on local disks; object stores publish an object only when its upload completes."""
        import pyarrow.parquet as pq

        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        target = path
        if is_local(self.fs):
            target = f"{parent}/.tmp-{uuid.uuid4().hex}.parquet"
        with self.fs.open(target, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", row_group_size=256_000)
        if target != path:
            self.fs.mv(target, path)

    def write_text(self, name: str, text: str) -> None:
        path = f"{self.root}/{name}"
        target = f"{self.root}/.tmp-{uuid.uuid4().hex}" if is_local(self.fs) else path
        self.fs.makedirs(self.root, exist_ok=True)
        with self.fs.open(target, "w") as fh:
            fh.write(text)
        if target != path:
            self.fs.mv(target, path)
