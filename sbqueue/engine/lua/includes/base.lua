-- Shared helpers for every sbqueue script (our own code; BullMQ 6 layout, spec §2-§10).
-- The loader prepends a generated table K of the queue's keys (order from sbqueue/_core/keys.py)
-- and `prefix` = "<prefix>:<queue>:" (the job-key prefix, derived from the wait key).

local function max_events()
  local n = redis.call("HGET", K["meta"], "opts.maxLenEvents")
  if not n then
    n = 10000
    redis.call("HSET", K["meta"], "opts.maxLenEvents", n)
  end
  return tonumber(n) or 10000  -- a value a peer garbled must not stop every event (and so every script)
end

-- HINCRBY that survives a counter a peer garbled ("many", "1e999"): the counter restarts at `by`.
local function hincrby(key, field, by)
  local n = redis.pcall("HINCRBY", key, field, by)
  if type(n) == "table" and n.err then
    redis.call("HSET", key, field, by)
    return by
  end
  return n
end

-- HGET that reads a job key a peer overwrote with another type (a string, a list...) as an empty hash:
-- one broken key must not stop clean, drain, remove or obliterate for the whole queue.
local function hget(key, field)
  local v = redis.pcall("HGET", key, field)
  if type(v) == "table" then return false end
  return v
end

-- The Redis type of a key ("hash", "none", "string", ...): TYPE answers with a status reply, a table.
local function key_type(key)
  return redis.call("TYPE", key)["ok"]
end

-- A job's priority (0 = none). Only for a key known to be a hash: a key of another type raises.
local function job_priority(jobKey)
  return tonumber(redis.call("HGET", jobKey, "priority") or "0") or 0
end

-- The Redis type of a job key that is neither a hash nor missing (a peer wrote it), else nil.
local function foreign_type(jobKey)
  local t = key_type(jobKey)
  if t == "hash" or t == "none" then return nil end
  return t
end

local MAXLEN = nil  -- filled lazily by emit()

-- XADD one event, trimmed (approximately) to meta opts.maxLenEvents.
local function emit(...)
  if not MAXLEN then MAXLEN = max_events() end
  redis.call("XADD", K["events"], "MAXLEN", "~", MAXLEN, "*", "event", ...)
end

-- A job key a peer overwrote with another type cannot be run, retried or promoted: say so (as the fetch
-- does) and return true; the caller drops the id from its state and leaves the key for inspection.
local function report_unreadable(jobKey, id, prev)
  local t = foreign_type(jobKey)
  if not t then return false end
  emit("failed", "jobId", id, "failedReason", "job key is a " .. t .. ", not a hash: dropped", "prev", prev)
  return true
end

-- Paused (v6: meta.paused) or at global concurrency: no marker, no fetch.
local function queue_blocked()
  local m = redis.call("HMGET", K["meta"], "paused", "concurrency")
  if m[1] then return true end
  local cap = tonumber(m[2] or "")
  if cap and redis.call("LLEN", K["active"]) >= cap then return true end
  return false
end

local function wake_workers()
  if not queue_blocked() then redis.call("ZADD", K["marker"], 0, "0") end
end

-- Marker "1" carries the due time (ms) of the earliest delayed job.
local function update_delay_marker()
  local head = redis.call("ZRANGE", K["delayed"], 0, 0, "WITHSCORES")
  if head[1] then
    redis.call("ZADD", K["marker"], math.floor(tonumber(head[2]) / 4096), "1")
  end
end

-- delayed score = due_ms * 4096 + seq, seq = 1 + highest seq already used for that ms (max 4095)
local function delayed_score(due)
  local base = due * 4096
  local top = redis.call("ZREVRANGEBYSCORE", K["delayed"], base + 4095, base, "WITHSCORES", "LIMIT", 0, 1)
  if top[1] then
    local seq = tonumber(top[2]) - base + 1
    if seq > 4095 then seq = 4095 end
    return base + seq
  end
  return base
end

-- prioritized score = priority * 2^32 + (INCR pc mod 2^32); counter 0 puts a job ahead of its peers
local function priority_score(priority, ahead)
  if ahead then return priority * 4294967296 end
  return priority * 4294967296 + (redis.call("INCR", K["pc"]) % 4294967296)
end

-- Put a job in wait or prioritized; `ahead` = it runs next among its peers: the tail of wait (RPUSH, where
-- workers pop), or counter 0 in prioritized. Used for a job put back (requeued, re-prioritized).
local function readd_runnable(id, priority, ahead)
  if priority > 0 then
    redis.call("ZADD", K["prioritized"], priority_score(priority, ahead), id)
  elseif ahead then
    redis.call("RPUSH", K["wait"], id)
  else
    redis.call("LPUSH", K["wait"], id)
  end
  wake_workers()
end

-- Make a job runnable: wait list (LPUSH, or RPUSH for lifo) or the prioritized zset. As BullMQ, lifo only
-- orders the wait list: a prioritized job always queues behind its peers.
local function push_runnable(id, priority, lifo)
  readd_runnable(id, priority, lifo and not (priority > 0))  -- not `<= 0`: a NaN priority stays unprioritized
end

local function schedule_delayed(id, due)
  redis.call("ZADD", K["delayed"], delayed_score(due), id)
  update_delay_marker()
end

-- A job finished (completed/failed): as BullMQ, a dedup key with a ttl keeps its window until it
-- expires; a key without one is released if it still points at that job. Returns the dedup id.
local function release_dedup(jobKey, id)
  local deid = hget(jobKey, "deid")
  if deid then
    local dk = prefix .. "de:" .. deid
    local ttl = redis.call("PTTL", dk)
    if ttl == 0 or (ttl == -1 and redis.call("GET", dk) == id) then redis.call("DEL", dk) end
  end
  return deid
