"""What every inspection function shares: the client, batching, SCAN, time and count options, progress bars.

Nothing here writes to Redis. Batched job reads use one read-only Lua script per batch (:data:`HMGET_SCRIPT`,
only ``HMGET``) when the server lets us run scripts, and fall back to pipelines otherwise (e.g. an ACL user
without ``+eval``). Every batch is bounded (ids and bytes), so no single call keeps Redis busy for long.

On Redis Cluster, SCAN visits every master in turn, and a script runs on the master that owns the queue's
hash tag (a queue without one is read with pipelines, which route each key).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import math
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import redis

from sbqueue._core.keys import QueueKeys, _glob_escape
from sbqueue._core.options import validate_count
from sbqueue.connection import cluster as _cluster
from sbqueue.connection import cluster_nodes
from sbqueue.errors import InvalidOptionError


class Script:
    """A read-only Lua script run with EVALSHA (EVAL on NOSCRIPT, which also caches it)."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class ScriptsUnavailable(Exception):
    """Scripts are refused here (ACL without +eval/+evalsha, or scripting disabled): use pipelines."""


#: Read-only batched HMGET: ARGV = key prefix, n fields, fields..., ids... -> one reply per id
#: (the field values, or an error string when the key holds another type).
HMGET_SCRIPT = Script(
    "sbqueue.inspection:hmget",
    """-- sbqueue.inspection: read-only batched HMGET
local base = ARGV[1]
local nf = tonumber(ARGV[2])
local fields = {}
for i = 1, nf do fields[i] = ARGV[2 + i] end
local out = {}
for i = 3 + nf, #ARGV do
  local r = redis.pcall("HMGET", base .. ARGV[i], unpack(fields))
  if type(r) == "table" and r.err then r = r.err end
  out[#out + 1] = r
end
return out
""",
)

#: Read-only batched HMGET returning columns: ARGV = key prefix, n fields, fields..., ids... ->
#: {status, column 1, ..., column n}; status per id: 1 = hash read, 0 = no such hash (every field
#: missing), or the error text when the key holds another type.
HMGET_COLUMNS_SCRIPT = Script(
    "sbqueue.inspection:hmget-columns",
    """-- sbqueue.inspection: read-only batched HMGET, one array per field
local base = ARGV[1]
local nf = tonumber(ARGV[2])
local fields = {}
local out = {{}}
for i = 1, nf do
  fields[i] = ARGV[2 + i]
  out[i + 1] = {}
end
local status = out[1]
local row = 0
for i = 3 + nf, #ARGV do
  row = row + 1
  local r = redis.pcall("HMGET", base .. ARGV[i], unpack(fields))
  if type(r) == "table" and r.err then
    status[row] = r.err
    for j = 1, nf do out[j + 1][row] = false end
  else
    local found = 0
    for j = 1, nf do
      out[j + 1][row] = r[j]
      if r[j] then found = 1 end
    end
    status[row] = found
  end
end
return out
""",
)

