-- Parent/child (flow) helpers: our own code, BullMQ 6.7.6 semantics (facts: a parent's pending children
-- are the set <parentKey>:dependencies of child job keys; completed children's return values go to the
-- hash <parentKey>:processed; children that failed with continue/ignore go to the hash <parentKey>:failed,
-- with fail-parent to the zset <parentKey>:unsuccessful; a child's hash holds `parentKey` and `parent` =
-- JSON {id, queueKey[, fpof|cpof|idof|rdof]}). A parent may live in another queue (or under another
-- prefix), so nothing here uses the K table: every key is built from the parent's queue key
-- "<prefix>:<queue>".

-- The events stream length of a queue we were not called for (its meta, default 10000; never written).
local function flow_maxlen(queueKey)
  return tonumber(redis.call("HGET", queueKey .. ":meta", "opts.maxLenEvents") or "") or 10000
end

local function flow_emit(queueKey, ...)
  redis.call("XADD", queueKey .. ":events", "MAXLEN", "~", flow_maxlen(queueKey), "*", "event", ...)
end

-- Paused, or at its global concurrency cap: a released parent gets no wake-up marker.
local function flow_blocked(queueKey)
  local m = redis.call("HMGET", queueKey .. ":meta", "paused", "concurrency")
  if m[1] then return true end
  local cap = tonumber(m[2] or "")
  return cap ~= nil and redis.call("LLEN", queueKey .. ":active") >= cap
end

