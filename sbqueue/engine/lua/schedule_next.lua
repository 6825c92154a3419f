--@include scheduler
--[[ schedule_next — when a worker fetches a scheduler's iteration, enqueue the following one.

  Only the fetch of the scheduler's *current* iteration advances it, so two workers (Node or
  Python) fetching concurrently never create two next iterations.

  KEYS: queue
  ARGV[1] scheduler_id
  ARGV[2] producer_id   id of the iteration just fetched
  ARGV[3] next_ms       due time of the next iteration (client-computed)
  ARGV[4] now           ms
  ARGV[5] job_opts      opts JSON for the new iteration job
  ARGV[6] priority

  Returns: the new iteration's id; "" when not advanced (not current, removed, limit or end reached;
           the scheduler itself is kept, as BullMQ keeps it)
  Events: added + delayed|waiting
]]
local sid = ARGV[1]
local skey = prefix .. "repeat:" .. sid
local score = redis.call("ZSCORE", K["repeat"], sid)
if not score or ("repeat:" .. sid .. ":" .. score) ~= ARGV[2] then return "" end
local s = redis.call("HMGET", skey, "name", "data", "limit", "ic", "endDate")
local nextMs = tonumber(ARGV[3])
local limit, ic, endDate = tonumber(s[3] or ""), tonumber(s[4] or "0") or 0, tonumber(s[5] or "")
-- as BullMQ 6.7.6: past the run-count limit, or once `now` is past endDate, no run is created but the
-- scheduler stays (listed, with its last run's time) until it is removed
if (limit and ic >= limit) or (endDate and tonumber(ARGV[4]) > endDate) then
  return ""
end
if redis.call("EXISTS", prefix .. "repeat:" .. sid .. ":" .. nextMs) == 1 then
  -- as BullMQ 6.7.6's updateJobScheduler: the next run's id is taken, so nothing moves (score, count)
  emit("duplicated", "jobId", "repeat:" .. sid .. ":" .. nextMs)
  return ""
end
redis.call("ZADD", K["repeat"], nextMs, sid)
hincrby(skey, "ic", 1)
return add_iteration(sid, nextMs, tonumber(ARGV[4]), s[1] or "", s[2] or "{}", ARGV[5], tonumber(ARGV[6]))
