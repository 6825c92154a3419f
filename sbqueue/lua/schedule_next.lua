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

  Returns: the new iteration's id; "" when not advanced (not current, removed, limit or end reached)
  Events: added + delayed|waiting
]]
local sid = ARGV[1]
local skey = prefix .. "repeat:" .. sid
local score = redis.call("ZSCORE", K["repeat"], sid)
if not score or ("repeat:" .. sid .. ":" .. score) ~= ARGV[2] then return "" end
local s = redis.call("HMGET", skey, "name", "data", "limit", "ic", "endDate")
local nextMs = tonumber(ARGV[3])
local limit, ic, endDate = tonumber(s[3] or ""), tonumber(s[4] or "0") or 0, tonumber(s[5] or "")
if (limit and ic >= limit) or (endDate and nextMs > endDate) then
  redis.call("ZREM", K["repeat"], sid)
  redis.call("DEL", skey)
  return ""
end
redis.call("ZADD", K["repeat"], nextMs, sid)
hincrby(skey, "ic", 1)
return add_iteration(sid, nextMs, tonumber(ARGV[4]), s[1] or "", s[2] or "{}", ARGV[5], tonumber(ARGV[6]))
