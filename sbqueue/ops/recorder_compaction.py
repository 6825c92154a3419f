"""Compaction of the history dataset: merge the small files the recorder writes into few large ones per hour.

The recorder writes a file per queue and hour at every flush, so a busy hour ends up as many small files. Once
an hour is over, runs of them are merged into files of up to ``target_rows`` rows: the merged file is written
first and the originals removed after, so a compaction interrupted in between leaves files covered by the
merged one, which the next compaction deletes. Readers never see a row twice (see
:meth:`sbqueue.inspection.history_store.Store.files`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from sbqueue.inspection.history_store import FILE_SCHEMA, Store, hour_of

log = logging.getLogger("sbqueue.history")


def compact(store: Store, target_rows: int, done: set[tuple[str, str]], moved_past: Callable[[str, str], bool]) -> int:
    """Compact every finished hour of ``store`` not in ``done``; returns the number of files removed.

    ``(queue, hour)`` is added to ``done`` once ``moved_past(queue, hour)`` says the recorder will not write
    there any more, so later compactions skip it.
    """
    import pyarrow.parquet as pq

    current = hour_of(int(time.time() * 1000))
    removed = 0
    for queue in store.queues():
        for hour in store.hours(queue):
            if (queue, hour) in done:
                continue  # finished and compacted by this process: nothing writes there any more
            for stale in store.covered(queue, hour):
                store.fs.rm(stale.path)
                removed += 1
            if hour >= current:
                continue
            files = store.files(queue, hour)
            group: list[Any] = []
            rows = 0
            for f in [*files, None]:
                n = 0
                if f is not None:
                    try:
                        with store.fs.open(f.path, "rb") as fh:
                            n = pq.ParquetFile(fh).metadata.num_rows
                    except (OSError, pa.ArrowInvalid) as exc:
                        log.error("compaction: skipping unreadable %s: %s", f.path, exc)
                        f = None
                if f is None or rows + n > target_rows:
                    if len(group) > 1:
                        removed += merge(store, group)
                    group, rows = [], 0
                if f is not None:
                    group.append(f)
                    rows += n
            if moved_past(queue, hour):
                done.add((queue, hour))  # the recorder has moved past that hour
    return removed


def merge(store: Store, group: list[Any]) -> int:
    """Write the rows of ``group`` (consecutive files of one queue and hour) as one file, then delete them."""
    import pyarrow.parquet as pq

    tables = []
    for f in group:
        with store.fs.open(f.path, "rb") as fh:
            tables.append(pq.read_table(fh, schema=FILE_SCHEMA))
    target = store.path_for(group[0].queue, group[0].hour, group[0].first, group[-1].last)
    store.write_table(pa.concat_tables(tables), target)
    for f in group:
        store.fs.rm(f.path)
    log.info("compacted %d files of %s/%s into %s", len(group), group[0].queue, group[0].hour, target)
    return len(group)
