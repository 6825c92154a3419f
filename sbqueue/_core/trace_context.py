"""The trace context a job carries in its stored ``opts``: BullMQ's ``tm`` and ``omc`` fields, and the rules for them.

``tm`` ("telemetry metadata") is the propagation carrier of the span that added the job, as JSON text: bullmq-otel
writes ``JSON.stringify`` of what ``propagation.inject`` put in an empty object, e.g.
``{"traceparent":"00-<trace id>-<span id>-01"}``. ``omc`` ("omit context") true asks that the adding span's context
not be written into the job. Callers may set both through the job option ``telemetry={"metadata": ...,
"omit_context": ...}`` (BullMQ's ``opts.telemetry``). Pure functions, no OpenTelemetry here: which ``tm``/``omc``
a job stores, given what the caller passed and the carrier of the add span, by BullMQ 6.7's rules for ``add``
(the span's context replaces a caller's metadata unless ``omc``), and for ``addBulk`` and flow nodes (a caller's
metadata wins; the span's context fills in unless ``omc``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sbqueue._core.options import dumps
from sbqueue.errors import InvalidOptionError

_Job = TypeVar("_Job")

#: keys accepted in the job option ``telemetry`` (snake_case and BullMQ's camelCase)
_KEYS = {"metadata": "tm", "omit_context": "omc", "omitContext": "omc"}


def validate_telemetry(value: Any) -> dict[str, Any]:
    """The job option ``telemetry={"metadata": str, "omit_context": bool}`` -> the stored ``{"tm", "omc"}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not set(value) <= set(_KEYS):
        raise InvalidOptionError(
            f"telemetry must be a dict with 'metadata' (str) and/or 'omit_context' (bool), got {value!r}",
            option="telemetry",
        )
    stored: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        if _KEYS[key] == "tm" and not isinstance(item, str):
            raise InvalidOptionError(f"telemetry metadata must be a string, got {item!r}", option="telemetry")
        if _KEYS[key] == "omc" and not isinstance(item, bool):
            raise InvalidOptionError(f"telemetry omit_context must be True or False, got {item!r}", option="telemetry")
        stored[_KEYS[key]] = item
    return stored


def for_add(stored: Mapping[str, Any], carrier: str) -> dict[str, Any] | None:
    """``Queue.add``'s rule: unless ``omc``, the add span's carrier is the job's ``tm`` (a caller's metadata
    and an explicit ``omc: false`` are dropped). None when the options stay as they are."""
    if stored.get("omc"):
        return None
    out = {k: v for k, v in stored.items() if k != "omc"}
    out["tm"] = carrier
    return out


def for_bulk_or_flow(stored: Mapping[str, Any], carrier: str) -> dict[str, Any] | None:
    """``addBulk`` and flow nodes: a caller's ``tm`` wins, else the span's carrier unless ``omc``. BullMQ then
    stores ``{metadata, omitContext}`` whenever either is truthy — with ``omc`` and no metadata that is
    ``"tm": false`` (kept, so the stored opts match Node's byte for byte). None when nothing changes."""
    omit = stored.get("omc")
    metadata = stored.get("tm") or (not omit and carrier)
    if not metadata and not omit:
        return None
    out = dict(stored)
    out["tm"] = metadata
    if omit is None:
        out.pop("omc", None)
    return out


def stamped(job: _Job, rule: Callable[[Mapping[str, Any], str], dict[str, Any] | None], carrier: str) -> _Job:
    """A prepared job (``opts`` JSON and ``opts_dict``) with ``tm``/``omc`` set by ``rule`` (:func:`for_add` or
    :func:`for_bulk_or_flow`); the same object when the rule changes nothing."""
    opts = rule(job.opts_dict, carrier)  # type: ignore[attr-defined]
    if opts is None:
        return job
    return dataclasses.replace(job, opts=dumps(opts, "opts"), opts_dict=opts)  # type: ignore[type-var]


def carrier_of(opts: Mapping[str, Any]) -> dict[str, str] | None:
    """The propagation carrier stored in a job's opts (``tm``), or None when absent or unreadable (a worker then
    starts a new trace rather than failing the job)."""
    text = opts.get("tm")
    if not text or not isinstance(text, str):
        return None
    try:
        carrier = json.loads(text)
    except ValueError:
        return None
    if not isinstance(carrier, dict):
        return None
    return {str(k): v for k, v in carrier.items() if isinstance(v, str)}


def dumps_carrier(carrier: Mapping[str, str]) -> str:
    """The carrier as bullmq-otel writes it (``JSON.stringify``: no spaces)."""
    return dumps(dict(carrier), "tm")
