--@include flow
--[[ drain — delete waiting (and optionally delayed) jobs, by id, one bounded batch per call.
  Waiting means wait, prioritized and a legacy v5 `paused` list (as BullMQ 6.7 drains it too).

  Unlike BullMQ 6.7 (which trims `wait` by count and can leave ids without hashes, spec §23), every
  removal here is by id, and the current iteration of each job scheduler stays where it is.

  KEYS: queue
  ARGV[1] delayed     "1" = also drain the delayed set
  ARGV[2] batch       at most this many entries examined per state in this call
  ARGV[3] cursor      entries kept (scheduler iterations) in earlier calls, per state:
                      "wait,prioritized,paused,delayed"

  Returns: {removed count, next cursor, more (1 = call again)}
  Events: none (as BullMQ)
]]
local batch = tonumber(ARGV[2])
local cur = {}
for n in string.gmatch(ARGV[3], "[^,]+") do cur[#cur + 1] = tonumber(n) end
local removed, more = 0, 0
local states = {"wait", "prioritized", "paused"}
if ARGV[1] == "1" then states[4] = "delayed" end
for s = 1, #states do
  local state = states[s]
  local key = K[state]
  local entries
  local isList = state == "wait" or state == "paused"
  if isList then
    entries = redis.call("LRANGE", key, cur[s], cur[s] + batch - 1)
  else
    entries = redis.call("ZRANGE", key, cur[s], cur[s] + batch - 1)
  end
  for i = 1, #entries do
    local id = entries[i]
    if is_current_iteration(prefix .. id, id) then
      cur[s] = cur[s] + 1
    else
      if isList then redis.call("LREM", key, 1, id) else redis.call("ZREM", key, id) end
      flow_child_gone(prefix .. id, true)  -- a parent waiting only for it stops waiting (BullMQ)
      delete_job(id)
      removed = removed + 1
    end
  end
  if #entries == batch then more = 1 end
end
if ARGV[1] == "1" then update_delay_marker() end
return {removed, cur[1] .. "," .. cur[2] .. "," .. cur[3] .. "," .. (cur[4] or 0), more}
