"""A user's processor module for ``sbqueue worker QUEUE smoke_tasks:double`` (copied next to where the worker
starts, outside the checkout: the CLI imports it from its current directory)."""

from __future__ import annotations

from typing import Any


def double(job: Any) -> dict[str, Any]:
    return {"double": 2 * job.data["n"], "by": "smoke_tasks"}


def where(job: Any) -> int:
    """The pid of the process that ran the job (a worker child process with ``processes=n``)."""
    import os

    return os.getpid()
