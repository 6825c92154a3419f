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

-- The Redis type of a job key that is neither a hash nor missing (a peer wrote it), else nil.
local function foreign_type(jobKey)
  local t = redis.call("TYPE", jobKey)["ok"]
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

-- Make a job runnable: wait list (LPUSH, or RPUSH for lifo) or the prioritized zset.
local function push_runnable(id, priority, lifo)
  if priority > 0 then
    redis.call("ZADD", K["prioritized"], priority_score(priority, false), id)
  elseif lifo then
    redis.call("RPUSH", K["wait"], id)
  else
    redis.call("LPUSH", K["wait"], id)
  end
  wake_workers()
end

local function schedule_delayed(id, due)
  redis.call("ZADD", K["delayed"], delayed_score(due), id)
  update_delay_marker()
end

-- A job finished (completed/failed): as BullMQ, a dedup key with a ttl keeps its window until it
-- expires; a key without one is released if it still points at that job.
local function release_dedup(jobKey, id)
  local deid = hget(jobKey, "deid")
  if deid then
    local dk = prefix .. "de:" .. deid
    if redis.call("PTTL", dk) == -1 and redis.call("GET", dk) == id then redis.call("DEL", dk) end
  end
end

-- A job is removed: its dedup key goes (ttl or not) if it still points at that job.
local function drop_dedup(jobKey, id)
  local deid = hget(jobKey, "deid")
  if deid then
    local dk = prefix .. "de:" .. deid
    if redis.call("GET", dk) == id then redis.call("DEL", dk) end
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

-- Move due delayed jobs to wait/prioritized (at most 1000 per call).
local function promote_due(now)
  local ids = redis.call("ZRANGEBYSCORE", K["delayed"], 0, (now + 1) * 4096 - 1, "LIMIT", 0, 1000)
  if #ids == 0 then return 0 end
  for i = 1, #ids do
    local id = ids[i]
    redis.call("ZREM", K["delayed"], id)
    local jobKey = prefix .. id
    local keyType = redis.call("TYPE", jobKey)["ok"]
    if keyType ~= "hash" and keyType ~= "none" then
      redis.call("LPUSH", K["wait"], id)  -- not a hash (a buggy peer): the fetch drops it and says so
    elseif keyType == "hash" then
      local priority = tonumber(redis.call("HGET", jobKey, "priority") or "0") or 0
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
