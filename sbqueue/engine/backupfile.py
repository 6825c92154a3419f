"""Read and write sbqueue backup files: gzip-compressed JSON lines (format: ``docs/backup-format.md``).

A file is a header line, body records, and a trailer line that counts the records: a file cut short (a
partial copy, a full disk) is detected by gzip's end-of-stream check or by the missing trailer. Files are
written to ``<path>.part`` and renamed into place only when complete.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sbqueue._core.backup import FORMAT, VERSION, check_record
from sbqueue._version import __version__
from sbqueue.errors import BackupError, BackupFormatError, BackupVersionError


def _dumps(rec: Any) -> str:
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


class BackupWriter:
    """Writes one backup file (a context manager; the file appears at ``path`` only on success)."""

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], *, level: int = 6) -> None:
        self.path = Path(path)
        self._part = self.path.with_name(self.path.name + ".part")
        try:
            self._fh: IO[str] | None = gzip.open(self._part, "wt", encoding="utf-8", compresslevel=level)  # noqa: SIM115
        except OSError as exc:
            raise BackupError(f"cannot write the backup file {os.fspath(path)!r}: {exc.strerror or exc}") from None
        self.records = 0
        self._fh.write(_dumps({"format": FORMAT, "version": VERSION, "sbqueue": __version__, **header}))

    def write(self, rec: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(_dumps(rec))
        self.records += 1

    def close(self, trailer: dict[str, Any] | None = None) -> None:
        """Write the trailer and move the file into place."""
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        fh.write(_dumps({"rec": "trailer", "records": self.records, **(trailer or {})}))
        fh.close()
        os.replace(self._part, self.path)

    def abort(self) -> None:
        """Drop the partial file (after an error)."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()
        self._part.unlink(missing_ok=True)

    def __enter__(self) -> BackupWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a backup file (raises :class:`BackupFormatError` / :class:`BackupVersionError`)."""
    with _open(path) as fh:
        return _header(fh, path)


def records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every body record, validated; raises on a foreign, newer, truncated or corrupt file. Because the
    trailer comes last, consume the whole iterator (e.g. a validation pass) before acting on records."""
    with _open(path) as fh:
        _header(fh, path)
        count = 0
        line_no = 1
        try:
            for line in fh:
                line_no += 1
                rec = _parse(line, line_no)
                if rec.get("rec") == "trailer":
                    if rec.get("records") != count:
                        raise BackupFormatError(
                            f"backup file {os.fspath(path)!r} is corrupt: the trailer counts {rec.get('records')} "
                            f"records, the file has {count}"
                        )
                    if fh.readline():
                        raise BackupFormatError(f"backup file {os.fspath(path)!r} has data after its trailer")
                    return
                count += 1
                yield check_record(rec, line_no)
        except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
            raise BackupFormatError(f"backup file {os.fspath(path)!r} is truncated or corrupt: {exc}") from None
    raise BackupFormatError(
        f"backup file {os.fspath(path)!r} is truncated: it ends after {count} records without its trailer"
    )


def _open(path: str | os.PathLike[str]) -> IO[str]:
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
    except FileNotFoundError:
        raise BackupFormatError(f"backup file {os.fspath(path)!r} does not exist") from None
    except OSError as exc:
        raise BackupError(f"cannot read the backup file {os.fspath(path)!r}: {exc.strerror or exc}") from None
    if magic != b"\x1f\x8b":
        raise BackupFormatError(
            f"{os.fspath(path)!r} is not an sbqueue backup (not a gzip file; expected {FORMAT} v{VERSION})"
        )
    return gzip.open(path, "rt", encoding="utf-8")


def _parse(line: str, line_no: int) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError:
        raise BackupFormatError(f"backup file is corrupt: line {line_no} is not JSON") from None
    if not isinstance(rec, dict):
        raise BackupFormatError(f"backup file is corrupt: line {line_no} is not a JSON object")
    return rec


def _header(fh: IO[str], path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        first = fh.readline()
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        raise BackupFormatError(f"backup file {os.fspath(path)!r} is truncated or corrupt: {exc}") from None
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupFormatError(f"{os.fspath(path)!r} is not an sbqueue backup (no {FORMAT!r} header line)")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise BackupFormatError(f"backup file {os.fspath(path)!r} has an invalid format version {version!r}")
    if version > VERSION:
        raise BackupVersionError(
            f"backup file {os.fspath(path)!r} uses format version {version}, written by sbqueue "
            f"{header.get('sbqueue', '?')}; this sbqueue {__version__} reads versions up to {VERSION}: upgrade sbqueue"
        )
    queues, prefix = header.get("queues"), header.get("prefix")
    if not (isinstance(queues, list) and all(isinstance(q, str) and q for q in queues) and isinstance(prefix, str)
            and prefix):  # fmt: skip
        raise BackupFormatError(f"backup file {os.fspath(path)!r} has a header without 'queues' and 'prefix'")
    return header
