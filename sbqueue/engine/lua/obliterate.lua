--@include flow
--[[ obliterate — delete a queue's jobs and keys, one bounded batch per call (queue must be paused).

  KEYS: queue
  ARGV[1] force       "1" = also delete active jobs (their workers will lose their locks)
  ARGV[2] batch       at most this many jobs deleted per call

  Returns: -12 if the queue has active jobs and not force; else the number of jobs still to
           delete (0 = done: every queue key is gone, except de:/dn: keys, which the caller SCANs)
  Events: none (the events stream itself is deleted)
]]
if ARGV[1] ~= "1" and redis.call("LLEN", K["active"]) > 0 then return -12 end
local budget = tonumber(ARGV[2])
local lists = {"active", "wait", "paused"}
local sets = {"delayed", "prioritized", "completed", "failed", "waiting-children"}
for _, s in ipairs(lists) do
  if budget <= 0 then break end
  local ids = redis.call("LRANGE", K[s], 0, budget - 1)
  for i = 1, #ids do
    flow_child_gone(prefix .. ids[i], true)  -- a parent elsewhere waiting only for it runs (BullMQ)
    delete_job(ids[i])
  end
  if #ids > 0 then redis.call("LTRIM", K[s], #ids, -1) end
  budget = budget - #ids
end
for _, s in ipairs(sets) do
  if budget <= 0 then break end
  local ids = redis.call("ZRANGE", K[s], 0, budget - 1)
  for i = 1, #ids do
    flow_child_gone(prefix .. ids[i], true)
    delete_job(ids[i])
  end
  if #ids > 0 then zrem_all(K[s], ids) end
  budget = budget - #ids
end
if budget > 0 then
  local scheds = redis.call("ZRANGE", K["repeat"], 0, budget - 1)
  for i = 1, #scheds do redis.call("DEL", prefix .. "repeat:" .. scheds[i]) end
  if #scheds > 0 then zrem_all(K["repeat"], scheds) end
  budget = budget - #scheds
end
local left = 0
for _, s in ipairs(lists) do left = left + redis.call("LLEN", K[s]) end
for _, s in ipairs(sets) do left = left + redis.call("ZCARD", K[s]) end
left = left + redis.call("ZCARD", K["repeat"])
if left == 0 then
  for name, key in pairs(K) do redis.call("DEL", key) end
  redis.call("DEL", prefix .. "delay", prefix .. "priority")
end
return left
