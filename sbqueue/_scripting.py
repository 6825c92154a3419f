"""Register sbqueue's Lua scripts on a client (EVALSHA, reloaded on NOSCRIPT, pipeline-aware).

Works for sync and asyncio clients alike: redis-py's ``Script``/``AsyncScript`` objects do the
EVALSHA/NOSCRIPT dance; with an asyncio client, the call returns an awaitable. On Redis Cluster the same
objects route each call by its KEYS (one slot per queue); a call queued on a cluster pipeline goes through
:func:`sbqueue._cluster.pipeline_script`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import redis

from . import _cluster
from ._core.keys import QueueKeys
from ._core.scripts import SPECS, source

_registry: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def scripts_for(client: Any) -> dict[str, Any]:
    """The script objects of ``client``, registered once per client."""
    found = _registry.get(client)
    if found is None:
        found = {name: client.register_script(source(name)) for name in SPECS}
        _registry[client] = found
    return found


class ScriptRunner:
    """Calls scripts by name with a queue's standard KEYS."""

    def __init__(self, client: Any, keys: QueueKeys) -> None:
        self._scripts = scripts_for(client)
        self._keys = keys.script_keys
        # plain sync clients take a lean path (see _direct); asyncio and cluster clients go through redis-py
        self._pool = client.connection_pool if isinstance(client, redis.Redis) else None

    def __call__(self, name: str, args: Sequence[Any], client: Any = None) -> Any:
        spec = SPECS[name]
        if len(args) < len(spec.argv):
            raise TypeError(f"script {name} needs ARGV {spec.argv}, got {len(args)} values")
        if client is not None and _cluster.is_cluster_pipeline(client):
            return _cluster.pipeline_script(client, self._scripts[name], self._keys, args)
        if client is None and self._pool is not None:
            return self._direct(self._scripts[name], args)
        return self._scripts[name](keys=self._keys, args=args, client=client)

    def _direct(self, script: Any, args: Sequence[Any]) -> Any:
        """EVALSHA on a pooled connection, without redis-py's command layers (about 40 us per call less).

        Deliberately no automatic retry: the scripts write, and replaying a write whose reply was lost
        could, e.g., add a job twice. A lost connection raises ``redis.ConnectionError`` to the caller.
        """
        pool = self._pool
        assert pool is not None
        conn = pool.get_connection()
        try:
            try:
                conn.send_command("EVALSHA", script.sha, len(self._keys), *self._keys, *args)
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                # the server lost its script cache (restart, SCRIPT FLUSH): load it and run once more
                conn.send_command("SCRIPT", "LOAD", script.script)
                conn.read_response()
                conn.send_command("EVALSHA", script.sha, len(self._keys), *self._keys, *args)
                return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
