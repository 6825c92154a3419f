"""The dead letters of a dead-letter queue (DLQ) as a DataFrame, with where each one comes from.

A dead letter is a job an sbqueue worker added to a DLQ when its source job failed for good; its source
metadata sits in ``opts.deadLetter`` (format: :mod:`sbqueue._core.dead_letters`). Jobs of the queue without
it (not letters) are left out. Read-only: one pipelined LRANGE/ZRANGE per state, then HMGET in batches.
"""

from __future__ import annotations

import pandas as pd

from sbqueue._core import dead_letters as _dead
from sbqueue.inspection._context import Context
from sbqueue.inspection.schemas import from_records

BATCH = 500


def dead_letters(ctx: Context, queue: str, limit: int | None = None) -> pd.DataFrame:
    """Every letter of ``queue`` (any state), newest dead-lettered first, at most ``limit``."""
    keys = ctx.keys(queue)
    pipe = ctx.pipe()
    for state, kind in _dead.LETTER_STATES:
        pipe.lrange(keys.key(state), 0, -1) if kind == "list" else pipe.zrange(keys.key(state), 0, -1)
    listed = pipe.execute()
    found = [(state, str(job_id)) for (state, _kind), ids in zip(_dead.LETTER_STATES, listed, strict=True)
             for job_id in ids]  # fmt: skip
    rows = []
    bar = ctx.bar(len(found), f"dead letters of {queue}")
    try:
        for start in range(0, len(found), BATCH):
            batch = found[start : start + BATCH]
            pipe = ctx.pipe()
            for _state, job_id in batch:
                pipe.hmget(keys.job(job_id), "name", "opts")
            for (state, job_id), (name, opts) in zip(batch, pipe.execute(), strict=True):
                row = _dead.letter_row(job_id, queue, state, name, opts)
                if row is not None:
                    rows.append(row)
            bar.update(len(batch))
    finally:
        bar.close()
    rows.sort(key=lambda row: (row["dead_lettered"] or 0, row["dead_letter_id"]), reverse=True)
    return from_records("dead_letters", rows[:limit] if limit else rows)
