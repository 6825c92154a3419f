"""Flows as frames: one row per job of a parent/child tree, and the parents that are stuck (read-only).

A parent waits in ``waiting-children`` while its ``:dependencies`` set lists pending child job keys. It is
**stuck** when nothing will ever release it: nothing is pending any more (a worker that does not update
parents finished its children — the mixed-fleet symptom), a pending child's hash is gone, a pending child
failed without a failure option (BullMQ then waits forever), or no worker serves a pending child's queue.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sbqueue._core.flow import split_job_key
from sbqueue._core.keys import QueueKeys
from sbqueue._core.prepare import RESERVED_ID_PREFIXES, RESERVED_JOB_IDS
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection._context import Context
from sbqueue.inspection.queues import client_list, parse_client_name
from sbqueue.inspection.schemas import from_records

NOTHING_PENDING = "nothing pending, still waiting-children"
CHILD_MISSING = "a pending child's hash is gone"
CHILD_FAILED = "a pending child failed without a failure option"
UNSERVED = "no worker serves a pending child's queue"


class _Walker:
    """Reads nodes of flows, caching queue states of workers (one CLIENT LIST per walk)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._served: set[str] | None = None

    def served(self, prefix: str, queue: str) -> bool | None:
        """Is a worker connected to ``queue``? None when it cannot be told (another prefix)."""
        if prefix != self.ctx.prefix:
            return None
        if self._served is None:
            self._served = set()
            for c in client_list(self.ctx):
                parsed = parse_client_name(c.get("name"), self.ctx.prefix)
                if parsed and parsed["role"] == "worker":
                    self._served.add(parsed["queue"])
        return queue in self._served

    def node(self, prefix: str, queue: str, job_id: str, depth: int, parent: tuple[str, str] | None,
             root: str) -> dict[str, Any] | None:  # fmt: skip
        client = self.ctx.client
        try:
            keys = QueueKeys(prefix, queue)
        except InvalidOptionError:
            return None
        key = keys.job(job_id)
        pipe = client.pipeline(transaction=False)
        pipe.hmget(key, "name", "defa", "parentKey")
        pipe.smembers(key + ":dependencies")
        pipe.hlen(key + ":processed")
        pipe.hlen(key + ":failed")
        pipe.zcard(key + ":unsuccessful")
        (name, defa, parent_key), pending, processed, ignored, failed = pipe.execute(raise_on_error=False)
        state = state_of(client, keys, job_id) if name is not None else "missing"
        stuck = self.stuck(state, pending) if state == "waiting-children" else None
        if parent is None and parent_key:
            _pp, pq, pid = split_job_key(parent_key)
            parent = (pid, pq)
        return {
            "root_id": root, "queue": queue, "prefix": prefix, "job_id": job_id, "name": name, "depth": depth,
            "parent_id": parent[0] if parent else None, "parent_queue": parent[1] if parent else None,
            "state": state, "pending": len(pending), "processed": int(processed), "ignored": int(ignored),
            "failed": int(failed), "deferred_failure": defa, "stuck": stuck,
            "_children": sorted(pending),
        }  # fmt: skip

    def stuck(self, state: str, pending: set[str]) -> str | None:
        if not pending:
            return NOTHING_PENDING
        client = self.ctx.client
        children = sorted(pending)
        pipe = client.pipeline(transaction=False)
        for child in children:
            pipe.exists(child)
        exists = pipe.execute(raise_on_error=False)
        failed_without_option = []
        for child, there in zip(children, exists, strict=True):
            if not there:
                return f"{CHILD_MISSING}: {child}"
            prefix, queue, cid = split_job_key(child)
            if client.zscore(f"{prefix}:{queue}:failed", cid) is not None:
                failed_without_option.append(child)
            elif client.zscore(f"{prefix}:{queue}:waiting-children", cid) is not None:
                continue  # waits for its own children: judged on its own row
            elif self.served(prefix, queue) is False:
                return f"{UNSERVED}: {prefix}:{queue}"
        if failed_without_option and len(failed_without_option) == len(pending):
            return f"{CHILD_FAILED}: {', '.join(failed_without_option)}"
        return None

    def tree(self, prefix: str, queue: str, job_id: str, depth: int, max_nodes: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        todo: list[tuple[str, str, str, int, tuple[str, str] | None]] = [(prefix, queue, job_id, 0, None)]
        while todo and len(rows) < max_nodes:
            p, q, jid, d, parent = todo.pop(0)
            row = self.node(p, q, jid, d, parent, job_id)
            if row is None:
                continue
            rows.append(row)
            if d + 1 > depth:
                continue
            key = f"{p}:{q}:{jid}"
            children = list(row["_children"])
            children += sorted(self.ctx.client.hkeys(key + ":processed"))
            children += sorted(self.ctx.client.hkeys(key + ":failed"))
            children += self.ctx.client.zrange(key + ":unsuccessful", 0, -1)
            for child in children:
                cp, cq, cid = split_job_key(child)
                todo.append((cp, cq, cid, d + 1, (jid, q)))
        for row in rows:
            row.pop("_children", None)
        return rows


def state_of(client: Any, keys: QueueKeys, job_id: str) -> str:
    """The job's state, checked in BullMQ's order (``unknown`` when no state key holds it)."""
    pipe = client.pipeline(transaction=False)
    for state in ("completed", "failed", "delayed", "prioritized"):
        pipe.zscore(keys.key(state), job_id)
    for suffix in ("active", "wait", "paused"):
        pipe.lpos(keys.key(suffix), job_id)
    pipe.zscore(keys.key("waiting-children"), job_id)
    found = pipe.execute(raise_on_error=False)
    names = ("completed", "failed", "delayed", "prioritized", "active", "waiting", "paused", "waiting-children")
    for name, hit in zip(names, found, strict=True):
        if hit is not None and not isinstance(hit, Exception):
            return name
    return "unknown"


def fix_for(stuck: str) -> str:
    """What to do about a stuck parent (releasing it only where BullMQ would have)."""
    if stuck.startswith(NOTHING_PENDING):
        return ("its children are done but the worker that finished them did not release it (a worker without "
                "flow support): move it to wait, prioritized or delayed per its own options, as BullMQ would")
    if stuck.startswith(CHILD_MISSING):
        return "the child is gone: drop its key from the parent's :dependencies set (SREM); the parent then runs"
    if stuck.startswith(CHILD_FAILED):
        return ("BullMQ keeps the parent waiting: retry the failed child, or detach it "
                "(job.remove_child_dependency()) to let the parent run without it")
    return "start a worker for that queue"  # fmt: skip


def flow(ctx: Context, queue: str, job_id: str, depth: int = 10, max_nodes: int = 10_000) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.flow`."""
    ctx.keys(queue)  # validates the name
    return from_records("flow", _Walker(ctx).tree(ctx.prefix, queue, job_id, depth, max_nodes))


def parent_ids(ctx: Context, queue: str) -> list[str]:
    """Ids of this queue's jobs that are parents: waiting for children, or holding children's results."""
    keys = ctx.keys(queue)
    found = set(ctx.client.zrange(keys.key("waiting-children"), 0, -1))
    base = keys.base
    for suffix in (":dependencies", ":processed", ":failed", ":unsuccessful"):
        for batch in ctx.scan(keys.glob("*" + suffix)):
            for key in batch:
                job_id = key[len(base) : -len(suffix)]
                head = job_id.split(":")[0]
                if job_id and job_id not in RESERVED_JOB_IDS and head not in RESERVED_ID_PREFIXES:
                    found.add(job_id)
    return sorted(found)


def flows(ctx: Context, queue: str, limit: int | None = None) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.flows`."""
    keys = ctx.keys(queue)
    walker = _Walker(ctx)
    rows: list[dict[str, Any]] = []
    roots = 0
    for job_id in parent_ids(ctx, queue):
        parent_key = ctx.client.hget(keys.job(job_id), "parentKey")
        if parent_key:
            pp, pq, _pid = split_job_key(parent_key)
            if pp == ctx.prefix and pq == queue and ctx.client.exists(parent_key):
                continue  # part of a tree rooted in this queue: listed under its root
        rows += walker.tree(ctx.prefix, queue, job_id, 10, 10_000)
        roots += 1
        if limit is not None and roots >= limit:
            break
    return from_records("flow", rows)


def stuck_parents(ctx: Context, queue: str) -> list[dict[str, Any]]:
    """The waiting-children parents of ``queue`` that nothing will release, with the reason."""
    keys = ctx.keys(queue)
    walker = _Walker(ctx)
    out = []
    for job_id in ctx.client.zrange(keys.key("waiting-children"), 0, -1):
        row = walker.node(ctx.prefix, queue, job_id, 0, None, job_id)
        if row is not None and row["stuck"]:
            out.append(row)
    return out
