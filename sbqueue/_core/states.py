"""Job states and the Redis key that holds each (BullMQ 6 names)."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from sbqueue.errors import InvalidStateError


class JobState(str, enum.Enum):
    """A job's state, with BullMQ's names."""

    WAITING = "waiting"
    ACTIVE = "active"
    DELAYED = "delayed"
    PRIORITIZED = "prioritized"
    COMPLETED = "completed"
    FAILED = "failed"
    WAITING_CHILDREN = "waiting-children"
    PAUSED = "paused"  # legacy v5 list; v6 keeps paused jobs in wait
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


#: state name -> (key suffix, Redis type)
STATE_KEYS: dict[str, tuple[str, str]] = {
    "waiting": ("wait", "list"),
    "wait": ("wait", "list"),
    "active": ("active", "list"),
    "paused": ("paused", "list"),
    "delayed": ("delayed", "zset"),
    "prioritized": ("prioritized", "zset"),
    "completed": ("completed", "zset"),
    "failed": ("failed", "zset"),
    "waiting-children": ("waiting-children", "zset"),
}
#: What ``get_job_counts()`` returns by default (as BullMQ 6).
DEFAULT_COUNT_STATES = ("active", "completed", "delayed", "failed", "prioritized", "waiting", "waiting-children")
#: States a job can be cleaned from.
CLEANABLE = ("completed", "failed", "delayed", "prioritized", "wait", "waiting", "active", "paused")


def check_states(states: Iterable[str] | str | None, *, default: Iterable[str] = DEFAULT_COUNT_STATES) -> list[str]:
    """Validate state names (also accepting ``wait``); raise :class:`InvalidStateError` on unknown ones."""
    if states is None:
        return list(default)
    if isinstance(states, str):
        states = [states]
    if not isinstance(states, Iterable):
        raise InvalidStateError(f"states must be a state name or a list of them, got {states!r}", option="state")
    out = []
    for state in states:
        name = state.value if isinstance(state, JobState) else state
        if not isinstance(name, str) or name not in STATE_KEYS:
            raise InvalidStateError(
                f"unknown job state {state!r}; allowed: {', '.join(STATE_KEYS)}", option="state", state=str(state)
            )
        out.append(name)
    return out
