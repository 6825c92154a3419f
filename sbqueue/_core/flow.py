"""Flows (parent/child jobs): validate a tree and turn it into the ``add_flow`` script's arguments.

No I/O here. A tree node is a :class:`FlowJob` or a dict with the same keys (``name``, ``queue_name``,
``data``, ``opts``, ``children``, ``prefix``); ``opts`` are the options of ``Queue.add`` (snake_case or
BullMQ camelCase) plus the child options ``fail_parent_on_failure``, ``continue_parent_on_failure``,
``ignore_dependency_on_failure``, ``remove_dependency_on_failure``. Every node is checked before
anything is written; a problem raises :class:`~sbqueue.errors.InvalidFlowError` naming the node.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sbqueue._core import options as _opts
from sbqueue._core import prepare as _prep
from sbqueue._core.keys import QueueKeys
from sbqueue.errors import InvalidFlowError, InvalidOptionError, SbqueueError

#: Keys a dict node may have (``queueName`` is BullMQ's spelling of ``queue_name``).
NODE_KEYS = frozenset({"name", "queue_name", "queueName", "data", "opts", "children", "prefix"})


@dataclasses.dataclass
class FlowJob:
    """One node of a flow: a job and the children it waits for (which may be in other queues)."""

    name: str
    queue_name: str
    data: Any = None
    opts: Mapping[str, Any] | None = None
    children: Sequence[FlowJob | Mapping[str, Any]] | None = None
    #: key prefix of this node's queue (default: the producer's)
    prefix: str | None = None


@dataclasses.dataclass(frozen=True)
class FlowNode:
    """One validated node, in the order the script writes them (parents before their children)."""

    path: str
    keys: QueueKeys
    job: _prep.PreparedJob
    job_id: str  # "" = the queue's next id (only a lone child added with Queue.add(parent=...))
    timestamp: int
    parent_key: str
    parent_json: str
    children: tuple[int, ...]  # indexes of this node's children in the node list

    def argv(self) -> list[Any]:
        """This node's 15 values of ``add_flow`` (order of ``sbqueue._core.scripts.FLOW_FIELDS``)."""
        j = self.job
        return [self.keys.base, self.job_id, j.name, j.data, j.opts, self.timestamp, j.delay, j.priority,
                "1" if j.lifo else "0", j.dedup_id, j.dedup_ttl, self.parent_key, self.parent_json,
                "1" if self.children else "0", j.dedup_mode]  # fmt: skip


def split_job_key(key: str) -> tuple[str, str, str]:
    """``"<prefix>:<queue>:<id>"`` -> ``(prefix, queue, id)``, split at the last two ``:`` as BullMQ does (a
    child key in a parent's sets; ids with colons are ambiguous there, in Node too)."""
    head, _, job_id = key.rpartition(":")
    prefix, _, queue = head.rpartition(":")
    return prefix, queue, job_id


def parent_link(parent: Mapping[str, str], stored_opts: Mapping[str, Any]) -> tuple[str, str]:
    """``(parentKey, parent JSON)`` a child stores: BullMQ's ``{id, queueKey}`` plus its true child flags
    (read from the child's stored opts: ``fpof``, ``rdof``, ``idof``, ``cpof``)."""
    link: dict[str, Any] = {"id": parent["id"], "queueKey": parent["queue"]}
    for flag in ("fpof", "rdof", "idof", "cpof"):
        if stored_opts.get(flag) is True:
            link[flag] = True
    return f"{parent['queue']}:{parent['id']}", json.dumps(link, separators=(",", ":"))


def _fields(node: Any, path: str) -> tuple[Any, Any, Any, Any, Sequence[Any], Any]:
    if isinstance(node, FlowJob):
        return node.name, node.queue_name, node.data, node.opts or {}, node.children or (), node.prefix
    if not isinstance(node, Mapping):
        raise InvalidFlowError(f"flow node {path} must be a dict or FlowJob, got {type(node).__name__}", node=path)
    unknown = set(node) - NODE_KEYS
    if unknown:
        raise InvalidFlowError(
            f"flow node {path} has unknown keys {sorted(map(str, unknown))}; allowed: name, queue_name, data, "
            "opts, children, prefix",
            node=path,
        )
    queue = node.get("queue_name", node.get("queueName"))
    children = node.get("children") or ()
    if isinstance(children, (str, bytes, Mapping)) or not isinstance(children, Sequence):
        raise InvalidFlowError(f"flow node {path}: children must be a list of nodes", node=path)
    return node.get("name"), queue, node.get("data"), node.get("opts") or {}, children, node.get("prefix")


