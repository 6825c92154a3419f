--[[ pause — pause or resume a queue (BullMQ 6 semantics: jobs stay in wait).

  KEYS: queue
  ARGV[1] action      "pause" or "resume"

  Returns: 1; on resume, the number of legacy `paused` ids still to move (call again while > 0)
  Events: paused | resumed
]]
if ARGV[1] == "pause" then
  redis.call("HSET", K["meta"], "paused", 1)
  redis.call("DEL", K["marker"])
  emit("paused")
  return 1
end

redis.call("HDEL", K["meta"], "paused")
-- a v5 producer may have left a legacy `paused` list: append it to wait, oldest first
if redis.call("EXISTS", K["paused"]) == 1 then
  if redis.call("EXISTS", K["wait"]) == 0 then
    redis.call("RENAME", K["paused"], K["wait"])
  else
    local chunk = redis.call("LRANGE", K["paused"], 0, 6999)
    redis.call("RPUSH", K["wait"], unpack(chunk))
    redis.call("LTRIM", K["paused"], #chunk, -1)
  end
end
if redis.call("LLEN", K["wait"]) + redis.call("ZCARD", K["prioritized"]) > 0 then wake_workers() end
update_delay_marker()
local left = redis.call("LLEN", K["paused"])
if left == 0 then emit("resumed") end
return left
