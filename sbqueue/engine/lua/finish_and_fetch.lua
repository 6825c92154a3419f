--@include flow
--[[ finish_and_fetch — the worker's one call: settle finished jobs, then fetch the next ones.

  KEYS: queue
  ARGV[1] now             ms
  ARGV[2] worker_id       token prefix; a job's token is "<worker_id>:<attempts started>", except that
                          "=<token>" locks fetched jobs with <token> itself (BullMQ's getNextJob(token))
  ARGV[3] worker_name     written to the job as `pb` ("" = none)
  ARGV[4] lock_ms         lock duration for fetched jobs
  ARGV[5] fetch           how many jobs to fetch (0 = only settle)
  ARGV[6] limit_max       worker rate limit: jobs per window (0 = none; meta.max wins)
  ARGV[7] limit_ms        worker rate-limit window (0 = none; falls back to meta.duration)
  ARGV[8] metrics_points  per-minute metrics data points to keep (0 = no metrics)
  ARGV[9] n_finish        number of finish groups that follow, each of 10 values:
    id, token, kind, value, stacktrace, due, keep_count, keep_age_s, keep_limit, flags
    kind: "completed" | "failed" | "retry" (back to wait, attempt counted) |
          "delay" (to delayed until `due` ms) | "requeue" (back to run next, not counted: rate limit,
          shutdown; a prioritized job goes ahead of its priority peers)
    value: returnvalue JSON (completed) or failedReason (others); stacktrace: JSON array or ""
    keep_count: -1 keep all, 0 delete at once, n keep newest n; keep_age_s: 0 = no age limit;
    keep_limit: most jobs the age rule deletes per finish (BullMQ's keepJobs.limit, default 1000)
    flags: "e" = retries exhausted (emit retries-exhausted), "s" = skip the attempt count (delay),
           "l" = lifo job (a retry goes back to the tail of wait, as BullMQ's retryJob RPUSHes it),
           "r" = requeued by a RateLimitError: this worker waits out the limiter key's ttl (as Node, a
           manual rate limit holds only the worker that hit it and workers that have a limiter)

  Returns: {codes, jobs, rate_limit_ttl, next_delayed_ms}
    codes: one per finish: 1 ok, -1 job missing, -2 lock missing, -3 not active, -6 lock taken,
           -4 completing a parent with pending children, -9 completing a parent with failed children
           (fail_parent_on_failure); on -4/-9 nothing changed: the worker fails the job instead
    jobs:  {id, token, flat HGETALL} per fetched job
  Flows: a finished child updates its parent (includes/flow.lua): completed -> <parent>:processed, and
         the parent released when nothing is pending; failed -> its fpof/cpof/idof/rdof option.
  Events: (the parent's waiting|delayed, in its own queue) completed | failed (+ retries-exhausted) |
          waiting prev=active | delayed; drained;
          waiting prev=delayed (promotions); active prev=waiting; failed (an id whose key is not a hash: dropped)
]]
local now = tonumber(ARGV[1])
local metricsPoints = tonumber(ARGV[8])
local codes = {}

local function collect_metrics(kind)
  local mkey = K["metrics:" .. kind]
  local before = hincrby(mkey, "count", 1) - 1
  local prev = redis.call("HMGET", mkey, "prevTS", "prevCount")
  local prevTs = tonumber(prev[1] or "")
  if not prevTs then  -- first time (or a value a peer garbled): start counting from now
    redis.call("HSET", mkey, "prevTS", now, "prevCount", 0)
    return
  end
  local minutes = math.floor(now / 60000) - math.floor(prevTs / 60000)
  if minutes <= 0 then return end
  if minutes > metricsPoints then minutes = metricsPoints end
  -- the count of prevTS's minute goes deepest, then a zero for every minute skipped since
  local points = {before - (tonumber(prev[2] or "0") or 0)}
  for i = 2, minutes do points[i] = 0 end
  local dataKey = K["metrics:" .. kind .. ":data"]
  redis.call("LPUSH", dataKey, unpack(points))
  redis.call("LTRIM", dataKey, 0, metricsPoints - 1)
  redis.call("HSET", mkey, "prevTS", now, "prevCount", before)
end

-- removeOnComplete/removeOnFail {count, age, limit}: as BullMQ, the jobs dropped keep their dedup keys
-- (a key with a ttl is a time window that outlives its job), and age cleanup takes the newest of the
-- expired jobs first, at most `limit` (default 1000) per finish.
local function apply_retention(setKey, keepCount, keepAge, keepLimit)
  if keepAge > 0 then
    local cutoff = now - keepAge * 1000
    local old = redis.call("ZREVRANGEBYSCORE", setKey, cutoff, "-inf", "LIMIT", 0, keepLimit)
    for i = 1, #old do
      flow_child_gone(prefix .. old[i], false)  -- a pending child (failed, no option) frees its parent
      delete_job_keys(old[i])
    end
    if #old > 0 and #old < keepLimit then
      redis.call("ZREMRANGEBYSCORE", setKey, "-inf", cutoff)
    elseif #old > 0 then
      zrem_all(setKey, old)
    end
  end
  if keepCount > 0 then
    local extra = redis.call("ZRANGE", setKey, 0, -(keepCount + 1))
    for i = 1, #extra do
      flow_child_gone(prefix .. extra[i], false)
      delete_job_keys(extra[i])
    end
    if #extra > 0 then zrem_all(setKey, extra) end
  end
end

local settled, finished = 0, 0
local heldTtl = 0  -- a manual rate limit this worker hit (flag "r")
local n = tonumber(ARGV[9])
for f = 0, n - 1 do
  local b = 10 + f * 10
  local id, token, kind, value, stack = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local jobKey = prefix .. id
  local code = 1
  if token ~= "0" then
    local held = redis.call("GET", jobKey .. ":lock")
    if held == false then code = -2 elseif held ~= token then code = -6 end
  end
  if code == 1 and redis.call("EXISTS", jobKey) == 0 then code = -1 end
  if code == 1 and kind == "completed" then  -- a parent completes only once its children are done
    if redis.call("SCARD", jobKey .. ":dependencies") ~= 0 then
      code = -4
    elseif redis.call("ZCARD", jobKey .. ":unsuccessful") ~= 0 then
      code = -9
    end
  end
  if code == 1 and redis.call("LREM", K["active"], -1, id) == 0 then code = -3 end
  if code == 1 then
    settled = settled + 1
    redis.call("DEL", jobKey .. ":lock")
    redis.call("SREM", K["stalled"], id)
    local flags = ARGV[b + 9]
    if kind == "completed" or kind == "failed" then
      finished = finished + 1
      local deid = release_dedup(jobKey, id)
      if deid then requeue_dedup_next(deid, now) end
      local atm = hincrby(jobKey, "atm", 1)
      local keepCount, keepAge = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
      local keepLimit = tonumber(ARGV[b + 8]) or 1000
      if keepLimit < 1 then keepLimit = 1000 end
      local target = K[kind]
      local parentKey = hget(jobKey, "parentKey")
      if parentKey then  -- a child: its parent learns first (as BullMQ, before this job's own event)
        if kind == "completed" then flow_child_completed(jobKey, value, now) else flow_child_failed(jobKey, value, now) end
        -- removed on finish while still pending (a failed child without option): the parent stops waiting
        if keepCount == 0 then flow_child_removed(jobKey, parentKey) end
      end
      if kind == "completed" then
        emit("completed", "jobId", id, "returnvalue", value, "prev", "active")
      else
        emit("failed", "jobId", id, "failedReason", value, "prev", "active")
        if string.find(flags, "e", 1, true) then
          emit("retries-exhausted", "jobId", id, "attemptsMade", atm)
        end
      end
      if keepCount == 0 then
        delete_job_keys(id)  -- release_dedup above already handled the dedup key
      else
        if kind == "completed" then
          redis.call("HSET", jobKey, "returnvalue", value, "finishedOn", now)
        else
          redis.call("HSET", jobKey, "failedReason", value, "finishedOn", now)
          if stack ~= "" then redis.call("HSET", jobKey, "stacktrace", stack) end
          redis.call("HDEL", jobKey, "defa")
        end
        redis.call("ZADD", target, now, id)
        apply_retention(target, keepCount, keepAge, keepLimit)
      end
      if metricsPoints > 0 then collect_metrics(kind) end
    elseif kind == "retry" or kind == "delay" then
      if not string.find(flags, "s", 1, true) then
        hincrby(jobKey, "atm", 1)
        redis.call("HSET", jobKey, "failedReason", value)
        if stack ~= "" then redis.call("HSET", jobKey, "stacktrace", stack) end
      end
      if kind == "retry" then
        push_runnable(id, job_priority(jobKey), string.find(flags, "l", 1, true) ~= nil)
        emit("waiting", "jobId", id, "prev", "active")  -- as BullMQ's retryJob
      else
        local due = tonumber(ARGV[b + 5])
        redis.call("HSET", jobKey, "delay", math.max(due - now, 0))
        schedule_delayed(id, due)
        emit("delayed", "jobId", id, "delay", due)
      end
    else -- requeue: runs next, attempt not counted (BullMQ's moveJobFromActiveToWait)
      readd_runnable(id, job_priority(jobKey), true)
      emit("waiting", "jobId", id, "prev", "active")
      if string.find(flags, "r", 1, true) then
        local ttl = redis.call("PTTL", K["limiter"])
        if ttl > heldTtl then heldTtl = ttl end
      end
    end
  end
  codes[#codes + 1] = code
end

-- as BullMQ's moveToFinished: only a completed/failed job (not a retry or a move to delayed) drains
if finished > 0 and redis.call("LLEN", K["wait"]) == 0 and redis.call("LLEN", K["active"]) == 0
    and redis.call("ZCARD", K["prioritized"]) == 0 then
  emit("drained")
end

-- fetch
local jobs = {}
local rateTtl = 0
local want = tonumber(ARGV[5])
if want > 0 then
  promote_due(now)
  local meta = redis.call("HMGET", K["meta"], "paused", "concurrency", "max", "duration")
  if not meta[1] then
    local limitMax = tonumber(meta[3] or ARGV[6]) or 0
    local limitMs = tonumber(ARGV[7]) or 0
    if limitMs == 0 then limitMs = tonumber(meta[4] or "0") or 0 end
    local concurrency = tonumber(meta[2] or "0") or 0
    local workerId, workerName, lockMs = ARGV[2], ARGV[3], tonumber(ARGV[4])
    if heldTtl > 0 then
      rateTtl = heldTtl
      want = 0
    end
    local tries = 0
    while #jobs < want and tries < want * 2 + 10 do
      tries = tries + 1
      if concurrency > 0 and redis.call("LLEN", K["active"]) >= concurrency then break end
      if limitMax > 0 and limitMs > 0 then
        local used = tonumber(redis.call("GET", K["limiter"]) or "0") or 0
        if used >= limitMax then
          rateTtl = redis.call("PTTL", K["limiter"])
          if rateTtl > 0 then break end
          -- expiring this very ms (PTTL 0) or a counter without TTL (-1): start a fresh window, as
          -- BullMQ does (INCR on the dying key would let a whole batch through uncounted)
          redis.call("DEL", K["limiter"])
          rateTtl = 0
        end
      end
      local id = redis.call("RPOPLPUSH", K["wait"], K["active"])
      if not id then
        local top = redis.call("ZPOPMIN", K["prioritized"])
        if not top[1] then break end
        id = top[1]
        redis.call("LPUSH", K["active"], id)
      end
      local jobKey = prefix .. id
      local keyType = key_type(jobKey)
      if string.sub(id, 1, 2) == "0:" or keyType ~= "hash" then
        -- a legacy marker id, or an id whose hash is gone (e.g. BullMQ 6.7's drain bug): drop it
        redis.call("LREM", K["active"], 1, id)
        if keyType ~= "none" and string.sub(id, 1, 2) ~= "0:" then
          -- a key of another type where the job hash should be (a buggy peer): nothing to run; say so
          emit("failed", "jobId", id, "failedReason", "job key is a " .. keyType .. ", not a hash: dropped", "prev",
            "active")
        end
      else
        -- a job flagged `defa` is only failed by this fetch: as BullMQ, it takes no rate-limit token
        if limitMax > 0 and limitMs > 0 and redis.call("HEXISTS", jobKey, "defa") == 0 then
          if redis.call("INCR", K["limiter"]) == 1 then redis.call("PEXPIRE", K["limiter"], limitMs) end
        end
        local ats = hincrby(jobKey, "ats", 1)
        local token = workerId .. ":" .. ats
        if string.sub(workerId, 1, 1) == "=" then token = string.sub(workerId, 2) end
        redis.call("SET", jobKey .. ":lock", token, "PX", lockMs)
        if workerName ~= "" then
          redis.call("HSET", jobKey, "processedOn", now, "pb", workerName)
        else
          redis.call("HSET", jobKey, "processedOn", now)
        end
        emit("active", "jobId", id, "prev", "waiting")
        jobs[#jobs + 1] = {id, token, redis.call("HGETALL", jobKey)}
      end
    end
    if #jobs > 0 then
      if redis.call("LLEN", K["wait"]) + redis.call("ZCARD", K["prioritized"]) > 0 then wake_workers() end
    elseif redis.call("ZCARD", K["prioritized"]) == 0 then
      redis.call("DEL", K["pc"])
    end
  end
end

-- under a global concurrency cap, a slot freed here may be what another worker is waiting for
if settled > 0 and redis.call("HEXISTS", K["meta"], "concurrency") == 1
    and redis.call("LLEN", K["wait"]) + redis.call("ZCARD", K["prioritized"]) > 0 then
  wake_workers()
end

local nextDelayed = 0
local head = redis.call("ZRANGE", K["delayed"], 0, 0, "WITHSCORES")
if head[1] then nextDelayed = math.floor(tonumber(head[2]) / 4096) end
return {codes, jobs, rateTtl, nextDelayed}
