"""asyncio task helpers of the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def cancel_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel and wait for ``tasks``. A cancel that lands just as a redis-py call completes can be
    swallowed (the task then sleeps on, e.g. 30 s in the stalled loop): cancel again until done."""
    for task in tasks:
        task.cancel()
    pending = set(tasks)
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=0.05)
        for task in pending:
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" noise
