"""Decode job hashes written by anyone (sbqueue, Node BullMQ, py-bullmq, a buggy peer).

Readers never crash on what they find: a field that does not parse keeps its raw text and the
problem is reported in ``parse_error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _json(raw: str | None, field: str, errors: list[str], default: Any = None) -> Any:
    if raw is None or raw == "":
        return default
    try:
        return _DECODE(raw)
    except ValueError as exc:
        errors.append(f"{field}: {exc}")
        return raw
    except RecursionError:  # valid JSON (a Node peer parses it) nested deeper than Python's parser goes
        errors.append(f"{field}: nested too deeply to parse")
        return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON.stringify never writes it)")


# one decoder for every read: json.loads(..., parse_constant=...) would build a new one per call (~3 us)
_DECODE = json.JSONDecoder(parse_constant=_no_constant).decode


def _int(raw: str | None, field: str, errors: list[str]) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        try:
            return int(float(raw))
        except (ValueError, OverflowError):  # "soon", "nan", "inf"
            errors.append(f"{field}: not a number: {raw[:40]!r}")
            return None


def decode_job_hash(raw: Mapping[str, str]) -> dict[str, Any]:
    """Turn a job hash into Python values (keys are :class:`sbqueue.Job` attribute names)."""
    errors: list[str] = []
    opts = _json(raw.get("opts"), "opts", errors, {})
    if not isinstance(opts, dict):
        errors.append("opts: not a JSON object")
        opts = {}
    stack = _json(raw.get("stacktrace"), "stacktrace", errors, [])
    if not isinstance(stack, list):
        stack = [str(stack)]
    parent = _json(raw.get("parent"), "parent", errors, None)
    atm = raw.get("atm", raw.get("attemptsMade"))
    return {
        "name": raw.get("name", ""),
        "data": _json(raw.get("data"), "data", errors, {}),
        "opts": opts,
        "progress": _json(raw.get("progress"), "progress", errors, 0),
        "returnvalue": _json(raw.get("returnvalue"), "returnvalue", errors, None),
        "failed_reason": raw.get("failedReason"),
        "stacktrace": stack,
        "timestamp": _int(raw.get("timestamp"), "timestamp", errors),
        "processed_on": _int(raw.get("processedOn"), "processedOn", errors),
        "finished_on": _int(raw.get("finishedOn"), "finishedOn", errors),
        "delay": _int(raw.get("delay"), "delay", errors) or 0,
        "priority": _int(raw.get("priority"), "priority", errors) or 0,
        "attempts_made": _int(atm, "atm", errors) or 0,
        "attempts_started": _int(raw.get("ats"), "ats", errors) or 0,
        "stalled_count": _int(raw.get("stc"), "stc", errors) or 0,
        "processed_by": raw.get("pb"),
        "parent_key": raw.get("parentKey"),
        "parent": parent,
        "scheduler_id": raw.get("rjk"),
        "dedup_id": raw.get("deid"),
        "deferred_failure": raw.get("defa"),
        "parse_error": "; ".join(errors) or None,
    }


def pairs_to_dict(flat: list[str]) -> dict[str, str]:
    """A flat HGETALL reply (as returned from Lua) -> dict."""
    return dict(zip(flat[0::2], flat[1::2], strict=False))
