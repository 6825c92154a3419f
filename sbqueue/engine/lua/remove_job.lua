--@include flow
--[[ remove_job — delete one job from whatever state holds it, with its children (as BullMQ's remove).

  A child leaves its parent's dependencies (a parent left with nothing pending goes to wait); a parent's
  children (processed, failed and pending, in any queue) are removed with it, recursively.

  KEYS: queue
  ARGV[1] job_id

  Returns: 1 removed; 0 it or a pending child is locked by a worker (left alone); -1 no such job;
           -8 current iteration of a job scheduler (remove the scheduler instead)
  Events: removed prev=<state key name> (per job removed, in its queue); waiting prev=waiting-children
          (a parent released)
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
if is_current_iteration(jobKey, id) then return -8 end
if flow_locked(jobKey) then return 0 end
flow_remove_job(string.sub(prefix, 1, -2), id, nil, false)
return 1
