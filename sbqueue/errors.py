"""sbqueue's exceptions, in one tree.

Library errors all derive from :class:`SbqueueError`::

    SbqueueError
    ├── ConfigurationError (ValueError)      bad connection URL, bad server settings
    ├── ConnectionFailedError (ConnectionError)  Redis unreachable / went away
    ├── RedisFullError                       Redis at maxmemory refuses writes (noeviction): runbook redis-memory
    ├── ReplicationTimeoutError              Queue(min_replicas=n): fewer replicas acknowledged an add in time
    ├── RedisVersionError                    Redis older than 6.2
    ├── ClusterKeyError                      queue keys would span slots on Redis Cluster
    ├── InvalidOptionError (ValueError)      a job/queue/worker option is invalid
    │   ├── UnknownOptionError (TypeError)   an option name that does not exist
    │   ├── InvalidJobIdError                custom job id BullMQ would reject
    │   ├── InvalidQueueNameError            queue name with ':' or empty
    │   ├── InvalidStateError                unknown job state name
    │   └── InvalidFlowError                 a flow tree BullMQ would refuse (cycle, no queue name...)
    ├── DataError (TypeError)                job data / return value not JSON-serialisable or too large
    ├── JobNotFoundError (KeyError)          no such job
    │   └── ParentNotFoundError              the parent a child names does not exist
    ├── JobStateError                        the job is not in a state the operation needs
    ├── JobLockedError                       the job is locked by a worker
    ├── LockMismatchError                    our lock token no longer owns the job
    ├── JobFailedError                       a job waited for (Job.wait_until_finished) ended failed
    ├── WaitTimeoutError (TimeoutError)      a wait for a job's end ran past its timeout
    ├── ScriptError                          a Lua script returned an unexpected error code
    ├── WorkerProcessError                   Worker(processes=n): a child process could not start
    └── BackupError                          a queue backup or restore cannot proceed
        ├── BackupFormatError (ValueError)   not a backup file, truncated or corrupt
        ├── BackupVersionError               written by a newer backup format version
        ├── QueueExistsError                 the restore target queue already has keys
        └── QueueNotFoundError               the queue to back up does not exist

Processors steer their own job with exceptions kept *apart* from library errors
(they derive from :class:`JobControl`, not :class:`SbqueueError`): :class:`UnrecoverableError`,
:class:`DelayedError`, :class:`RateLimitError`, :class:`WaitingChildrenError`; :class:`JobCancelledError` ends an
attempt that ``Worker.cancel_job`` cancelled.

Every error carries optional structured attributes ``job_id``, ``state`` and ``code``.
"""

from __future__ import annotations

from typing import Any


