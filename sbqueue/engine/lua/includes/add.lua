-- Deduplication (BullMQ 6.7.6's modes). A[12] holds the mode letters: "k" keepLastIfActive, "e" extend,
-- "r" replace, "s" reschedule. Returns the id of the job that keeps the key when this add is absorbed
-- (deduplicated, or parked in dn:<id> for keepLastIfActive), nil when the add goes ahead.
local function dedup_check(A, id, dedupId)
  local dk = prefix .. "de:" .. dedupId
  local nk = prefix .. "dn:" .. dedupId
  local ttl = tonumber(A[10])
  local mode = A[12] or ""
  local keepLast = string.find(mode, "k", 1, true) ~= nil
  local extend = string.find(mode, "e", 1, true) ~= nil
  local replace = string.find(mode, "r", 1, true) ~= nil

  local function set_key(owner)  -- keepLastIfActive keys have no ttl: they last while their job runs
    if ttl > 0 and not keepLast then redis.call("SET", dk, owner, "PX", ttl) else redis.call("SET", dk, owner) end
  end
  -- a key without ttl whose job hash is gone is stale (its job was lost): this add takes it over
  local function recovered(cur)
    if cur and redis.call("PTTL", dk) == -1 and redis.call("EXISTS", prefix .. cur) == 0 then
      redis.call("DEL", dk, nk)
      set_key(id)
      return true
    end
    return false
  end
  -- keepLastIfActive while the owner runs: park this add in dn:<id> (the latest wins); it becomes a job
  -- when the owner finishes
  local function parked(cur)
    if not (keepLast and cur) then return false end
    local pos = redis.pcall("LPOS", K["active"], cur)
    if type(pos) == "table" then  -- LPOS needs Redis 6.0.6
      pos = nil
      local ids = redis.call("LRANGE", K["active"], 0, -1)
      for i = 1, #ids do if ids[i] == cur then pos = i break end end
    end
    if not pos then return false end
    redis.call("DEL", nk)
    local fields = {"name", A[2], "data", A[3], "opts", A[4], "jid", id}
    if A[11] ~= "" then fields[#fields + 1] = "rjk"; fields[#fields + 1] = A[11] end
    redis.call("HSET", nk, unpack(fields))
    redis.call("PERSIST", dk)
    emit("deduplicated", "jobId", cur, "deduplicationId", dedupId, "deduplicatedJobId", id)
    return true
  end

  local cur = redis.call("GET", dk)
  if replace then
    if not cur then
      set_key(id)
      return nil
    end
    if redis.call("ZREM", K["delayed"], cur) > 0 then  -- only a delayed owner is replaced
      delete_job_keys(cur)
      emit("removed", "jobId", cur, "prev", "delayed")
      emit("deduplicated", "jobId", id, "deduplicationId", dedupId, "deduplicatedJobId", cur)
      redis.call("DEL", nk)
      if ttl > 0 and not keepLast and not extend then redis.call("SET", dk, id, "KEEPTTL") else set_key(id) end
      return nil
    end
    if recovered(cur) then return nil end
    parked(cur)
    return cur
  end
  if ttl > 0 and extend then
    if not cur then
      set_key(id)
      return nil
    end
    if recovered(cur) then return nil end
    if parked(cur) then return cur end
    set_key(cur)  -- the window starts again
    emit("deduplicated", "jobId", cur, "deduplicationId", dedupId, "deduplicatedJobId", id)
    return cur
  end
  local owned
  if ttl > 0 and not keepLast then
    owned = redis.call("SET", dk, id, "PX", ttl, "NX")
  else
    owned = redis.call("SET", dk, id, "NX")
  end
  if owned then return nil end
  cur = redis.call("GET", dk)
  if recovered(cur) then return nil end
  if not parked(cur) then
    emit("deduplicated", "jobId", cur, "deduplicationId", dedupId, "deduplicatedJobId", id)
  end
  if string.find(mode, "s", 1, true) and redis.call("ZSCORE", K["delayed"], cur) then
    -- reschedule: the delayed owner's delay restarts from this add's
    local delay = tonumber(A[6])
    local due = tonumber(A[5]) + delay
    redis.call("HSET", prefix .. cur, "delay", delay)
    redis.call("ZADD", K["delayed"], delayed_score(due), cur)
    emit("delayed", "jobId", cur, "delay", due)
    update_delay_marker()
  end
  return cur
end

-- The add transition shared by add_job (one job) and add_jobs (a batch): A = the 12 values of
-- add_job's ARGV (job_id, name, data, opts, timestamp, delay, priority, lifo, dedup_id, dedup_ttl,
-- scheduler, dedup_mode). Returns {job_id, status} (1 added, 0 duplicate custom id, 2 deduplicated).
local function add_one(A)
  local counter = redis.call("INCR", K["id"])  -- BullMQ advances the counter on every add attempt
  local id = A[1]
  if id == "" then id = tostring(counter) end
  local jobKey = prefix .. id

  if A[1] ~= "" and redis.call("EXISTS", jobKey) == 1 then
    emit("duplicated", "jobId", id)
    return {id, 0}
  end

  local dedupId = A[9]
  if dedupId ~= "" then
    local owner = dedup_check(A, id, dedupId)
    if owner then return {owner, 2} end
  end

  local timestamp = tonumber(A[5])
  local delay = tonumber(A[6])
  local priority = tonumber(A[7])
  local fields = {"name", A[2], "data", A[3], "opts", A[4], "timestamp", A[5],
    "delay", A[6], "priority", A[7]}
  if dedupId ~= "" then
    fields[#fields + 1] = "deid"; fields[#fields + 1] = dedupId
  end
  if A[11] ~= "" then
    fields[#fields + 1] = "rjk"; fields[#fields + 1] = A[11]
  end
  redis.call("HSET", jobKey, unpack(fields))

  emit("added", "jobId", id, "name", A[2])
  if delay > 0 then
    local due = timestamp + delay
    schedule_delayed(id, due)
    emit("delayed", "jobId", id, "delay", due)
  else
    push_runnable(id, priority, A[8] == "1")
    emit("waiting", "jobId", id)
  end
  return {id, 1}
end
