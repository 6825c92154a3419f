"""audit() — the operators' actions recorded in ``<prefix>:sbqueue:audit`` (:mod:`sbqueue._core.audit`), newest
first. Only reads (XREVRANGE): an inspector with a read-only ACL sees the trail and never adds to it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import redis

from sbqueue._core import audit as _record
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection._context import Context, to_ms
from sbqueue.inspection.schemas import from_records

_PAGE = 1_000  # entries per XREVRANGE: each call stays short however long the trail


def audit(ctx: Context, since: Any = None, until: Any = None, *, action: str | None = None,
          queue: str | None = None, limit: int = 1_000) -> pd.DataFrame:  # fmt: skip
    """See :meth:`sbqueue.inspection.Inspector.audit`."""
    for name, value in (("action", action), ("queue", queue)):
        if value is not None and not isinstance(value, str):
            raise InvalidOptionError(f"{name} must be a str or None, got {value!r}", option=name)
    low = to_ms(since, option="since")
    high = to_ms(until, option="until")
    start = "-" if low is None else str(int(low))
    end = "+" if high is None else str(int(high))
    rows: list[dict[str, Any]] = []
    try:
        while len(rows) < limit:
            page = ctx.client.xrevrange(_record.key(ctx.prefix), max=end, min=start, count=_PAGE)
            for entry_id, fields in page:
                row = _record.decode(entry_id, fields)
                if (action is None or row["action"] == action) and (queue is None or row["queue"] == queue):
                    rows.append(row)
                    if len(rows) >= limit:
                        break
            if len(page) < _PAGE:
                break
            end = "(" + page[-1][0]
    except redis.ResponseError as exc:  # the key holds another type (a peer's garbage): nothing to show
        if "WRONGTYPE" not in str(exc):
            raise
    return from_records("audit", rows)