class SbqueueError(Exception):
    """Base of every sbqueue library error."""

    def __init__(
        self, message: str, *, job_id: str | None = None, state: str | None = None, code: int | None = None
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state
        self.code = code


class ConfigurationError(SbqueueError, ValueError):
    """A connection URL or server setting is unusable."""


class ConnectionFailedError(SbqueueError, ConnectionError):
    """Redis could not be reached (the message names the masked URL and what to do)."""


class RedisFullError(SbqueueError):
    """Redis reached ``maxmemory`` with the ``noeviction`` policy and refuses writes ("OOM command not
    allowed"). Nothing was written. Free memory or raise ``maxmemory``: see the ``redis-memory`` runbook."""

    RUNBOOK = "redis-memory"


class ReplicationTimeoutError(SbqueueError):
    """``Queue(..., min_replicas=n)``: fewer than ``n`` replicas acknowledged an add within the timeout.

    The job *was* written on the master (``job_ids``) but is not yet safe from a failover: asynchronous
    replication can lose it if the master dies now. Retrying the add with the same ``job_id`` is safe (a
    re-add of an existing id is a no-op)."""

    def __init__(self, message: str, *, job_ids: list[str] | None = None, acknowledged: int = 0, **kw: Any) -> None:
        super().__init__(message, job_id=job_ids[0] if job_ids else None, **kw)
        self.job_ids = list(job_ids or [])
        self.acknowledged = acknowledged


class RedisVersionError(SbqueueError):
    """The Redis server is older than sbqueue supports (6.2)."""


class ClusterKeyError(SbqueueError):
    """On Redis Cluster, a queue's keys must share one hash slot (use a ``{hash tag}``)."""


class InvalidOptionError(SbqueueError, ValueError):
    """An option has an invalid value; the message names the option and what is allowed."""

    def __init__(self, message: str, *, option: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.option = option


class UnknownOptionError(InvalidOptionError, TypeError):
    """An option name that does not exist (a typo, or a BullMQ option sbqueue does not support)."""


class InvalidJobIdError(InvalidOptionError):
    """A custom job id that BullMQ would reject (integer-looking, '0', bad colon shape)."""


class InvalidQueueNameError(InvalidOptionError):
    """A queue name that is empty or contains ':'."""


class InvalidStateError(InvalidOptionError):
    """An unknown job state name."""


class InvalidFlowError(InvalidOptionError):
    """A flow tree BullMQ would refuse or that cannot be written; ``node`` names the node (``"root"``,
    ``"root.children[2]"``, ...)."""

    def __init__(self, message: str, *, node: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.node = node


class ParameterError(InvalidOptionError):
    """A runbook parameter value (``sbqueue report -p NAME VALUE``) that does not fit the parameter's type;
    the message names the parameter and the accepted values."""


class DataError(SbqueueError, TypeError):
    """Job data or a return value is not JSON-serialisable, or exceeds the size limit."""


class JobNotFoundError(SbqueueError, KeyError):
    """The job does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ParentNotFoundError(JobNotFoundError):
    """The parent job a child names (``parent=`` or a flow root's ``opts.parent``) does not exist;
    ``node`` names the flow node when there is one."""

    def __init__(self, message: str, *, node: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.node = node


class JobStateError(SbqueueError):
    """The job is not in a state this operation applies to."""


class JobLockedError(SbqueueError):
    """The job is locked by a worker (it is being processed)."""


class LockMismatchError(SbqueueError):
    """The worker's lock token no longer owns the job (the lock expired or was taken)."""


class JobFailedError(SbqueueError):
    """The job :meth:`Job.wait_until_finished` waited for ended failed; ``failed_reason`` says why."""

    def __init__(self, message: str, *, failed_reason: str = "", job_id: str | None = None) -> None:
        super().__init__(message, job_id=job_id, state="failed")
        self.failed_reason = failed_reason


class WaitTimeoutError(SbqueueError, TimeoutError):
    """A wait for a job's end ran past its timeout (the job itself is untouched)."""


class ScriptError(SbqueueError):
    """A Lua script returned an error code sbqueue did not expect."""


class WorkerProcessError(SbqueueError):
    """``Worker(processes=n)``: a worker child process could not start (the processor does not import in a
    fresh interpreter, or the child died or hung while starting). The message carries the child's traceback."""


class BackupError(SbqueueError):
    """A queue backup or restore cannot proceed (base of the backup errors); nothing was written."""


class BackupFormatError(BackupError, ValueError):
    """The file is not an sbqueue backup, or it is truncated or corrupt."""


class BackupVersionError(BackupError):
    """The backup was written by a newer format version than this sbqueue reads."""


class QueueExistsError(BackupError):
    """The restore target queue already exists (pass ``overwrite=True`` / ``--force`` to replace it)."""


class QueueNotFoundError(BackupError):
    """The queue to back up does not exist (no key of it in Redis)."""


# --- exceptions processors raise to steer their own job -------------------------------------------


class JobControl(Exception):
    """Base of exceptions a processor raises to steer its job (not library errors)."""


class UnrecoverableError(JobControl):
    """Fail the job now, without using the remaining attempts."""


class DelayedError(JobControl):
    """The processor moved its job to delayed itself (``job.move_to_delayed``); not a failure."""


class RateLimitError(JobControl):
    """Put the job back in the queue without counting an attempt; honours the rate-limit TTL."""


class WaitingChildrenError(JobControl):
    """The processor moved its job to waiting-children itself (``job.move_to_waiting_children``): the
    step pattern; the job runs again once its children are done. Not a failure."""


class JobCancelledError(JobControl):
    """The attempt was cancelled (``Worker.cancel_job`` / ``cancel_all_jobs``): the job fails with ``reason`` as
    its ``failedReason`` — for good, unless cancelled with ``retry=True``. A processor may raise it itself
    (``job.cancellation.raise_if_cancelled()``); ``reason`` is None when the canceller gave none."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "job cancelled")
        self.reason = reason


# --- Lua error codes: one table ------------------------------------------------------------------

#: Every negative code a script can return, mapped to (exception class, message template).
SCRIPT_ERRORS: dict[int, tuple[type[SbqueueError], str]] = {
    -1: (JobNotFoundError, "job {job_id} does not exist"),
    -2: (LockMismatchError, "lock for job {job_id} is missing (it expired); {command} refused"),
    -3: (JobStateError, "job {job_id} is not in the state {command} needs"),
    -4: (JobStateError, "job {job_id} has pending dependencies"),
    -5: (ParentNotFoundError, "parent of job {job_id} does not exist"),
    -6: (LockMismatchError, "lock for job {job_id} is owned by another worker; {command} refused"),
    -7: (JobStateError, "job {job_id} already belongs to another parent; {command} refused"),
    -8: (JobStateError, "job {job_id} is the current iteration of a job scheduler; {command} refused"),
    -9: (JobStateError, "job {job_id} has failed children"),
    -10: (JobLockedError, "job {job_id} is locked by a worker; {command} refused"),
    -11: (InvalidOptionError, "job scheduler {job_id} does not exist"),
    -13: (DataError, "job {job_id} is unreadable: its key is not a hash (written by something else); {command} "
                     "dropped it from its state and left the key for inspection"),
    -15: (JobStateError, "job scheduler {job_id}: the id of its next run is taken by another job; {command} refused"),
    -16: (JobStateError, "job scheduler {job_id}: its next 32 time slots all hold jobs; {command} refused"),
    -14: (DataError, "job {job_id} is unreadable: its key is not a hash (written by something else); {command} "
                     "refused, nothing changed"),
}


def error_from_code(code: int, *, job_id: str | None = None, command: str = "operation") -> SbqueueError:
    """Turn a script's negative return code into the matching exception."""
    try:
        cls, template = SCRIPT_ERRORS[code]
    except KeyError:
        return ScriptError(f"{command} returned unknown code {code} for job {job_id}", job_id=job_id, code=code)
    return cls(template.format(job_id=job_id, command=command), job_id=job_id, code=code)
