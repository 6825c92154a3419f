--@include flow
--@include add
--[[ add_flow — add a tree of parent/child jobs (a flow), or one child of an existing parent, atomically.

  Nodes come parents first (pre-order); each may live in another queue or under another prefix: the
  node's queue is given by its job-key prefix and the shared helpers are pointed at that queue. Every
  check is made before the first write, so a refused flow writes nothing.

  KEYS: queue (see sbqueue/_core/keys.py QUEUE_KEYS; the caller's queue, used for nothing but routing)
  ARGV[1] now         ms (the time parents whose children are all done already are released)
  ARGV[2] n_nodes     number of nodes; then 15 values per node:
                      base (job-key prefix "<prefix>:<queue>:"), job_id ("" = next id of that queue),
                      name, data, opts, timestamp, delay, priority, lifo ("1"/"0"), dedup_id,
                      dedup_ttl, parent_key ("" = none), parent (JSON {id, queueKey[, fpof...]}),
                      has_children ("1": the job waits in waiting-children), dedup_mode (add_job's
                      letters: a node without parent or children deduplicates as Queue.add does)

  Returns: one {job_id, status} per node (1 added, 0 the id existed: linked to its parent instead,
           2 deduplicated: job_id is the owner), or {-5, i} when node i's parent does not exist, or
           {-7, i} when node i's custom id is a job that already belongs to another live parent
           (nothing written in both cases)
  Events: per node, in its own queue: added + waiting-children | waiting | delayed; duplicated;
          deduplicated; a parent whose children were all already completed: waiting prev=waiting-children
]]
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local W = 15

local function use_queue(base)
  if base == prefix then return end  -- nodes come in runs of one queue: switch only when it changes
  for name, _ in pairs(K) do K[name] = base .. name end
  prefix = base
  MAXLEN = nil
end

-- 1. checks, no writes
local created = {}
for i = 0, n - 1 do
  local b = 3 + i * W
  local base, jobId, parentKey = ARGV[b], ARGV[b + 1], ARGV[b + 11]
  if parentKey ~= "" and not created[parentKey] and redis.call("EXISTS", parentKey) == 0 then
    return {-5, i + 1}
  end
  if jobId ~= "" then
    local jobKey = base .. jobId
    if parentKey ~= "" and redis.call("EXISTS", jobKey) == 1 then
      local owner = hget(jobKey, "parentKey")
      if owner and owner ~= parentKey and redis.call("EXISTS", owner) == 1 then return {-7, i + 1} end
    end
    created[jobKey] = true
  end
end

-- 2. writes
local results = {}
local parents, parentOrder = {}, {}
local woken, wakeOrder = {}, {}
for i = 0, n - 1 do
  local b = 3 + i * W
  local base, jobId, name = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local timestamp, delay, priority = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local dedupId, parentKey, parentJson = ARGV[b + 9], ARGV[b + 11], ARGV[b + 12]
  use_queue(base)
  local counter = redis.call("INCR", K["id"])  -- as BullMQ: every add attempt advances the counter
  local id = jobId
  if id == "" then id = tostring(counter) end
  local jobKey = base .. id
  if parentKey ~= "" and not parents[parentKey] then
    parents[parentKey] = parentJson
    parentOrder[#parentOrder + 1] = parentKey
  end
  local status = 1
  if jobId ~= "" and redis.call("EXISTS", jobKey) == 1 then
    -- an existing job joins (or stays with) its parent: done already, or one more pending child
    if parentKey ~= "" then
      if redis.call("ZSCORE", K["completed"], id) then
        redis.call("HSET", parentKey .. ":processed", jobKey, hget(jobKey, "returnvalue") or "null")
      else
        redis.call("SADD", parentKey .. ":dependencies", jobKey)
      end
      redis.call("HSET", jobKey, "parentKey", parentKey, "parent", parentJson)
    end
    emit("duplicated", "jobId", id)
    status = 0
  elseif dedupId ~= "" then
    -- a node without parent or children (the caller refuses dedup on others, as BullMQ): add_job's rules
    local A = {jobId, name, ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8],
      dedupId, ARGV[b + 10], "", ARGV[b + 14]}
    local owner = dedup_check(A, id, dedupId)
    if owner then id, status = owner, 2 end
  end
  if status == 1 then
    local fields = {"name", name, "data", ARGV[b + 3], "opts", ARGV[b + 4], "timestamp", ARGV[b + 5],
      "delay", ARGV[b + 6], "priority", ARGV[b + 7]}
    if parentKey ~= "" then
      fields[#fields + 1] = "parentKey"; fields[#fields + 1] = parentKey
      fields[#fields + 1] = "parent"; fields[#fields + 1] = parentJson
    end
    if dedupId ~= "" then
      fields[#fields + 1] = "deid"; fields[#fields + 1] = dedupId
    end
    redis.call("HSET", jobKey, unpack(fields))
    emit("added", "jobId", id, "name", name)
    if ARGV[b + 13] == "1" then
      redis.call("ZADD", K["waiting-children"], timestamp, id)
      emit("waiting-children", "jobId", id)
    elseif delay > 0 then
      local due = timestamp + delay
      schedule_delayed(id, due)
      emit("delayed", "jobId", id, "delay", due)
    else
      -- as push_runnable, with one wake-up marker per queue at the end instead of one per job
      if priority > 0 then
        redis.call("ZADD", K["prioritized"], priority_score(priority, false), id)
      elseif ARGV[b + 8] == "1" then
        redis.call("RPUSH", K["wait"], id)
      else
        redis.call("LPUSH", K["wait"], id)
      end
      if not woken[base] then
        woken[base] = true
        wakeOrder[#wakeOrder + 1] = base
      end
      emit("waiting", "jobId", id)
    end
    if parentKey ~= "" then redis.call("SADD", parentKey .. ":dependencies", jobKey) end
  end
  results[#results + 1] = {id, status}
end

for _, base in ipairs(wakeOrder) do
  use_queue(base)
  wake_workers()
end

-- 3. a parent all of whose children existed and were already completed has nothing to wait for
for _, parentKey in ipairs(parentOrder) do
  local parent = cjson.decode(parents[parentKey])
  flow_release_if_done(parent["queueKey"], parentKey, tostring(parent["id"]), now)
end
return results
