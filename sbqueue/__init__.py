"""sbqueue — run and troubleshoot Redis job queues (BullMQ 6 layout) from Python and Jupyter.

Quick start::

    import sbqueue
    q = sbqueue.Queue("emails")              # embedded Redis unless SBQUEUE_REDIS_URL/REDIS_URL is set
    q.add("send", {"to": "a@example.com"})
    q.get_job_counts()
"""

from ._async.queue import AsyncQueue
from ._core.states import JobState
from ._sync.queue import Queue
from ._version import __version__
from .connection import connect, mask_url
from .errors import (
    ClusterKeyError,
    ConfigurationError,
    ConnectionFailedError,
    DataError,
    DelayedError,
    InvalidJobIdError,
    InvalidOptionError,
    InvalidQueueNameError,
    InvalidStateError,
    JobControl,
    JobLockedError,
    JobNotFoundError,
    JobStateError,
    LockMismatchError,
    RateLimitError,
    RedisVersionError,
    SbqueueError,
    ScriptError,
    UnknownOptionError,
    UnrecoverableError,
)
from .events import QueueEvents
from .inspection import Inspector
from .job import Job
from .worker import Worker

__all__ = [
    "AsyncQueue",
    "ClusterKeyError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DataError",
    "DelayedError",
    "Inspector",
    "InvalidJobIdError",
    "InvalidOptionError",
    "InvalidQueueNameError",
    "InvalidStateError",
    "Job",
    "JobControl",
    "JobLockedError",
    "JobNotFoundError",
    "JobState",
    "JobStateError",
    "LockMismatchError",
    "Queue",
    "QueueEvents",
    "RateLimitError",
    "RedisVersionError",
    "SbqueueError",
    "ScriptError",
    "UnknownOptionError",
    "UnrecoverableError",
    "Worker",
    "__version__",
    "connect",
    "mask_url",
]