#: Upper bounds of one batch: ids per call and (estimated) reply bytes per call.
MAX_BATCH = 1000
MAX_BATCH_BYTES = 4 * 2**20


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a big frame, then restore it.

    Parsing 100k JSON values allocates millions of objects; each allocation burst triggers collections
    that walk the whole heap (in a notebook, every frame already loaded) — about a third of jobs()'s time
    in a kernel holding a few large frames. What is built here holds no reference cycles, so reference
    counting frees it all the same; the collector runs again (as before) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a progress bar helps); False in scripts and tests."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class Context:
    """Connection + settings shared by the inspection functions."""

    def __init__(self, client: redis.Redis, prefix: str, *, progress: bool | None = None) -> None:
        self.client: Any = client  # Any: redis-py's reply types do not know about decode_responses
        self.prefix = prefix
        self.progress = in_notebook() if progress is None else bool(progress)
        #: None = not tried yet; False = scripts refused (NOPERM / disabled) -> pipelines
        self.use_script: bool | None = None

    # --- small helpers -----------------------------------------------------------------------------
    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, queue)

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    def pipe(self) -> Any:
        return self.client.pipeline(transaction=False)

    def bar(self, total: int | None, desc: str) -> Any:
        """A tqdm bar in notebooks, a no-op elsewhere."""
        if not self.progress:
            return _NoBar()
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            return _NoBar()
        return tqdm(total=total, desc=desc, leave=False)

    @property
    def server(self) -> Any:
        """The client for server-wide commands (INFO, SLOWLOG, CONFIG, LATENCY, MEMORY STATS): the client
        itself, or on Redis Cluster a client on its first master (by address)."""
        return cluster_nodes.primaries(self.client)[0]

    def nodes(self) -> list[Any]:
        """Where keys live: the client itself, or on Redis Cluster a client per master."""
        return cluster_nodes.primaries(self.client)

    def scan(self, match: str, *, count: int = 1000, type_: str | None = None) -> Iterator[list[str]]:
        """SCAN (never KEYS) yielding batches of key names (every master of a cluster, in turn)."""
        for node in self.nodes():
            cursor: Any = 0
            while True:
                cursor, batch = node.scan(cursor=cursor, match=match, count=count, _type=type_)
                if batch:
                    yield list(batch)
                if int(cursor) == 0:
                    break

    def prefix_pattern(self) -> str:
        return _glob_escape(self.prefix) + ":*"

    # --- scripts and batched hash reads ----------------------------------------------------------------
    def script(self, script: Script, args: Sequence[Any], *, node: Any = None) -> Any:
        """Run a read-only script (on ``node``, one of :meth:`nodes`, if given); raise
        :class:`ScriptsUnavailable` when this server/user refuses scripts."""
        if self.use_script is False or (node is None and _cluster.is_cluster(self.client)):
            raise ScriptsUnavailable(script.name)  # keyless scripts on a cluster need a node to run on
        client = self.client if node is None else node
        try:
            try:
                result = client.evalsha(script.sha, 0, *args)
            except redis.exceptions.NoScriptError:
                result = client.eval(script.source, 0, *args)
        except redis.exceptions.NoPermissionError:
            self.use_script = False
            raise ScriptsUnavailable(script.name) from None
        except redis.exceptions.AskError:  # MOVED/ASK: a cluster slot moved under us; pipelines follow it
            raise ScriptsUnavailable(script.name) from None
        except redis.ResponseError as exc:
            text = str(exc).lower()
            if "unknown command" in text or "disabled" in text or "noscript" in text:
                self.use_script = False
                raise ScriptsUnavailable(script.name) from None
            if "slot" in text or "non local key" in text:  # a cluster refused keys of several slots
                raise ScriptsUnavailable(script.name) from None
            raise
        self.use_script = True
        return result

    def hmget_many(self, base: str, ids: Sequence[str], fields: Sequence[str]) -> list[Any]:
        """``HMGET <base><id> fields...`` for each id: a list of values per id, or an error string."""
        if not ids:
            return []
        try:
            node = cluster_nodes.node_for_key(self.client, base)
            return list(self.script(HMGET_SCRIPT, [base, len(fields), *fields, *ids], node=node))
        except ScriptsUnavailable:
            pass
        pipe = self.pipe()
        for job_id in ids:
            pipe.hmget(base + job_id, list(fields))
        out = pipe.execute(raise_on_error=False)
        return [str(r) if isinstance(r, Exception) else r for r in out]

    def hmget_columns(self, base: str, ids: Sequence[str], fields: Sequence[str]) -> tuple[list[Any], list[list[Any]]]:
        """Like :meth:`hmget_many` but column-wise: ``(status per id, one value list per field)``.

        Status: 1 = read, 0 = no such hash, or an error text (the key holds another type).
        """
        if not ids:
            return [], [[] for _ in fields]
        try:
            node = cluster_nodes.node_for_key(self.client, base)
            reply = self.script(HMGET_COLUMNS_SCRIPT, [base, len(fields), *fields, *ids], node=node)
            return list(reply[0]), [list(col) for col in reply[1:]]
        except ScriptsUnavailable:
            pass
        rows = self.hmget_many(base, ids, fields)
        status: list[Any] = []
        clean: list[Any] = []
        blank = [None] * len(fields)
        for row in rows:
            if isinstance(row, list):
                status.append(1 if any(v is not None for v in row) else 0)
                clean.append(row)
            else:
                status.append(str(row))
                clean.append(blank)
        return status, [list(col) for col in zip(*clean, strict=True)]


class BatchSizer:
    """Adapts the batch size so one reply stays under :data:`MAX_BATCH_BYTES`."""

    def __init__(self, start: int = 250, maximum: int = MAX_BATCH) -> None:
        self.size = min(start, maximum)
        self.maximum = maximum

    def feed(self, rows: int, nbytes: int) -> None:
        if rows <= 0:
            return
        per_row = max(nbytes / rows, 1.0)
        self.size = int(max(10, min(self.maximum, MAX_BATCH_BYTES / per_row)))


def column_bytes(cols: Sequence[Sequence[Any]]) -> int:
    """Approximate payload size of column-wise replies (sum of value lengths; C-speed)."""
    return sum(sum(map(len, filter(None, col))) for col in cols)


def row_bytes(rows: Sequence[Any]) -> int:
    """Approximate payload size of HMGET replies (sum of value lengths)."""
    total = 0
    for row in rows:
        if isinstance(row, list):
            for value in row:
                if value is not None:
                    total += len(value)
        elif isinstance(row, str):
            total += len(row)
    return total


# --- time ------------------------------------------------------------------------------------------
def to_ms(value: Any, *, now_ms: int | None = None, option: str = "time") -> float | None:
    """Epoch ms from a datetime/Timestamp/ISO string/epoch-ms number; a ``timedelta`` counts back from now.

    Naive datetimes and strings are taken as UTC.
    """

    if value is None:
        return None
    if isinstance(value, (dt.timedelta, pd.Timedelta)):
        base = now_ms if now_ms is not None else time.time() * 1000
        try:
            return base - pd.Timedelta(value).total_seconds() * 1000
        except (ValueError, OverflowError):  # beyond pandas' ~292 years
            raise InvalidOptionError(f"{option}={value!r} is out of range", option=option) from None
    if isinstance(value, bool):
        raise InvalidOptionError(f"{option} must be a datetime, timedelta, ISO string or epoch ms", option=option)
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not math.isfinite(float(value)) or abs(float(value)) >= 2**53:
            raise InvalidOptionError(f"{option} must be finite epoch ms (below 2**53), got {value!r}", option=option)
        return float(value)
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidOptionError(
            f"{option} must be a datetime, timedelta, ISO string or epoch ms, got {value!r}", option=option
        ) from None
    if stamp is pd.NaT:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.value) / 1e6


# --- options ---------------------------------------------------------------------------------------
def count_option(value: Any, option: str, minimum: int, *, none_ok: bool = False) -> Any:
    """A user-given count: an int >= ``minimum`` (None when ``none_ok``), else :class:`InvalidOptionError`."""
    return None if value is None and none_ok else validate_count(value, option, minimum=minimum)
