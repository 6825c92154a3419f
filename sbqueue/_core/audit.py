"""The audit trail's record, pure: where it lives, what an entry holds, how it is encoded and read back.

Every change an operator makes through sbqueue — from a runbook, a widget or the command line — appends one
entry to the capped stream ``<prefix>:sbqueue:audit``: the action, the queue, how many jobs and which (the
first :data:`MAX_IDS`), the parameters, dry run or applied, the result, and who (OS user, host, process, the
runbook/widget/command and the notebook). Entries are flat string fields, so any Redis client can read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: the stream holds about this many entries (XADD MAXLEN ~): months of operator actions, a few MB at most
MAX_LEN = 10_000
#: job ids kept per entry; ``count`` still says how many jobs the action touched
MAX_IDS = 50
#: fields of an entry, in order (``ts`` is the stream id's time)
FIELDS = ("action", "queue", "mode", "count", "ids", "params", "result", "source", "notebook", "user", "host",
          "pid")  # fmt: skip
MODES = ("applied", "dry-run")


def key(prefix: str) -> str:
    """The stream of prefix ``prefix``: ``<prefix>:sbqueue:audit``."""
    return f"{prefix}:sbqueue:audit"


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"), sort_keys=True)


def encode(
    action: str,
    queue: str,
    *,
    mode: str,
    count: int,
    ids: Sequence[str],
    params: Mapping[str, Any],
    result: str,
    who: Mapping[str, Any],
) -> dict[str, str]:
    """One entry's fields (all strings)."""
    fields = {
        "action": action, "queue": queue, "mode": mode, "count": str(int(count)),
        "ids": _json([str(i) for i in list(ids)[:MAX_IDS]]), "params": _json(dict(params)), "result": result,
    }  # fmt: skip
    fields.update({name: str(who.get(name) or "") for name in ("source", "notebook", "user", "host", "pid")})
    return fields


def decode(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """A stream entry as a row: ``ts`` (epoch ms), parsed ``ids``/``params``, ``count``/``pid`` as numbers.
    A field a buggy peer garbled is kept as text (or None), never an exception."""
    row: dict[str, Any] = {name: fields.get(name) or None for name in FIELDS}
    row["id"] = entry_id
    try:
        row["ts"] = int(str(entry_id).split("-", 1)[0])
    except ValueError:
        row["ts"] = None
    for name in ("count", "pid"):
        try:
            row[name] = int(row[name]) if row[name] is not None else None
        except ValueError:
            row[name] = None
    for name, empty in (("ids", []), ("params", {})):
        try:
            row[name] = json.loads(row[name]) if row[name] else empty
        except ValueError:
            pass  # kept as the text that was there
    return row
