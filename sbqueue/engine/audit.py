"""Writing the audit trail (:mod:`sbqueue._core.audit`): who changed what, from where.

Operator surfaces — a runbook's ``apply()``, a widget's confirmed action, an ``sbqueue`` command — run their
changes inside :func:`acting`; the queue's management calls (pause, resume, clean, drain, retry, remove,
promote, limits, obliterate, …) are :func:`audited` and append one entry each while an actor is set. Outside
``acting`` nothing is written: an application calling ``q.pause()`` pays one context-variable read.

Writing the entry never breaks the action it records: an ACL without XADD on the stream, or a full Redis,
is logged once and the action's own result stands.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import getpass
import inspect
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sbqueue._core import audit as _record
from sbqueue.connection import clients

log = logging.getLogger("sbqueue.audit")
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: ``source`` is ``"runbook:<name>"``, ``"widget:<panel>"`` or ``"cli:<command>"``."""

    source: str
    notebook: str | None = None
    dry_run: bool = False


_ACTOR: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("sbqueue_audit_actor", default=None)
#: inside an audited call: the calls it makes itself (obliterate pauses first) are part of it, not entries
_INSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("sbqueue_audit_inside", default=False)
_warned: set[str] = set()


@contextlib.contextmanager
def acting(source: str, notebook: str | None = None, *, dry_run: bool = False) -> Iterator[Actor]:
    """Attribute the management calls made inside the block to ``source`` (and ``notebook``, default: the
    runbook report being written, from ``SBQUEUE_NOTEBOOK``)."""
    actor = Actor(source, notebook or os.environ.get("SBQUEUE_NOTEBOOK") or None, dry_run)
    token = _ACTOR.set(actor)
    try:
        yield actor
    finally:
        _ACTOR.reset(token)


def active() -> Actor | None:
    """The actor of the current block, or None (then nothing is audited)."""
    return _ACTOR.get()


def who(actor: Actor) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid())
    return {"source": actor.source, "notebook": actor.notebook, "user": user, "host": socket.gethostname(),
            "pid": os.getpid()}  # fmt: skip


def entry(action: str, queue: str, *, count: int = 0, ids: Sequence[str] = (), params: Mapping[str, Any] | None = None,
          result: str = "ok", actor: Actor | None = None) -> dict[str, str]:  # fmt: skip
    """The fields of one entry for the current (or given) actor."""
    actor = actor or active() or Actor("api")
    return _record.encode(action, queue, mode="dry-run" if actor.dry_run else "applied", count=count, ids=ids,
                          params=params or {}, result=result, who=who(actor))  # fmt: skip


def _failed_to_write(prefix: str, exc: BaseException) -> None:
    if prefix not in _warned:  # once per prefix: an ACL without XADD would otherwise log every action
        _warned.add(prefix)
        log.warning("audit entry not written to %s (%s); the action itself went ahead", _record.key(prefix), exc)


def write(client: Any, prefix: str, fields: Mapping[str, str]) -> Any:
    """Append ``fields`` (XADD MAXLEN ~); returns an awaitable for an asyncio client. Never raises."""
    stream = _record.key(prefix)
    if clients.is_async(client):
        async def _write() -> None:
            try:
                await client.xadd(stream, dict(fields), maxlen=_record.MAX_LEN, approximate=True)
            except Exception as exc:  # the action already happened: its record must not undo or mask it
                _failed_to_write(prefix, exc)

        return _write()
    try:
        client.xadd(stream, dict(fields), maxlen=_record.MAX_LEN, approximate=True)
    except Exception as exc:
        _failed_to_write(prefix, exc)
    return None


def note(client: Any, prefix: str, action: str, queue: str, **kwargs: Any) -> Any:
    """Record an action a surface decided without a queue call (e.g. a dry run's plan) for the current actor."""
    return write(client, prefix, entry(action, queue, **kwargs))


def _summary(bound: Mapping[str, Any], value: Any, ids_of: Callable[..., Any] | None,
             count_of: Callable[..., Any] | None) -> tuple[int, list[str]]:  # fmt: skip
    ids = [str(i) for i in (ids_of(bound, value) if ids_of else [])]
    count = int(count_of(bound, value)) if count_of else len(ids)
    return count, ids


def audited(action: str, *, ids: Callable[[Mapping[str, Any], Any], Any] | None = None,
            count: Callable[[Mapping[str, Any], Any], Any] | None = None) -> Callable[[F], F]:  # fmt: skip
    """Decorate a queue management method (sync or async): while an actor is set, each call appends one
    entry — its arguments as parameters, the jobs it touched (``ids``/``count`` from the bound arguments and
    the return value), and ``ok`` or the error it raised."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        def parts(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            params = dict(bound.arguments)
            return params.pop("self"), params

        def fields(queue: Any, params: dict[str, Any], value: Any, error: BaseException | None) -> dict[str, str]:
            n, touched = _summary(params, value, ids, count) if error is None else (0, [])
            result = "ok" if error is None else f"error: {type(error).__name__}: {error}"
            return entry(action, queue.name, count=n, ids=touched, params=params, result=result)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                if _ACTOR.get() is None or _INSIDE.get():
                    return await fn(*args, **kwargs)
                queue, params = parts(args, kwargs)
                inside = _INSIDE.set(True)
                try:
                    value = await fn(*args, **kwargs)
                except BaseException as exc:
                    await write(queue._client, queue.keys.prefix, fields(queue, params, None, exc))
                    raise
                finally:
                    _INSIDE.reset(inside)
                await write(queue._client, queue.keys.prefix, fields(queue, params, value, None))
                return value

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if _ACTOR.get() is None or _INSIDE.get():
                return fn(*args, **kwargs)
            queue, params = parts(args, kwargs)
            inside = _INSIDE.set(True)
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:
                write(queue._client, queue.keys.prefix, fields(queue, params, None, exc))
                raise
            finally:
                _INSIDE.reset(inside)
            write(queue._client, queue.keys.prefix, fields(queue, params, value, None))
            return value

        return run  # type: ignore[return-value]

    return wrap
