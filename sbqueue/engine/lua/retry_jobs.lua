--@include flow
--[[ retry_jobs — move finished jobs (failed or completed) back to run again.

  KEYS: queue
  ARGV[1] state       "failed" or "completed"
  ARGV[2] count       at most this many (used when no ids are given)
  ARGV[3] before_ms   only jobs finished at or before this time (used when no ids are given)
  ARGV[4] reset       "1" = also reset attempts made/started
  ARGV[5] n_ids       number of explicit job ids that follow (0 = pick from the state set)

  Returns: {retried ids, codes}: one code per job examined (1 ok, -1 missing, -3 not in that state,
           -13 its key is not a hash: dropped from the state, the key left for inspection)
  Events: waiting prev=<state>; failed (an id whose key is not a hash: dropped)

  A retried child is pending for its parent again (includes/flow.lua flow_child_retried).
  As BullMQ: a job retried by id goes back as it was added (a lifo job to the tail of wait, where it
  runs next); a bulk retry pushes every job to the head of wait (priority is kept: prioritized zset).
]]
local function is_lifo(jobKey)
  local ok, opts = pcall(cjson.decode, redis.call("HGET", jobKey, "opts") or "{}")
  return ok and type(opts) == "table" and opts["lifo"] == true
end

local state = ARGV[1]
local setKey = K[state]
local ids
local nIds = tonumber(ARGV[5])
if nIds > 0 then
  ids = {}
  for i = 1, nIds do ids[i] = ARGV[5 + i] end
else
  ids = redis.call("ZRANGEBYSCORE", setKey, 0, ARGV[3], "LIMIT", 0, tonumber(ARGV[2]))
end
local drop = "failedReason"
if state == "completed" then drop = "returnvalue" end
local retried, codes = {}, {}
for i = 1, #ids do
  local id = ids[i]
  local jobKey = prefix .. id
  local code = 1
  if redis.call("EXISTS", jobKey) == 0 then
    redis.call("ZREM", setKey, id)
    code = -1
  elseif redis.call("ZREM", setKey, id) == 0 then
    code = -3
  elseif report_unreadable(jobKey, id, state) then
    code = -13
  else
    redis.call("HDEL", jobKey, "finishedOn", "processedOn", drop)
    if ARGV[4] == "1" then redis.call("HDEL", jobKey, "atm", "ats", "stc") end
    push_runnable(id, job_priority(jobKey), nIds > 0 and is_lifo(jobKey))
    flow_child_retried(jobKey, state)  -- a child is pending for its parent again (BullMQ)
    emit("waiting", "jobId", id, "prev", state)
    retried[#retried + 1] = id
  end
  codes[#codes + 1] = code
end
return {retried, codes}
