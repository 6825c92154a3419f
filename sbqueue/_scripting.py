"""Register sbqueue's Lua scripts on a client (EVALSHA, reloaded on NOSCRIPT, pipeline-aware).

Works for sync and asyncio clients alike: redis-py's ``Script``/``AsyncScript`` objects do the
EVALSHA/NOSCRIPT dance; with an asyncio client, the call returns an awaitable.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

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

    def __call__(self, name: str, args: Sequence[Any], client: Any = None) -> Any:
        spec = SPECS[name]
        if len(args) < len(spec.argv):
            raise TypeError(f"script {name} needs ARGV {spec.argv}, got {len(args)} values")
        return self._scripts[name](keys=self._keys, args=args, client=client)
