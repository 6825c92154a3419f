--@include flow
--[[ release_parent — an operator's fix for a stuck parent: release it if BullMQ's rule says it is due.

  BullMQ releases a parent from waiting-children when its dependencies set is empty; a worker without flow
  support (or a lost update) can leave one there with nothing pending. This does what that worker should
  have done: the parent goes to wait, prioritized or delayed per its own options.

  KEYS: queue (see sbqueue/_core/keys.py QUEUE_KEYS)
  ARGV[1] job_id
  ARGV[2] now         ms

  Returns: 1 released; 0 not waiting for children (nothing changed); -1 no such job;
           -4 children still pending (nothing changed: BullMQ would keep it waiting)
  Events: waiting prev=waiting-children | delayed
]]
local id = ARGV[1]
local jobKey = prefix .. id
if redis.call("EXISTS", jobKey) == 0 then return -1 end
if not redis.call("ZSCORE", K["waiting-children"], id) then return 0 end
if redis.call("SCARD", jobKey .. ":dependencies") > 0 then return -4 end
flow_release_if_waiting(string.sub(prefix, 1, -2), jobKey, id, tonumber(ARGV[2]))
return 1
