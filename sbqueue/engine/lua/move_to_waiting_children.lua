--[[ move_to_waiting_children — the step pattern: an active parent that added children waits for them.

  KEYS: queue (see sbqueue/_core/keys.py QUEUE_KEYS)
  ARGV[1] job_id
  ARGV[2] token       the worker's lock token ("0" = no lock check)
  ARGV[3] child_key   wait only while this child is pending ("" = while any child is pending)
  ARGV[4] now         ms (the job's score in waiting-children)

  Returns: 0 moved to waiting-children (the lock is released); 1 nothing pending (the job stays active);
           -1 no such job; -2 lock missing; -3 not active; -6 lock owned by another worker;
           -9 a child failed with fail_parent_on_failure
  Events: waiting-children prev=active
]]
local id, token, childKey = ARGV[1], ARGV[2], ARGV[3]
local jobKey = prefix .. id
if redis.call("EXISTS", jobKey) == 0 then return -1 end
if redis.call("ZCARD", jobKey .. ":unsuccessful") ~= 0 then return -9 end
local deps = jobKey .. ":dependencies"
if childKey ~= "" then
  if redis.call("SISMEMBER", deps, childKey) == 0 then return 1 end
elseif redis.call("SCARD", deps) == 0 then
  return 1
end
if token ~= "0" then
  local held = redis.call("GET", jobKey .. ":lock")
  if not held then return -2 end
  if held ~= token then return -6 end
end
redis.call("DEL", jobKey .. ":lock")
redis.call("SREM", K["stalled"], id)
if redis.call("LREM", K["active"], -1, id) == 0 then return -3 end
redis.call("ZADD", K["waiting-children"], tonumber(ARGV[4]), id)
emit("waiting-children", "jobId", id, "prev", "active")
return 0
