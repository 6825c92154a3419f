"""sbqueue — run and troubleshoot Redis job queues (BullMQ 6 layout) from Python and Jupyter.

Quick start::

    import sbqueue
    q = sbqueue.Queue("emails")              # embedded Redis unless SBQUEUE_REDIS_URL/REDIS_URL is set
    q.add("send", {"to": "a@example.com"})
    q.get_job_counts()
"""

from typing import TYPE_CHECKING

from sbqueue import _public_paths
from sbqueue._core.flow import FlowJob
from sbqueue._core.states import JobState
from sbqueue._version import __version__
from sbqueue.connection import connect, mask_url
from sbqueue.engine._async.flow import AsyncFlowProducer
from sbqueue.engine._async.queue import AsyncQueue
from sbqueue.engine._sync.flow import FlowProducer
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.events import QueueEvents
from sbqueue.engine.events_producer import AsyncQueueEventsProducer, QueueEventsProducer
from sbqueue.engine.job import Cancellation, Job, JobNode
from sbqueue.engine.telemetry import OtelTelemetry, Telemetry
from sbqueue.engine.worker import Worker
from sbqueue.errors import (
    BackupError,
    BackupFormatError,
    BackupVersionError,
    ClusterKeyError,
    ConfigurationError,
    ConnectionFailedError,
    DataError,
    DelayedError,
    InvalidFlowError,
    InvalidJobIdError,
    InvalidOptionError,
    InvalidQueueNameError,
    InvalidStateError,
    JobCancelledError,
    JobControl,
    JobFailedError,
    JobLockedError,
    JobNotFoundError,
    JobStateError,
    LockMismatchError,
    ParentNotFoundError,
    QueueExistsError,
    QueueNotFoundError,
    RateLimitError,
    RedisFullError,
    RedisVersionError,
    ReplicationTimeoutError,
    SbqueueError,
    ScriptError,
    UnknownOptionError,
    UnrecoverableError,
    WaitingChildrenError,
    WaitTimeoutError,
    WorkerProcessError,
)

if TYPE_CHECKING:  # type checkers and IDEs see the real classes; at run time they load on first use
    from sbqueue.history import History, Recorder
    from sbqueue.inspection import Inspector

#: imported on first use: ``History``/``Recorder`` need the ``history`` extra (pyarrow, fsspec), and
#: ``Inspector`` brings pandas (~0.4 s), which producers, workers and process-pool children never need
_LAZY = {"History": "sbqueue.history", "Recorder": "sbqueue.history", "Inspector": "sbqueue.inspection"}
_public_paths.install()  # from sbqueue import runbook, charts, widgets, … (see sbqueue/_public_paths.py)


def __getattr__(name: str) -> object:
    """``sbqueue.Inspector``, ``sbqueue.History``/``sbqueue.Recorder`` and the public module paths load on first use."""
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _public_paths.ALIASES or name in ("cli", "history"):
        return importlib.import_module(f"sbqueue.{name}")
    raise AttributeError(f"module 'sbqueue' has no attribute {name!r}")


__all__ = [
    "AsyncFlowProducer",
    "AsyncQueue",
    "AsyncQueueEventsProducer",
    "BackupError",
    "BackupFormatError",
    "BackupVersionError",
    "Cancellation",
    "ClusterKeyError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DataError",
    "DelayedError",
    "FlowJob",
    "FlowProducer",
    "History",
    "Inspector",
    "InvalidFlowError",
    "InvalidJobIdError",
    "InvalidOptionError",
    "InvalidQueueNameError",
    "InvalidStateError",
    "Job",
    "JobCancelledError",
    "JobControl",
    "JobFailedError",
    "JobLockedError",
    "JobNode",
    "JobNotFoundError",
    "JobState",
    "JobStateError",
    "LockMismatchError",
    "OtelTelemetry",
    "ParentNotFoundError",
    "Queue",
    "QueueEvents",
    "QueueEventsProducer",
    "QueueExistsError",
    "QueueNotFoundError",
    "RateLimitError",
    "Recorder",
    "RedisFullError",
    "RedisVersionError",
    "ReplicationTimeoutError",
    "SbqueueError",
    "ScriptError",
    "Telemetry",
    "UnknownOptionError",
    "UnrecoverableError",
    "WaitTimeoutError",
    "WaitingChildrenError",
    "Worker",
    "WorkerProcessError",
    "__version__",
    "connect",
    "mask_url",
]
