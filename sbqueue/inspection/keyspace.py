"""Memory by key: the biggest keys, and bytes per queue and key role ("which queue eats my memory").

Faster than ``redis-cli --memkeys`` because SCAN asks for 1000 keys per call and each batch's
``MEMORY USAGE`` calls go in one pipeline; type, length and TTL are read only for the reported keys.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import redis

from sbqueue.connection import cluster_nodes
from sbqueue.inspection._context import Context, Script, ScriptsUnavailable
from sbqueue.inspection.schemas import from_records

#: queue key suffix -> role
SUFFIX_ROLES: dict[str, str] = {
    "wait": "wait list", "active": "active list", "paused": "paused list (legacy)",
    "prioritized": "prioritized set", "delayed": "delayed set", "waiting-children": "waiting-children set",
    "completed": "completed set", "failed": "failed set", "stalled": "stalled set", "stalled-check": "stalled-check",
    "meta": "meta", "events": "events stream", "marker": "marker", "pc": "priority counter", "id": "id counter",
    "limiter": "limiter", "repeat": "schedulers set", "metrics:completed": "metrics", "metrics:failed": "metrics",
    "metrics:completed:data": "metrics", "metrics:failed:data": "metrics", "priority": "legacy key",
    "delay": "legacy key",
}  # fmt: skip
#: job sub-key suffix -> role
SUB_ROLES: tuple[tuple[str, str], ...] = (
    (":lock", "job lock"), (":logs", "job logs"), (":dependencies", "job dependencies"),
    (":processed", "child results"), (":failed", "ignored child failures"), (":unsuccessful", "failed children"),
)  # fmt: skip
#: BullMQ 6.7 relay (pub/sub between nodes) keys, ``<prefix>::relay:{<namespace>}:...``: last segment -> role
RELAY_ROLES: dict[str, str] = {
    "nodes": "relay nodes", "subs": "relay subscriptions", "inbox": "relay inbox", "node": "relay node",
    "started": "relay nodes", "cleanup": "relay subscriptions", "retained": "relay retained", "ret": "relay retained",
    "namespaces": "relay namespaces", "layout": "relay", "mid": "relay",
}  # fmt: skip
#: every role classify() can return
ROLES = tuple(dict.fromkeys([*SUFFIX_ROLES.values(), *(r for _, r in SUB_ROLES), *RELAY_ROLES.values(), "relay",
                             "job hash", "scheduler", "dedup key", "dedup next", "other"]))  # fmt: skip
#: MEMORY USAGE samples per key: exact for job hashes (< 32 fields), bounded work for huge collections
#: (the default 5 misses a job's big ``data`` field one time in six).
SAMPLES = 32
_LENGTH = {"string": "strlen", "list": "llen", "hash": "hlen", "set": "scard", "zset": "zcard", "stream": "xlen"}


def classify(key: str, prefix: str) -> tuple[str | None, str, str | None]:
    """``(queue, role, job_id)`` of a key name under ``prefix`` (role ``"other"`` outside it)."""
    head = prefix + ":"
    if not key.startswith(head):
        return None, "other", None
    if key.startswith(head + ":relay:"):  # no queue: the empty segment keeps relay keys out of the queues'
        return None, RELAY_ROLES.get(key.rsplit(":", 1)[1], "relay"), None
    queue, sep, rest = key[len(head) :].partition(":")
    if not sep or not queue or not rest:
        return None, "other", None
    role = SUFFIX_ROLES.get(rest)
    if role is not None:
        return queue, role, None
    if rest.startswith("de:"):
        return queue, "dedup key", None
    if rest.startswith("dn:"):
        return queue, "dedup next", None
    if rest.startswith("repeat:") and rest.count(":") == 1:
        return queue, "scheduler", None
    for suffix, sub_role in SUB_ROLES:
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return queue, sub_role, rest[: -len(suffix)]
    return queue, "job hash", rest


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: Read-only SCAN + MEMORY USAGE of one batch. ARGV: cursor, match, count, prefix, mode, limit (keys to
#: examine, 0 = all), samples (MEMORY USAGE SAMPLES), threshold. Mode "agg": totals by (queue, role) with the
#: rules of :func:`classify` (its tables are generated from :data:`SUFFIX_ROLES`/:data:`SUB_ROLES`); mode
#: "big": the keys of at least ``threshold`` bytes. Returns {next cursor, keys examined, {queue, role, keys,
#: bytes, ...} or {key, bytes, ...}}.
MEMORY_SCRIPT = Script("sbqueue.inspection:memory", "\n".join([
    "-- sbqueue.inspection: read-only SCAN + MEMORY USAGE, by queue and key role or biggest keys",
    "local SUFFIX = {" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in SUFFIX_ROLES.items()) + "}",
    "local SUB = {" + ", ".join(f"[{_lua_string(k[1:])}] = {_lua_string(v)}" for k, v in SUB_ROLES) + "}",
    "local RELAY = {" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in RELAY_ROLES.items()) + "}",
    """local sfind, ssub, smatch, call = string.find, string.sub, string.match, redis.call
