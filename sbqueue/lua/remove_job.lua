--[[ remove_job — delete one job from whatever state holds it.

  KEYS: queue
  ARGV[1] job_id

  Returns: 1 removed; 0 locked by a worker (left alone); -1 no such job;
           -8 current iteration of a job scheduler (remove the scheduler instead)
  Events: removed prev=<state key name>
]]
local id = ARGV[1]
local jobKey = prefix .. id
if redis.call("EXISTS", jobKey) == 0 then
  -- still drop a dangling id from the state keys so readers stop tripping on it
  for _, s in ipairs({"wait", "active", "paused"}) do redis.call("LREM", K[s], 0, id) end
  for _, s in ipairs({"prioritized", "delayed", "completed", "failed", "waiting-children"}) do
    redis.call("ZREM", K[s], id)
  end
  return -1
end
if redis.call("EXISTS", jobKey .. ":lock") == 1 then return 0 end
if is_current_iteration(jobKey, id) then return -8 end
local prev = "unknown"
for _, s in ipairs({"completed", "failed", "delayed", "prioritized", "waiting-children"}) do
  if redis.call("ZREM", K[s], id) > 0 then prev = s end
end
for _, s in ipairs({"wait", "active", "paused"}) do
  if redis.call("LREM", K[s], 0, id) > 0 then prev = s end
end
redis.call("SREM", K["stalled"], id)
delete_job(id)
emit("removed", "jobId", id, "prev", prev)
return 1
