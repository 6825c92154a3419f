"""sbqueue's exceptions, in one tree.

Library errors all derive from :class:`SbqueueError`::

    SbqueueError
    ├── ConfigurationError (ValueError)      bad connection URL, bad server settings
    ├── ConnectionFailedError (ConnectionError)  Redis unreachable / went away
    ├── RedisVersionError                    Redis older than 6.2
    ├── ClusterKeyError                      queue keys would span slots on Redis Cluster
    ├── InvalidOptionError (ValueError)      a job/queue/worker option is invalid
    │   ├── UnknownOptionError (TypeError)   an option name that does not exist
    │   ├── InvalidJobIdError                custom job id BullMQ would reject
    │   ├── InvalidQueueNameError            queue name with ':' or empty
    │   └── InvalidStateError                unknown job state name
    ├── DataError (TypeError)                job data / return value not JSON-serialisable or too large
    ├── JobNotFoundError (KeyError)          no such job
    ├── JobStateError                        the job is not in a state the operation needs
    ├── JobLockedError                       the job is locked by a worker
    ├── LockMismatchError                    our lock token no longer owns the job
    └── ScriptError                          a Lua script returned an unexpected error code

Processors steer their own job with exceptions kept *apart* from library errors
(they derive from :class:`JobControl`, not :class:`SbqueueError`): :class:`UnrecoverableError`,
:class:`DelayedError`, :class:`RateLimitError`.

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


class DataError(SbqueueError, TypeError):
    """Job data or a return value is not JSON-serialisable, or exceeds the size limit."""


class JobNotFoundError(SbqueueError, KeyError):
    """The job does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class JobStateError(SbqueueError):
    """The job is not in a state this operation applies to."""


class JobLockedError(SbqueueError):
    """The job is locked by a worker (it is being processed)."""


class LockMismatchError(SbqueueError):
    """The worker's lock token no longer owns the job (the lock expired or was taken)."""


class ScriptError(SbqueueError):
    """A Lua script returned an error code sbqueue did not expect."""


# --- exceptions processors raise to steer their own job -------------------------------------------


class JobControl(Exception):
    """Base of exceptions a processor raises to steer its job (not library errors)."""


class UnrecoverableError(JobControl):
    """Fail the job now, without using the remaining attempts."""


class DelayedError(JobControl):
    """The processor moved its job to delayed itself (``job.move_to_delayed``); not a failure."""


class RateLimitError(JobControl):
    """Put the job back in the queue without counting an attempt; honours the rate-limit TTL."""


# --- Lua error codes: one table ------------------------------------------------------------------

#: Every negative code a script can return, mapped to (exception class, message template).
SCRIPT_ERRORS: dict[int, tuple[type[SbqueueError], str]] = {
    -1: (JobNotFoundError, "job {job_id} does not exist"),
    -2: (LockMismatchError, "lock for job {job_id} is missing (it expired); {command} refused"),
    -3: (JobStateError, "job {job_id} is not in the state {command} needs"),
    -4: (JobStateError, "job {job_id} has pending dependencies"),
    -5: (JobNotFoundError, "parent of job {job_id} does not exist"),
    -6: (LockMismatchError, "lock for job {job_id} is owned by another worker; {command} refused"),
    -7: (JobStateError, "parent of job {job_id} is not waiting for children"),
    -8: (JobStateError, "job {job_id} is the current iteration of a job scheduler; {command} refused"),
    -9: (JobStateError, "job {job_id} has failed children"),
    -10: (JobLockedError, "job {job_id} is locked by a worker; {command} refused"),
    -11: (InvalidOptionError, "job scheduler {job_id} does not exist"),
    -13: (DataError, "job {job_id} is unreadable: its key is not a hash (written by something else); {command} "
                     "dropped it from its state and left the key for inspection"),
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
