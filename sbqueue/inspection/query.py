"""``query`` filters of jobs(): ``{column or "data.<path>": test}``, every entry must hold.

A test is a string (``re.search``; an invalid regex is matched literally; on the JSON columns ``data``,
``returnvalue``, ``progress`` and ``opts`` it searches the stored JSON text), a compiled pattern, a
list/tuple/set (membership), a callable (predicate; an exception counts as no match), None (value
missing) or any other value (equality). Dotted paths (``data.customer.id``, ``opts.backoff.type``,
``data.items.0``) reach into parsed JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sbqueue.errors import InvalidOptionError
from sbqueue.inspection.schemas import SCHEMAS

#: jobs() columns whose value is the raw hash field (so they can be filtered before decoding)
RAW_COLUMNS = {
    "name": "name", "failed_reason": "failedReason", "processed_by": "pb", "parent": "parentKey",
    "scheduler_id": "rjk", "dedup_id": "deid", "deferred_failure": "defa",
}  # fmt: skip
#: jobs() columns holding parsed JSON
JSON_COLUMNS = ("data", "returnvalue", "progress", "opts")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _test(spec: Any) -> Callable[[Any], bool]:
    if callable(spec) and not isinstance(spec, re.Pattern):

        def call(value: Any) -> bool:
            try:
                return bool(spec(value))
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                return False

        return call
    if isinstance(spec, (str, re.Pattern)):
        if isinstance(spec, str):
            try:
                rx = re.compile(spec)
            except re.error:
                rx = re.compile(re.escape(spec))
        else:
            rx = spec
        return lambda v: not _missing(v) and rx.search(_text(v)) is not None
    if spec is None:
        return _missing
    if isinstance(spec, (list, tuple, set, frozenset)):
        allowed = list(spec)
        return lambda v: not _missing(v) and any(v == a for a in allowed)
    return lambda v: not _missing(v) and v == spec


class Condition:
    """One ``query`` entry: a column (or ``data.a.b`` path) and a test."""

    def __init__(self, key: str, spec: Any) -> None:
        head, _, rest = key.partition(".")
        if key not in SCHEMAS["jobs"] and not (rest and head in JSON_COLUMNS):
            raise InvalidOptionError(
                f"query key {key!r} is not a jobs() column or a path like 'data.customer'", option="query"
            )
        self.key = key
        self.column = head if rest else key
        self.path = tuple(rest.split(".")) if rest else ()
        self.raw_field = RAW_COLUMNS.get(key) if not rest else None
        # a string pattern on a JSON column runs on the stored JSON text
        self.on_raw_json = not rest and key in JSON_COLUMNS and isinstance(spec, (str, re.Pattern))
        self.test = _test(spec)

    @property
    def early(self) -> bool:
        """True when the test can run on the narrow first read (or on the id alone)."""
        return self.raw_field is not None or self.column in ("id", "state")

    def value(self, obj: Any) -> Any:
        for part in self.path:
            if isinstance(obj, dict):
                obj = obj.get(part)
            elif isinstance(obj, list) and part.lstrip("-").isdigit() and -len(obj) <= int(part) < len(obj):
                obj = obj[int(part)]
            else:
                return None
        return obj


def compile_query(query: Mapping[str, Any] | None, name: Any = None) -> list[Condition]:
    conds = [Condition("name", name)] if name is not None else []
    if query is None:
        return conds
    if not isinstance(query, Mapping):
        raise InvalidOptionError(f"query must be a dict of column -> pattern/value, got {query!r}", option="query")
    return conds + [Condition(str(k), v) for k, v in query.items()]


def late_mask(df: pd.DataFrame, raw_json: dict[str, list[Any]], conds: Sequence[Condition]) -> np.ndarray:
    mask = np.ones(len(df), dtype=bool)
    for cond in conds:
        if cond.on_raw_json:
            values: Any = raw_json[cond.column]
        elif cond.path:
            values = [cond.value(v) for v in df[cond.column].tolist()]
        else:
            values = df[cond.column].tolist()
        mask &= np.fromiter((cond.test(v) for v in values), dtype=bool, count=len(df))
    return mask