end

-- keepLastIfActive: a job added while its dedup key's job was active waits in dn:<dedup id> (written
-- by a Node producer, or sbqueue's); when that job finishes it becomes a real job, as BullMQ 6.7.6 does.
local function requeue_dedup_next(deid, now)
  local nk = prefix .. "dn:" .. deid
  if key_type(nk) ~= "hash" then return end
  local d = redis.call("HMGET", nk, "name", "data", "opts", "pk", "pd", "pdk", "rjk", "jid")
  local counter = redis.call("INCR", K["id"])  -- advanced either way, as BullMQ
  local id = d[8] or tostring(counter)
  local ok, opts = pcall(cjson.decode, d[3] or "{}")
  if not ok or type(opts) ~= "table" then opts = {} end
  local dk = prefix .. "de:" .. deid
  local de = type(opts["de"]) == "table" and opts["de"] or {}
  local ttl = tonumber(de["ttl"]) or 0
  if ttl > 0 and not de["keepLastIfActive"] then
    redis.call("SET", dk, id, "PX", math.floor(ttl))
  else
    redis.call("SET", dk, id)
  end
  local delay = math.floor(tonumber(opts["delay"]) or 0)
  local priority = math.floor(tonumber(opts["priority"]) or 0)
  local name = d[1] or ""
  local fields = {"name", name, "data", d[2] or "{}", "opts", d[3] or "{}", "timestamp", now,
    "delay", delay, "priority", priority, "deid", deid}
  if d[4] then
    fields[#fields + 1] = "parentKey"; fields[#fields + 1] = d[4]
    fields[#fields + 1] = "parent"; fields[#fields + 1] = d[5] or ""
  end
  if d[7] then fields[#fields + 1] = "rjk"; fields[#fields + 1] = d[7] end
  redis.call("HSET", prefix .. id, unpack(fields))
  emit("added", "jobId", id, "name", name)
  if delay > 0 then
    schedule_delayed(id, now + delay)
    emit("delayed", "jobId", id, "delay", now + delay)
  else
    push_runnable(id, priority, opts["lifo"] == true)
    emit("waiting", "jobId", id)
  end
  if d[6] then redis.call("SADD", d[6], prefix .. id) end
  redis.call("DEL", nk)
end

-- A job is removed: its dedup key goes (ttl or not) if it still points at that job, and with it a
-- job parked for that key by keepLastIfActive (dn:<id>), as BullMQ 6.7.6 does.
local function drop_dedup(jobKey, id)
  local deid = hget(jobKey, "deid")
  if deid then
    local dk = prefix .. "de:" .. deid
    if redis.call("GET", dk) == id then redis.call("DEL", dk, prefix .. "dn:" .. deid) end
  end
end

-- Delete a job's hash and sub-keys (its dedup key is the caller's business).
local function delete_job_keys(id)
  local jobKey = prefix .. id
  redis.call("DEL", jobKey, jobKey .. ":logs", jobKey .. ":lock", jobKey .. ":dependencies",
    jobKey .. ":processed", jobKey .. ":failed", jobKey .. ":unsuccessful")
end

-- Remove a job entirely, dedup key included.
local function delete_job(id)
  drop_dedup(prefix .. id, id)
  delete_job_keys(id)
end

-- Is `id` the pending iteration of a live job scheduler? (exempt from clean/remove/stalled failure)
local function is_current_iteration(jobKey, id)
  local rjk = hget(jobKey, "rjk")
  if not rjk then return false end
  local score = redis.call("ZSCORE", K["repeat"], rjk)
  if not score then return false end
  return id == ("repeat:" .. rjk .. ":" .. score)
end

-- Is `id` a run of a job scheduler that still exists? (BullMQ 6.7.6 never fails such a run for
-- stalling: it goes back to wait however often it stalled)
local function is_scheduler_run(jobKey)
  local rjk = hget(jobKey, "rjk")
  if not rjk then return false end
  return redis.call("EXISTS", prefix .. "repeat:" .. rjk) == 1 or redis.call("ZSCORE", K["repeat"], rjk) ~= false
end

-- Move due delayed jobs to wait/prioritized (at most 1000 per call).
local function promote_due(now)
  local ids = redis.call("ZRANGEBYSCORE", K["delayed"], 0, (now + 1) * 4096 - 1, "LIMIT", 0, 1000)
  if #ids == 0 then return 0 end
  for i = 1, #ids do
    local id = ids[i]
    redis.call("ZREM", K["delayed"], id)
    local jobKey = prefix .. id
    local keyType = key_type(jobKey)
    if keyType ~= "hash" and keyType ~= "none" then
      redis.call("LPUSH", K["wait"], id)  -- not a hash (a buggy peer): the fetch drops it and says so
    elseif keyType == "hash" then
      local priority = job_priority(jobKey)
      redis.call("HSET", jobKey, "delay", 0)
      if priority > 0 then
        redis.call("ZADD", K["prioritized"], priority_score(priority, false), id)
      else
        redis.call("LPUSH", K["wait"], id)
      end
      emit("waiting", "jobId", id, "prev", "delayed")
    end
  end
  wake_workers()
  return #ids
end

-- Remove ids from a zset (ZREM) in chunks that stay clear of Lua's unpack limit.
local function zrem_all(key, ids)
  for i = 1, #ids, 1000 do
    redis.call("ZREM", key, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