-- "<prefix>:<queue>:<id>" -> id, "<prefix>:<queue>" (the id is what follows the last ':')
local function flow_split_key(jobKey)
  local id = string.match(jobKey, ".*:(.*)")
  if not id then return nil, nil end
  return id, string.sub(jobKey, 1, #jobKey - #id - 1)
end

-- The parent link of a child: parentKey, parentId, parent queue key, decoded `parent` JSON (or nil when
-- only `parentKey` is there). nil when the job has no parent.
local function flow_parent_of(jobKey)
  local a = redis.pcall("HMGET", jobKey, "parentKey", "parent")
  if type(a) ~= "table" or a.err then return nil end
  local data
  if a[2] then
    local ok, decoded = pcall(cjson.decode, a[2])
    if ok and type(decoded) == "table" and decoded["id"] ~= nil and type(decoded["queueKey"]) == "string" then
      data = decoded
    end
  end
  local parentKey = a[1]
  if data then
    local pid = tostring(data["id"])
    return parentKey or (data["queueKey"] .. ":" .. pid), pid, data["queueKey"], data
  end
  if parentKey and parentKey ~= "" then
    local pid, queueKey = flow_split_key(parentKey)
    if pid then return parentKey, pid, queueKey, nil end
  end
  return nil
end

-- Move a parent whose children are done to where its own options say: delayed (its `delay`),
-- prioritized (its `priority`) or the head of wait; marker and events as a Node worker leaves them.
local function flow_move_parent_to_wait(queueKey, parentKey, parentId, now)
  local a = redis.call("HMGET", parentKey, "priority", "delay")
  local priority = tonumber(a[1] or "0") or 0
  local delay = tonumber(a[2] or "0") or 0
  if delay > 0 then
    local due = now + delay
    local delayedKey = queueKey .. ":delayed"
    redis.call("ZADD", delayedKey, due * 4096, parentId)
    flow_emit(queueKey, "delayed", "jobId", parentId, "delay", due)
    local head = redis.call("ZRANGE", delayedKey, 0, 0, "WITHSCORES")
    if head[1] then
      redis.call("ZADD", queueKey .. ":marker", math.floor(tonumber(head[2]) / 4096), "1")
    end
    return
  end
  if priority > 0 then
    local counter = redis.call("INCR", queueKey .. ":pc") % 4294967296
    redis.call("ZADD", queueKey .. ":prioritized", priority * 4294967296 + counter, parentId)
  else
    redis.call("RPUSH", queueKey .. ":wait", parentId)  -- the tail: it runs next
  end
  if not flow_blocked(queueKey) then redis.call("ZADD", queueKey .. ":marker", 0, "0") end
  flow_emit(queueKey, "waiting", "jobId", parentId, "prev", "waiting-children")
end

-- Release the parent if it still exists and waits for children.
local function flow_release_if_waiting(queueKey, parentKey, parentId, now)
  if redis.call("EXISTS", parentKey) == 1 and redis.call("ZREM", queueKey .. ":waiting-children", parentId) == 1 then
    flow_move_parent_to_wait(queueKey, parentKey, parentId, now)
  end
end

local function flow_release_if_done(queueKey, parentKey, parentId, now)
  if redis.call("SCARD", parentKey .. ":dependencies") == 0 then
    flow_release_if_waiting(queueKey, parentKey, parentId, now)
  end
end

-- A child completed: record its return value on the parent; release the parent when nothing is pending.
local function flow_child_completed(jobKey, value, now)
  local parentKey, parentId, queueKey = flow_parent_of(jobKey)
  if not parentKey then return end
  if redis.call("SREM", parentKey .. ":dependencies", jobKey) == 1 then
    redis.call("HSET", parentKey .. ":processed", jobKey, value)
    flow_release_if_done(queueKey, parentKey, parentId, now)
  end
end

-- A child failed for good: apply its parent options (carried in its `parent` JSON), first match wins:
--   fpof  the parent fails too: `defa` on it and it is released to run (a worker fails it at once);
--   cpof  recorded in <parent>:failed and the parent is released at once (other children may still run);
--   idof  recorded in <parent>:failed; released when nothing else is pending;
--   rdof  dropped from the dependencies; released when nothing else is pending.
-- Without any of them the child stays pending and the parent keeps waiting.
local function flow_child_failed(jobKey, reason, now)
  local parentKey, parentId, queueKey, data = flow_parent_of(jobKey)
  if not data then return end
  parentKey = queueKey .. ":" .. parentId
  local deps = parentKey .. ":dependencies"
  if data["fpof"] then
    if redis.call("SREM", deps, jobKey) == 1 then
      redis.call("ZADD", parentKey .. ":unsuccessful", now, jobKey)
      if redis.call("EXISTS", parentKey) == 1 then
        local why = "child " .. jobKey .. " failed"
        local from
        if redis.call("ZSCORE", queueKey .. ":waiting-children", parentId) then
          from = ":waiting-children"
        elseif redis.call("ZSCORE", queueKey .. ":delayed", parentId) then
          from = ":delayed"
          redis.call("HSET", parentKey, "delay", 0)
        end
        if from then
          redis.call("ZREM", queueKey .. from, parentId)
          redis.call("HSET", parentKey, "defa", why)
          flow_move_parent_to_wait(queueKey, parentKey, parentId, now)
        elseif not redis.call("ZSCORE", queueKey .. ":failed", parentId) then
          redis.call("HSET", parentKey, "defa", why)
        end
      end
    end
  elseif data["cpof"] then
    if redis.call("SREM", deps, jobKey) == 1 then
      redis.call("HSET", parentKey .. ":failed", jobKey, reason)
      flow_release_if_waiting(queueKey, parentKey, parentId, now)
    end
  elseif data["idof"] or data["rdof"] then
    if redis.call("SREM", deps, jobKey) == 1 then
      flow_release_if_done(queueKey, parentKey, parentId, now)
      if data["idof"] then redis.call("HSET", parentKey .. ":failed", jobKey, reason) end
    end
  end
end

-- A child is deleted (removed, or removeOnComplete/removeOnFail on a child still pending): drop it from
-- its parent's dependencies; the parent, if that was its last pending child, goes to the head of wait
-- (as BullMQ: its delay and priority are not applied on this path). `emitWaiting` false skips the event.
-- Returns true when the child was pending.
local function flow_child_removed(jobKey, parentKey, emitWaiting)
  if not parentKey then
    parentKey = hget(jobKey, "parentKey")
    if not parentKey or parentKey == "" or redis.call("EXISTS", parentKey) == 0 then return false end
  end
  local deps = parentKey .. ":dependencies"
  if redis.call("SREM", deps, jobKey) == 0 then return false end
  if redis.call("SCARD", deps) == 0 then
    local parentId, queueKey = flow_split_key(parentKey)
    if parentId and redis.call("ZREM", queueKey .. ":waiting-children", parentId) == 1 then
      redis.call("RPUSH", queueKey .. ":wait", parentId)
      if not flow_blocked(queueKey) then redis.call("ZADD", queueKey .. ":marker", 0, "0") end
      if emitWaiting ~= false then
        flow_emit(queueKey, "waiting", "jobId", parentId, "prev", "waiting-children")
      end
    end
  end
  return true
end

-- Is this job, or a child it still waits for (recursively), locked by a worker?
local function flow_locked(jobKey)
  if redis.call("EXISTS", jobKey .. ":lock") == 1 then return true end
  local pending = redis.call("SMEMBERS", jobKey .. ":dependencies")
  for i = 1, #pending do
    if flow_locked(pending[i]) then return true end
  end
  return false
end

-- Take a job id out of whichever state of its queue holds it; returns that state's name.
local function flow_unlist(queueKey, id)
  local prev = "unknown"
  for _, s in ipairs({"completed", "failed", "delayed", "prioritized", "waiting-children"}) do
    if redis.call("ZREM", queueKey .. ":" .. s, id) > 0 then prev = s end
  end
  for _, s in ipairs({"wait", "active", "paused"}) do
    if redis.call("LREM", queueKey .. ":" .. s, 0, id) > 0 then prev = s end
  end
  redis.call("SREM", queueKey .. ":stalled", id)
  return prev
end

-- Remove a job and, recursively, its children (in any queue), as BullMQ's Job.remove() does by default:
-- the job leaves its parent's dependencies first (a parent left with nothing pending goes to wait), then
-- its processed, ignored, unsuccessful and pending children go, then the job. `only_unprocessed` keeps
-- processed children, failed pending ones and locked ones (remove_unprocessed_children). `parentKey` is the
-- parent being removed (nil: the job's own parent, if it still exists).
local flow_remove_job
local function flow_remove_children(jobKey, only_unprocessed)
  if not only_unprocessed then
    for _, sub in ipairs({":processed", ":failed"}) do
      local done = redis.call("HKEYS", jobKey .. sub)
      for i = 1, #done do
        local cid, cq = flow_split_key(done[i])
        if cid then flow_remove_job(cq, cid, jobKey, false) end
      end
    end
    local failed = redis.call("ZRANGE", jobKey .. ":unsuccessful", 0, -1)
    for i = 1, #failed do
      local cid, cq = flow_split_key(failed[i])
      if cid then flow_remove_job(cq, cid, jobKey, false) end
    end
  end
  local pending = redis.call("SMEMBERS", jobKey .. ":dependencies")
  for i = 1, #pending do
    local cid, cq = flow_split_key(pending[i])
    if cid then flow_remove_job(cq, cid, jobKey, only_unprocessed) end
  end
end

flow_remove_job = function(queueKey, id, parentKey, only_unprocessed)
  local jobKey = queueKey .. ":" .. id
  if only_unprocessed then
    if redis.call("EXISTS", jobKey .. ":lock") == 1 then return end
    if redis.call("ZSCORE", queueKey .. ":failed", id) then return end
  end
  flow_child_removed(jobKey, parentKey)
  flow_remove_children(jobKey, only_unprocessed)
  local prev = flow_unlist(queueKey, id)
  local deid = hget(jobKey, "deid")
  if deid then
    local dk = queueKey .. ":de:" .. deid
    if redis.call("GET", dk) == id then redis.call("DEL", dk) end
  end
  if redis.call("DEL", jobKey, jobKey .. ":logs", jobKey .. ":lock", jobKey .. ":dependencies",
      jobKey .. ":processed", jobKey .. ":failed", jobKey .. ":unsuccessful") > 0 then
    flow_emit(queueKey, "removed", "jobId", id, "prev", prev)
  end
end

-- A job of this queue is deleted by clean, drain, obliterate (hard = true) or removeOn* retention
-- (hard = false): if it was the last pending child of a live parent, the parent stops waiting — as BullMQ:
-- soft, the parent goes to wait (event `waiting`); hard, a parent in this same queue is deleted with it,
-- one in another queue goes to wait without an event.
local function flow_child_gone(jobKey, hard)
  if not hard then
    flow_child_removed(jobKey, nil)
    return
  end
  local parentKey = hget(jobKey, "parentKey")
  if not parentKey or parentKey == "" or redis.call("EXISTS", parentKey) == 0 then return end
  local deps = parentKey .. ":dependencies"
  if redis.call("SREM", deps, jobKey) == 0 or redis.call("SCARD", deps) > 0 then return end
  local parentId, queueKey = flow_split_key(parentKey)
  if not parentId or redis.call("ZREM", queueKey .. ":waiting-children", parentId) == 0 then return end
  if queueKey .. ":" == prefix then
    flow_child_gone(parentKey, true)
    drop_dedup(parentKey, parentId)
    delete_job_keys(parentId)
  else
    redis.call("RPUSH", queueKey .. ":wait", parentId)
    if not flow_blocked(queueKey) then redis.call("ZADD", queueKey .. ":marker", 0, "0") end
  end
end

-- A finished child is retried: it is pending for its parent again (BullMQ) — out of the parent's
-- :unsuccessful/:failed (it had failed) or :processed (it had completed), back into :dependencies. A parent
-- that already left waiting-children is not moved back there.
local function flow_child_retried(jobKey, prevState)
  local parentKey = hget(jobKey, "parentKey")
  if not parentKey or parentKey == "" or redis.call("EXISTS", parentKey) == 0 then return end
  local back
  if prevState == "failed" then
    back = redis.call("ZREM", parentKey .. ":unsuccessful", jobKey) == 1
      or redis.call("HDEL", parentKey .. ":failed", jobKey) == 1
  else
    back = redis.call("HDEL", parentKey .. ":processed", jobKey) == 1
  end
  if back then redis.call("SADD", parentKey .. ":dependencies", jobKey) end
end