local head = ARGV[4]
local hl = #head
local function classify(key)
  if ssub(key, 1, hl) ~= head then return "", "other" end
  if ssub(key, hl + 1, hl + 7) == ":relay:" then return "", RELAY[smatch(key, ":([^:]*)$")] or "relay" end
  local c = sfind(key, ":", hl + 1, true)
  if not c or c == hl + 1 or c == #key then return "", "other" end
  local queue = ssub(key, hl + 1, c - 1)
  if sfind(key, "^%d+$", c + 1) then return queue, "job hash" end
  local tail = ssub(key, c + 1)
  local role = SUFFIX[tail]
  if role then return queue, role end
  if not sfind(tail, ":", 1, true) then return queue, "job hash" end
  local p3 = ssub(tail, 1, 3)
  if p3 == "de:" then return queue, "dedup key" end
  if p3 == "dn:" then return queue, "dedup next" end
  local last = smatch(tail, ":([^:]*)$")
  if ssub(tail, 1, 7) == "repeat:" and #last == #tail - 7 then return queue, "scheduler" end
  role = SUB[last]
  if role and #tail > #last + 1 then return queue, role end
  return queue, "job hash"
end
local res = call("SCAN", ARGV[1], "MATCH", ARGV[2], "COUNT", ARGV[3])
local keys, big, limit, samples = res[2], ARGV[5] == "big", tonumber(ARGV[6]), ARGV[7]
local threshold = tonumber(ARGV[8])
local n = #keys
if limit > 0 and limit < n then n = limit end
local out, agg = {}, {}
for i = 1, n do
  local size = call("MEMORY", "USAGE", keys[i], "SAMPLES", samples)
  if size then
    if big then
      if size >= threshold then
        out[#out + 1] = keys[i]
        out[#out + 1] = size
      end
    else
      local queue, role = classify(keys[i])
      local roles = agg[queue]
      if not roles then
        roles = {}
        agg[queue] = roles
      end
      local slot = roles[role]
      if not slot then
        slot = {0, 0}
        roles[role] = slot
      end
      slot[1] = slot[1] + 1
      slot[2] = slot[2] + size
    end
  end
end
for queue, roles in pairs(agg) do
  for role, slot in pairs(roles) do
    out[#out + 1] = queue
    out[#out + 1] = role
    out[#out + 1] = slot[1]
    out[#out + 1] = slot[2]
  end
end
return {res[1], n, out}
"""]))  # fmt: skip


Batch = tuple[int, dict[tuple[str, str], list[int]], list[tuple[int, str]]]


def _batches(ctx: Context, match: str, top: int, sample: int | None, heap: list[tuple[int, str]]) -> Iterator[Batch]:
    """Per SCAN batch: (keys examined, {(queue, role): [keys, bytes]}, [(bytes, key)] candidates).

    ``top`` > 0 (bigkeys): no totals; only keys at least as big as the smallest of the full running top
    ``heap`` come back. On Redis Cluster every master is scanned in turn (the script runs on each).
    """
    big = top > 0
    head = ctx.prefix + ":"
    scanned = 0
    for node in ctx.nodes():
        cursor = "0"
        while True:
            limit = 0 if sample is None else sample - scanned
            threshold = heap[0][0] if big and len(heap) >= top else 0
            try:
                args = [cursor, match, 1000, head, "big" if big else "agg", limit, SAMPLES, threshold]
                cursor, n, flat = ctx.script(MEMORY_SCRIPT, args, node=node)
                if big:
                    agg, pairs = {}, [(int(flat[i + 1]), str(flat[i])) for i in range(0, len(flat), 2)]
                else:
                    agg = {(str(flat[i]), str(flat[i + 1])): [int(flat[i + 2]), int(flat[i + 3])]
                           for i in range(0, len(flat), 4)}  # fmt: skip
                    pairs = []
            except ScriptsUnavailable:
                cursor, n, agg, pairs = _batch_pipelined(ctx, node, cursor, match, big, limit, threshold)
            scanned += int(n)
            yield int(n), agg, pairs
            if sample is not None and scanned >= sample:
                return
            if str(cursor) == "0":
                break


def _batch_pipelined(
    ctx: Context, node: Any, cursor: str, match: str, big: bool, limit: int, threshold: int
) -> tuple[str, int, dict[tuple[str, str], list[int]], list[tuple[int, str]]]:
    """The same batch as :data:`MEMORY_SCRIPT`, with SCAN + a pipeline of MEMORY USAGE on ``node``."""
    nxt, keys = node.scan(cursor=cursor, match=match, count=1000)
    if limit > 0:
        keys = keys[:limit]
    pipe = node.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=SAMPLES)
    sizes = pipe.execute(raise_on_error=False) if keys else []
    agg: dict[tuple[str, str], list[int]] = {}
    pairs = []
    for key, size in zip(keys, sizes, strict=True):
        if not isinstance(size, int):
            continue
        if big:
            if size >= threshold:
                pairs.append((size, key))
            continue
        queue, role, _job = classify(key, ctx.prefix)
        slot = agg.setdefault((queue or "", role), [0, 0])
        slot[0] += 1
        slot[1] += size
    return str(nxt), len(keys), agg, pairs


def _total(ctx: Context) -> int | None:
    try:
        return cluster_nodes.dbsize(ctx.client)
    except redis.ResponseError:
        return None


def bigkeys(ctx: Context, match: str = "*", top: int = 50, sample: int | None = None) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.bigkeys`."""
    heap: list[tuple[int, str]] = []
    scanned = 0
    bar = ctx.bar(sample or _total(ctx), "bigkeys")
    try:
        for n, _agg, pairs in _batches(ctx, match, top, sample, heap):
            scanned += n
            bar.update(n)
            for pair in pairs:
                if len(heap) < top:
                    heapq.heappush(heap, pair)
                elif pair > heap[0]:
                    heapq.heapreplace(heap, pair)
    finally:
        bar.close()
    ranked = sorted(heap, reverse=True)
    pipe = ctx.pipe()
    for _size, key in ranked:
        pipe.type(key)
        pipe.pttl(key)
    info = pipe.execute(raise_on_error=False) if ranked else []
    pipe = ctx.pipe()
    for i, (_size, key) in enumerate(ranked):
        getattr(pipe, _LENGTH.get(str(info[2 * i]), "exists"))(key)
    lengths = pipe.execute(raise_on_error=False) if ranked else []
    records = []
    for i, (size, key) in enumerate(ranked):
        kind = info[2 * i] if isinstance(info[2 * i], str) else None
        pttl = info[2 * i + 1]
        queue, role, _job = classify(key, ctx.prefix)
        records.append({
            "key": key, "type": kind, "bytes": size, "queue": queue, "role": role,
            "length": lengths[i] if isinstance(lengths[i], int) and kind in _LENGTH else None,
            "ttl_s": pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else math.nan,
        })  # fmt: skip
    df = from_records("bigkeys", records)
    df.attrs.update(scanned=scanned, sampled=sample is not None)
    return df


def memory_by_queue(ctx: Context, match: str | None = None) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.memory_by_queue`."""
    totals: dict[tuple[str, str], list[int]] = {}
    bar = ctx.bar(_total(ctx), "memory by queue")
    try:
        for n, agg, _pairs in _batches(ctx, match or ctx.prefix_pattern(), 0, None, []):
            bar.update(n)
            for group, (keys, size) in agg.items():
                slot = totals.setdefault(group, [0, 0])
                slot[0] += keys
                slot[1] += size
    finally:
        bar.close()
    grand = sum(v[1] for v in totals.values()) or 1
    records = [
        {"queue": q or None, "role": role, "keys": n, "bytes": size, "share": size / grand}
        for (q, role), (n, size) in sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))
    ]
    return from_records("memory_by_queue", records)
