"""Register sbqueue's Lua scripts on a client (EVALSHA, reloaded on NOSCRIPT, pipeline-aware).

Plain sync and asyncio clients take a lean direct path (:meth:`ScriptRunner._direct`,
:meth:`ScriptRunner._adirect`): the command is packed once by hiredis and sent on a pooled connection,
skipping redis-py's per-argument encoding and command layers — for a worker's finish_and_fetch call with
~100 arguments that is most of the client's time. :meth:`ScriptRunner.batch` sends many calls the same way
in one round trip (``add_bulk``). On Redis Cluster, and for calls queued on a pipeline,
redis-py's ``Script`` objects route and pack each call (a cluster pipeline goes through
:func:`sbqueue.connection.cluster.pipeline_script`).
"""

from __future__ import annotations

import os
import select
import time
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from sbqueue._core.keys import QueueKeys
from sbqueue._core.scripts import SPECS, source
from sbqueue.connection import cluster as _cluster

try:  # hiredis comes with redis[hiredis], a core dependency; without it redis-py's packer does the job
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - exercised only on installs without hiredis
    _hiredis_pack = None  # type: ignore[assignment]

_registry: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def scripts_for(client: Any) -> dict[str, Any]:
    """The script objects of ``client``, registered once per client."""
    found = _registry.get(client)
    if found is None:
        found = {name: client.register_script(source(name)) for name in SPECS}
        _registry[client] = found
    return found


