"""Processors for the interop suite's sbqueue CLI worker subprocesses.

The CLI imports them by path (``python -m sbqueue worker Q tests.interop.py_processors:<fn>``), so the
subprocess runs with cwd = the repository root.
"""

from __future__ import annotations

import time
from typing import Any

#: progress a hanging job reports once its processor is running (the test waits for it before kill -9)
HANGING = "hanging"


def hang(job: Any) -> None:
    """Report :data:`HANGING` as progress, then never finish in any reasonable time (the test kills -9)."""
    job.update_progress(HANGING)
    time.sleep(3600)


def echo(job: Any) -> Any:
    """Return the job's data."""
    return job.data
