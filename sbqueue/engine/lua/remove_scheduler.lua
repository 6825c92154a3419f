--@include scheduler
--[[ remove_scheduler — delete a job scheduler and its pending (not yet started) iteration.

  KEYS: queue
  ARGV[1] scheduler_id

  Returns: 1 removed; 0 no such scheduler
  Events: removed prev=<state key> for the pending iteration
]]
local sid = ARGV[1]
local score = redis.call("ZSCORE", K["repeat"], sid)
local existed = redis.call("DEL", prefix .. "repeat:" .. sid)
if score then
  drop_pending_iteration(sid, score, true)
  redis.call("ZREM", K["repeat"], sid)
  return 1
end
return existed
