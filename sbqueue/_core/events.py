"""Events stream entries, decoded as Node's QueueEvents decodes them (pure: no I/O)."""

from __future__ import annotations

import json
from typing import Any

#: fields QueueEvents JSON-decodes, per event (as Node's QueueEvents does)
_JSON_FIELDS = {"progress": ("data",), "completed": ("returnvalue",)}


def decode_event(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry -> ``{"event", "id", ...fields}`` with JSON fields parsed and ``delay`` numeric."""
    out: dict[str, Any] = {"id": entry_id, **fields}
    for name in _JSON_FIELDS.get(fields.get("event", ""), ()):
        if name in out:
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                pass
    if fields.get("event") == "delayed" and "delay" in out:
        try:
            out["delay"] = int(float(out["delay"]))
        except ValueError:
            pass
    return out
