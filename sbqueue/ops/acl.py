"""Minimal Redis ACL rules per role: producer, worker, inspector (see ``docs/security.md``).

Each role gets only the commands sbqueue sends for it, on the keys of its prefix (``~<prefix>:*``)::

    ACL SETUSER orders-producer reset on >s3cret <PRODUCER_ACL>
    ACL SETUSER orders-worker   reset on >s3cret <WORKER_ACL>
    ACL SETUSER dashboards      reset on >s3cret <INSPECTOR_ACL>

or from Python, for any prefix: ``acl.setuser(admin_client, "orders-worker", password, "worker", prefix="orders")``.

* **producer** — :class:`sbqueue.Queue` / :class:`sbqueue.AsyncQueue` (adding jobs, schedulers, the getters, the
  management calls pause/clean/drain/retry/promote/obliterate) and :class:`sbqueue.QueueEvents`.
* **worker** — :class:`sbqueue.Worker` (fetching, settling, lock renewal, the stalled check, the blocking wait on
  the queue's marker, its named connections) and what a processor does to its own job (progress, logs, data,
  ``move_to_delayed``, priority/delay). A processor that also adds jobs or reads other jobs needs
  ``rules("producer", "worker")``.
* **inspector** — :class:`sbqueue.Inspector`: :data:`INSPECTOR_ACL` (read-only, every key, server views).

Commands Lua scripts run are checked against the caller's ACL too (Redis 6.2+), so the script commands are
derived from the scripts themselves (:func:`script_commands`): the rules cannot drift from the Lua. Scripts
are sent with EVALSHA (SCRIPT LOAD/EXISTS when the server does not know them yet); a user who may EVALSHA may
also EVAL, but only with the commands and keys listed here. Destructive server commands (FLUSHALL, FLUSHDB,
CONFIG SET, KEYS, SHUTDOWN, DEBUG, ACL ...) are in no role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sbqueue._core.keys import _glob_escape, validate_prefix
from sbqueue._core.scripts import SPECS, source
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection.inspector import INSPECTOR_ACL

__all__ = ["INSPECTOR_ACL", "INSPECTOR_CONFIG_RULE", "PRODUCER_ACL", "ROLES", "WORKER_ACL", "rules", "script_commands",
           "setuser"]

#: every client: ``connect()`` pings and checks the server version (INFO); SELECT only matters for db != 0
CONNECT_COMMANDS = ("ping", "info", "select")
#: how redis-py runs a script: EVALSHA, and SCRIPT EXISTS/LOAD when the server does not have it cached; EVAL for
#: scripts queued on Redis Cluster pipelines (no more power than SCRIPT LOAD + EVALSHA already give)
SCRIPT_RUNNER = ("evalsha", "eval", "script|load", "script|exists")

#: scripts only workers run; producers run every other script (queue management and runbook fixes included)
WORKER_ONLY_SCRIPTS = ("finish_and_fetch", "extend_locks", "stalled_check", "schedule_next")
#: scripts of no role: queue backups (``sbqueue backup``/``restore`` read and write every key of a queue; run them
#: as an administrator)
ADMIN_SCRIPTS = ("backup_read",)
#: scripts each role runs (``sbqueue/engine/lua/<name>.lua``); a processor's own-job calls run update_job/reschedule_job
#: and, in the step pattern, move_to_waiting_children
ROLE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "producer": tuple(sorted(set(SPECS) - set(WORKER_ONLY_SCRIPTS) - set(ADMIN_SCRIPTS))),
    "worker": (*WORKER_ONLY_SCRIPTS, "update_job", "reschedule_job", "move_to_waiting_children"),
}
#: commands each role sends itself (outside scripts)
ROLE_COMMANDS: dict[str, tuple[str, ...]] = {
    "producer": (
        "hset", "hdel", "hget", "hgetall", "hmget", "hexists",  # meta, limits, job and scheduler hashes
        "llen", "lrange", "lpos", "zcard", "zscore", "zrange", "zrevrange",  # counts, ids, states, logs, metrics
        "set", "get", "pttl", "del",  # rate_limit(), get_rate_limit_ttl(), remove_rate_limit_key(); dedup owners
        "zcount",  # get_counts_per_priority()
        "xtrim",  # trim_events()
        "wait",  # Queue(min_replicas=n): adds wait for replicas
        "scan", "unlink",  # obliterate(): dedup keys
        "client|list",  # get_workers()
        "smembers", "scard", "hlen", "hscan", "sscan",  # flows: a parent's dependencies (get_dependencies, get_flow)
        "exists", "xinfo|stream", "xread", "client|setname",  # QueueEvents (a named connection)
    ),
    "worker": (
        "bzpopmin",  # idle workers block on the queue's marker
        "client|setname",  # the blocking connection is named like a BullMQ worker's (getWorkers, dashboards)
        "hgetall",  # the job scheduler's definition when an iteration is fetched
    ),
}  # fmt: skip
ROLES = ("producer", "worker", "inspector")
#: what a redis-py cluster client sends besides its commands: the slot map and the command table (key positions)
CLUSTER_COMMANDS = ("cluster|slots", "cluster|shards", "command")
#: add to :data:`INSPECTOR_ACL` for a full ``config_audit()`` — only on servers where ``requirepass`` and
#: ``masterauth`` are empty (ACL users instead): CONFIG GET would hand them to the inspecting user
INSPECTOR_CONFIG_RULE = "+config|get"

_CALL = re.compile(r"redis\.p?call\(\s*[\"'](\w+)[\"']")


def script_commands(*names: str) -> list[str]:
    """Lower-case names of the Redis commands the given Lua scripts call (includes expanded)."""
    found: set[str] = set()
    for name in names:
        found.update(cmd.lower() for cmd in _CALL.findall(source(name)))
    return sorted(found)


def rules(*roles: str, prefix: str = "bull", cluster: bool = False) -> list[str]:
    """ACL SETUSER rules (one list item per rule, safe for prefixes with spaces) for ``roles`` on ``prefix``.

    ``rules("producer", "worker")`` combines roles; ``rules("inspector")`` is :data:`INSPECTOR_ACL` (every key,
    read-only: keep inspectors separate users). ``cluster=True`` adds what a Redis Cluster client needs
    (:data:`CLUSTER_COMMANDS`). Apply with ``ACL SETUSER <user> reset on ><password> <rules>``.
    """
    extra = [f"+{c}" for c in CLUSTER_COMMANDS] if cluster else []
    wanted = list(dict.fromkeys(roles)) or ["producer"]
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise InvalidOptionError(f"unknown ACL role(s) {unknown}; roles: {', '.join(ROLES)}", option="roles")
    if "inspector" in wanted:
        if len(wanted) > 1:
            raise InvalidOptionError("the inspector role is read-only on every key: give it its own user",
                                     option="roles")  # fmt: skip
        return INSPECTOR_ACL.split() + extra
    validate_prefix(prefix)
    commands: list[str] = [*CONNECT_COMMANDS, *SCRIPT_RUNNER]
    for role in wanted:
        commands += ROLE_COMMANDS[role]
        commands += script_commands(*ROLE_SCRIPTS[role])
    ordered = list(dict.fromkeys(commands))
    return ["resetkeys", f"~{_glob_escape(prefix)}:*", "resetchannels", "-@all", *(f"+{c}" for c in ordered), *extra]


def setuser(client: Any, user: str, password: str, *roles: str, prefix: str = "bull", cluster: bool = False) -> None:
    """Create (or reset) ACL ``user`` with ``password`` and the rules of ``roles`` (needs an admin client).

    On Redis Cluster pass ``cluster=True`` and a cluster client: ACL SETUSER then runs on every node (users are
    per node).
    """
    command = ("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules(*roles, prefix=prefix, cluster=cluster))
    if cluster and hasattr(client, "get_nodes"):
        client.execute_command(*command, target_nodes=client.get_nodes())
    else:
        client.execute_command(*command)


def _joined(roles: Iterable[str]) -> str:
    return " ".join(rules(*roles))


#: rules of a producer (Queue, AsyncQueue, QueueEvents) on the default prefix ``bull``
PRODUCER_ACL = _joined(["producer"])
#: rules of a worker (Worker and its processors' own-job calls) on the default prefix ``bull``
WORKER_ACL = _joined(["worker"])
