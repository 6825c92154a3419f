--[[ extend_locks — renew the locks a worker holds; a renewed job leaves the `stalled` candidates.

  KEYS: queue
  ARGV[1] lock_ms     new lock duration
  ARGV[2] pairs       the number of (id, token) pairs that follow in ARGV[3..]

  Returns: the ids whose lock was missing or owned by another token (the worker lost them)
  Events: none
]]
local lockMs = tonumber(ARGV[1])
local lost = {}
for i = 0, tonumber(ARGV[2]) - 1 do
  local id, token = ARGV[3 + i * 2], ARGV[4 + i * 2]
  local lockKey = prefix .. id .. ":lock"
  if redis.call("GET", lockKey) == token then
    redis.call("PEXPIRE", lockKey, lockMs)
    redis.call("SREM", K["stalled"], id)
  else
    lost[#lost + 1] = id
  end
end
return lost
