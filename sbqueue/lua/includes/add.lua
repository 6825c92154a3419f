-- The add transition shared by add_job (one job) and add_jobs (a batch): A = the 11 values of
-- add_job's ARGV (job_id, name, data, opts, timestamp, delay, priority, lifo, dedup_id, dedup_ttl,
-- scheduler). Returns {job_id, status} (1 added, 0 duplicate custom id, 2 deduplicated).
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
    local dk = prefix .. "de:" .. dedupId
    local ttl = tonumber(A[10])
    local owned
    if ttl > 0 then
      owned = redis.call("SET", dk, id, "PX", ttl, "NX")
    else
      owned = redis.call("SET", dk, id, "NX")
    end
    if not owned then
      local owner = redis.call("GET", dk)
      -- a key with a ttl is a time window (it holds even if its job is gone, as BullMQ); a key
      -- without one whose job hash is gone is stale: this add takes it over
      if owner and (redis.call("PTTL", dk) ~= -1 or redis.call("EXISTS", prefix .. owner) == 1) then
        emit("deduplicated", "jobId", owner, "deduplicationId", dedupId, "deduplicatedJobId", id)
        return {owner, 2}
      end
      if ttl > 0 then redis.call("SET", dk, id, "PX", ttl) else redis.call("SET", dk, id) end
    end
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