def _pack(conn: Any, *parts: Any) -> list[bytes]:
    """One command as a list of byte chunks, ready for ``send_packed_command`` (sync and asyncio)."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(parts)]
    return list(conn.pack_command(*parts))


def _spin_budget() -> float:
    raw = os.environ.get("SBQUEUE_SPIN_US", "100")
    try:
        return max(float(raw), 0.0) / 1e6
    except ValueError:
        raise ValueError(f"SBQUEUE_SPIN_US must be a number of microseconds, got {raw!r}") from None


#: How long a sync script call busy-waits for its reply before sleeping in ``recv`` (seconds). A Redis on
#: the same host answers in ~20-60 us, and waking a sleeping thread costs about as much again (idle-state
#: exit, on virtual machines especially): a short bounded spin makes one-by-one calls ~1.5x faster. A runner
#: whose replies keep taking longer than this (a remote Redis) stops spinning. ``SBQUEUE_SPIN_US=0`` turns
#: it off.
SPIN_S = _spin_budget()
_HAS_POLL = hasattr(select, "poll")  # not on Windows: no spin there
_MISSES_BEFORE_BACKOFF = 8  # spins in a row that timed out before the runner stops spinning for a while
_BACKOFF_CALLS = 256  # calls made without spinning before trying again


class ScriptRunner:
    """Calls scripts by name with a queue's standard KEYS."""

    def __init__(self, client: Any, keys: QueueKeys) -> None:
        self._scripts = scripts_for(client)
        self._keys = keys.script_keys
        # plain sync and asyncio clients take the lean path; cluster clients go through redis-py
        self._pool = client.connection_pool if isinstance(client, redis.Redis) else None
        self._apool = client.connection_pool if isinstance(client, redis.asyncio.Redis) else None
        self._misses = 0  # consecutive spins that ended without a reply
        self._skip = 0  # calls left to make without spinning

    def __call__(self, name: str, args: Sequence[Any], client: Any = None) -> Any:
        spec = SPECS[name]
        if len(args) < len(spec.argv):
            raise TypeError(f"script {name} needs ARGV {spec.argv}, got {len(args)} values")
        if client is not None and _cluster.is_cluster_pipeline(client):
            return _cluster.pipeline_script(client, self._scripts[name], self._keys, args)
        if client is None:
            if self._pool is not None:
                return self._direct(self._scripts[name], args)
            if self._apool is not None:
                return self._adirect(self._scripts[name], args)
        return self._scripts[name](keys=self._keys, args=args, client=client)

    @property
    def lean(self) -> bool:
        """Whether :meth:`batch` can be used: a plain sync or asyncio client (not Cluster)."""
        return self._pool is not None or self._apool is not None

    def batch(self, name: str, calls: Sequence[Sequence[Any]], then: Sequence[Any] = ()) -> Any:
        """Several calls of one script in one round trip on the lean path (only when :attr:`lean`), followed by
        the command ``then`` if given (``WAIT`` after adds, on the same connection). Returns the replies in order,
        ``then``'s last; an asyncio client returns an awaitable. As a pipeline would, it reads every reply before
        raising the first error reply, so the connection stays in step; calls refused with NOSCRIPT (never run)
        are sent again once the script is loaded.
        """
        spec = SPECS[name]
        for args in calls:
            if len(args) < len(spec.argv):
                raise TypeError(f"script {name} needs ARGV {spec.argv}, got {len(args)} values")
        script = self._scripts[name]
        packed = [_hiredis_pack(("EVALSHA", script.sha, len(self._keys), *self._keys, *args))
                  if _hiredis_pack is not None else None for args in calls]  # fmt: skip
        if self._pool is not None:
            return self._batch(script, calls, packed, then)
        return self._abatch(script, calls, packed, then)

    def _packed(self, conn: Any, script: Any, calls: Sequence[Sequence[Any]], packed: list[Any],
                indexes: Sequence[int], then: Sequence[Any]) -> list[bytes]:  # fmt: skip
        out: list[bytes] = []
        for i in indexes:
            out += [packed[i]] if packed[i] is not None else _pack(conn, "EVALSHA", script.sha, len(self._keys),
                                                                   *self._keys, *calls[i])  # fmt: skip
        return out + (_pack(conn, *then) if then else [])

    def _batch(self, script: Any, calls: Sequence[Sequence[Any]], packed: list[Any], then: Sequence[Any]) -> Any:
        pool = self._pool
        assert pool is not None
        conn = pool.get_connection()
        try:
            pending = list(range(len(calls)))
            replies: list[Any] = [None] * len(calls)
            tail: Any = None
            while True:
                conn.send_packed_command(self._packed(conn, script, calls, packed, pending, then))
                for i in pending:
                    replies[i] = _reply(conn)
                if then:
                    tail = _reply(conn)
                pending = [i for i in pending if isinstance(replies[i], redis.exceptions.NoScriptError)]
                if not pending:  # else: load the script, send those again (and ``then``: WAIT covers them too)
                    break
                conn.send_packed_command(_pack(conn, "SCRIPT", "LOAD", script.script))
                conn.read_response()
        except BaseException:
            conn.disconnect()  # replies may be unread: never hand it to the next caller
            raise
        finally:
            pool.release(conn)
        return _raise_first_error(replies + ([tail] if then else []))

    async def _abatch(self, script: Any, calls: Sequence[Sequence[Any]], packed: list[Any],
                      then: Sequence[Any]) -> Any:  # fmt: skip
        pool = self._apool
        assert pool is not None
        conn = await pool.get_connection()
        try:
            pending = list(range(len(calls)))
            replies: list[Any] = [None] * len(calls)
            tail: Any = None
            while True:
                await conn.send_packed_command(self._packed(conn, script, calls, packed, pending, then),
                                               check_health=False)  # fmt: skip
                for i in pending:
                    replies[i] = await _areply(conn)
                if then:
                    tail = await _areply(conn)
                pending = [i for i in pending if isinstance(replies[i], redis.exceptions.NoScriptError)]
                if not pending:
                    break
                await conn.send_packed_command(_pack(conn, "SCRIPT", "LOAD", script.script), check_health=False)
                await conn.read_response()
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        return _raise_first_error(replies + ([tail] if then else []))

    def _direct(self, script: Any, args: Sequence[Any]) -> Any:
        """EVALSHA on a pooled connection, without redis-py's command layers.

        Deliberately no automatic retry: the scripts write, and replaying a write whose reply was lost
        could, e.g., add a job twice. A lost connection raises ``redis.ConnectionError`` to the caller.
        """
        pool = self._pool
        assert pool is not None
        conn = pool.get_connection()
        try:
            try:
                conn.send_packed_command(_pack(conn, "EVALSHA", script.sha, len(self._keys), *self._keys, *args))
                self._spin(conn)
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                # the server lost its script cache (restart, SCRIPT FLUSH): load it and run once more
                conn.send_packed_command(_pack(conn, "SCRIPT", "LOAD", script.script))
                conn.read_response()
                conn.send_packed_command(_pack(conn, "EVALSHA", script.sha, len(self._keys), *self._keys, *args))
                return conn.read_response()
        except redis.ResponseError:
            raise  # the reply was read: the connection is in step
        except BaseException:
            # lost, or interrupted (KeyboardInterrupt) with the reply unread: never hand it to the next caller
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _spin(self, conn: Any) -> None:
        """Busy-wait (at most :data:`SPIN_S`) until the reply is readable; see :data:`SPIN_S`."""
        sock = getattr(conn, "_sock", None)
        if sock is None or SPIN_S <= 0 or not _HAS_POLL:
            return
        if self._skip:
            self._skip -= 1
            return
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        deadline = time.perf_counter() + SPIN_S
        while not poller.poll(0):
            os.sched_yield()  # if Redis shares this CPU, let it run
            if time.perf_counter() > deadline:
                self._misses += 1
                if self._misses >= _MISSES_BEFORE_BACKOFF:
                    self._misses, self._skip = 0, _BACKOFF_CALLS
                return
        self._misses = 0

    async def _adirect(self, script: Any, args: Sequence[Any]) -> Any:
        """The asyncio twin of :meth:`_direct` (same no-retry rule)."""
        pool = self._apool
        assert pool is not None
        conn = await pool.get_connection()
        try:
            try:
                packed = _pack(conn, "EVALSHA", script.sha, len(self._keys), *self._keys, *args)
                await conn.send_packed_command(packed, check_health=False)
                return await conn.read_response()
            except redis.exceptions.NoScriptError:
                await conn.send_packed_command(_pack(conn, "SCRIPT", "LOAD", script.script), check_health=False)
                await conn.read_response()
                await conn.send_packed_command(packed, check_health=False)
                return await conn.read_response()
        except redis.ResponseError:
            raise  # the reply was read: the connection is in step
        except BaseException:
            # a lost connection, or a cancelled call whose reply may still arrive: the connection's
            # stream is no longer in step, so it must not go back to the pool as is
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)


def _reply(conn: Any) -> Any:
    try:
        return conn.read_response()
    except redis.ResponseError as exc:  # an error reply: the stream is in step, keep reading
        return exc


async def _areply(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except redis.ResponseError as exc:
        return exc


def _raise_first_error(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies
