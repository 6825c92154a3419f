"""The Lua scripts: where they live, what arguments they take, and how their source is assembled.

Each ``sbqueue/engine/lua/<name>.lua`` is one atomic state change with a header documenting KEYS/ARGV,
return values and events. This module is the only place that knows each script's ARGV order
(:data:`SPECS`); a test checks every header against it. Every script receives the same KEYS — the
queue key set of :data:`sbqueue._core.keys.QUEUE_KEYS` — through a generated Lua prelude, so key
order lives in exactly one place too.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from importlib import resources

from sbqueue._core.keys import QUEUE_KEYS


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    """A script's name and ARGV names (variadic tails are documented, not listed)."""

    name: str
    argv: tuple[str, ...]


def _spec(name: str, *argv: str) -> ScriptSpec:
    return ScriptSpec(name, argv)


SPECS: dict[str, ScriptSpec] = {
    s.name: s
    for s in (
        _spec("add_job", "job_id", "name", "data", "opts", "timestamp", "delay", "priority", "lifo",
              "dedup_id", "dedup_ttl", "scheduler", "dedup_mode"),
        _spec("add_jobs", "n_jobs"),
        _spec("pause", "action"),
        _spec("finish_and_fetch", "now", "worker_id", "worker_name", "lock_ms", "fetch", "limit_max",
              "limit_ms", "metrics_points", "n_finish"),
        _spec("extend_locks", "lock_ms", "pairs"),
        _spec("stalled_check", "now", "interval_ms", "max_stalled"),
        _spec("retry_jobs", "state", "count", "before_ms", "reset", "n_ids"),
        _spec("remove_job", "job_id"),
        _spec("clean", "state", "cutoff_ms", "limit", "cursor", "scan"),
        _spec("drain", "delayed", "batch", "cursor"),
        _spec("obliterate", "force", "batch"),
        _spec("promote", "count", "n_ids"),
        _spec("update_job", "job_id", "what", "value", "keep_logs"),
        _spec("reschedule_job", "job_id", "what", "value", "now", "lifo"),
        _spec("upsert_scheduler", "scheduler_id", "next_ms", "now", "name", "data", "opts", "job_opts",
              "priority", "n_fields"),
        _spec("schedule_next", "scheduler_id", "producer_id", "next_ms", "now", "job_opts", "priority"),
        _spec("remove_scheduler", "scheduler_id"),
        _spec("recover_stalled", "now", "mode", "force", "reason", "n_ids"),
        _spec("add_flow", "now", "n_nodes"),
        _spec("move_to_waiting_children", "job_id", "token", "child_key", "now"),
        _spec("remove_child_dependency", "job_id"),
        _spec("remove_unprocessed_children", "job_id"),
        _spec("release_parent", "job_id", "now"),
        _spec("backup_read", "mode", "max_items", "n_items"),
        _spec("replay_dead_letters", "letters_queue", "now", "n_letters"),
        _spec("settle_dead_letters", "mode", "token", "now", "lease_ms", "n_ids"),
    )
}  # fmt: skip

#: Fixed-width groups that follow ``n_finish`` in finish_and_fetch.
FINISH_FIELDS = ("id", "token", "kind", "value", "stacktrace", "due", "keep_count", "keep_age_s", "keep_limit",
                 "flags")
#: Fixed-width groups that follow ``n_nodes`` in add_flow.
FLOW_FIELDS = ("base", "job_id", "name", "data", "opts", "timestamp", "delay", "priority", "lifo", "dedup_id",
               "dedup_ttl", "parent_key", "parent", "has_children", "dedup_mode")  # fmt: skip

_INCLUDE = re.compile(r"^--@include (\w+)\s*$", re.M)


def _read(rel: str) -> str:
    return resources.files("sbqueue").joinpath("engine", "lua", rel).read_text(encoding="utf-8")


def prelude() -> str:
    """Generated Lua: the table ``K`` of queue keys and the job-key ``prefix``."""
    entries = ", ".join(f'["{name}"] = KEYS[{i}]' for i, name in enumerate(QUEUE_KEYS, 1))
    return (
        f"local K = {{{entries}}}\n"
        # "<prefix>:<queue>:wait" minus "wait" is the job-key prefix "<prefix>:<queue>:"
        'local prefix = string.sub(K["wait"], 1, -5)\n'
    )


@functools.cache
def source(name: str) -> str:
    """The full Lua text sent to Redis for script ``name``: prelude + includes + body."""
    body = _read(f"{name}.lua")
    parts = [prelude(), _read("includes/base.lua")]
    parts += [_read(f"includes/{inc}.lua") for inc in _INCLUDE.findall(body)]
    parts.append(_INCLUDE.sub("", body))
    return "\n".join(parts)


def header_argv(name: str) -> list[str]:
    """ARGV names as documented in the script's header (for the consistency test)."""
    found = re.findall(r"^\s*ARGV\[(\d+)\]\s+(\w+)", _read(f"{name}.lua"), re.M)
    return [arg for _, arg in sorted(found, key=lambda t: int(t[0]))]


def script_names() -> list[str]:
    """Every script file shipped in ``sbqueue/engine/lua`` (excluding includes)."""
    root = resources.files("sbqueue").joinpath("engine", "lua")
    return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".lua"))