def build_flow(
    trees: Sequence[Any],
    *,
    prefix: str,
    now: int,
    max_job_bytes: int = _opts.MAX_JOB_BYTES,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> tuple[list[FlowNode], list[int]]:
    """Validate ``trees`` and list their nodes parents-first; returns ``(nodes, index of each root)``.

    Ids of nodes without ``job_id`` are random UUIDs, as Node's FlowProducer gives them.
    """
    # FlowNode fields but the children, made into FlowNodes at the end
    nodes: list[tuple[str, QueueKeys, _prep.PreparedJob, str, int, str, str]] = []
    links: dict[tuple[str, str, str], tuple[str, str]] = {}  # (parent id, queue, flags) -> parentKey, JSON
    roots: list[int] = []
    children_of: dict[int, list[int]] = {}
    # (node, path, parent index, parent {"id","queue"} or None, ids of the nodes on the path from the root)
    stack: list[tuple[Any, str, int | None, dict[str, str] | None, frozenset[int]]] = []
    for t, tree in reversed(list(enumerate(trees))):
        stack.append((tree, "root" if len(trees) == 1 else f"trees[{t}]", None, None, frozenset()))
    while stack:
        node, path, parent_index, parent, above = stack.pop()
        if id(node) in above:
            raise InvalidFlowError(f"flow node {path} is one of its own ancestors (the tree has a cycle)", node=path)
        name, queue_name, data, raw_opts, children, node_prefix = _fields(node, path)
        try:
            keys = QueueKeys(prefix if node_prefix is None else node_prefix, queue_name)
            options = _prep.normalise_opts(raw_opts)
            if parent is not None:
                if options.get("parent") is not None:
                    raise InvalidOptionError(
                        "a child's parent is given by the tree; remove opts.parent", option="parent"
                    )
                options["parent"] = parent
            if options.get("repeat") is not None:
                raise InvalidOptionError("flow nodes cannot repeat; use a job scheduler", option="repeat")
            if children and options.get("deduplication") is not None:
                raise InvalidOptionError(
                    "deduplication cannot be used on a flow node with children (BullMQ refuses it)",
                    option="deduplication",
                )
            job = _prep.prepare_job(name, data, options, max_bytes=max_job_bytes)  # refuses dedup on a child
        except InvalidFlowError:
            raise
        except SbqueueError as exc:
            raise InvalidFlowError(f"flow node {path} ({name!r} in {queue_name!r}): {exc}", node=path) from exc
        job_id = job.job_id or new_id()
        parent_key, parent_json = ("", "")
        if job.parent is not None:
            o = job.opts_dict
            flags = f"{o.get('fpof')}{o.get('rdof')}{o.get('idof')}{o.get('cpof')}"
            memo = (job.parent["id"], job.parent["queue"], flags)
            found = links.get(memo)
            if found is None:
                found = links[memo] = parent_link(job.parent, o)
            parent_key, parent_json = found
        index = len(nodes)
        if parent_index is None:
            roots.append(index)
        else:
            children_of.setdefault(parent_index, []).append(index)
        nodes.append((path, keys, job, job_id, now, parent_key, parent_json))
        link = {"id": job_id, "queue": f"{keys.prefix}:{keys.name}"}
        inside = above | {id(node)}
        for c in reversed(range(len(children))):
            stack.append((children[c], f"{path}.children[{c}]", index, link, inside))
    return [FlowNode(*n, tuple(children_of.get(i, ()))) for i, n in enumerate(nodes)], roots


def child_node(keys: QueueKeys, job: _prep.PreparedJob, now: int) -> FlowNode:
    """The one node of ``Queue.add(..., parent=...)``: a child of an existing parent."""
    assert job.parent is not None
    parent_key, parent_json = parent_link(job.parent, job.opts_dict)
    return FlowNode("job", keys, job, job.job_id, now, parent_key, parent_json, ())
