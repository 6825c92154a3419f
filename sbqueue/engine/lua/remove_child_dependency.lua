--@include flow
--[[ remove_child_dependency — detach a job from its parent (the parent no longer waits for it).

  KEYS: queue (see sbqueue/_core/keys.py QUEUE_KEYS)
  ARGV[1] job_id

  Returns: 1 detached (a parent left with nothing pending goes to wait); 0 it was not a pending child
           of its parent (nothing changed); -1 no such job; -5 its parent does not exist
  Events: waiting prev=waiting-children (the parent, in its own queue) when it was the last pending child
]]
local id = ARGV[1]
local jobKey = prefix .. id
if redis.call("EXISTS", jobKey) == 0 then return -1 end
local parentKey = hget(jobKey, "parentKey")
if not parentKey or parentKey == "" then return 0 end
if redis.call("EXISTS", parentKey) == 0 then return -5 end
if flow_child_removed(jobKey, parentKey) then
  redis.call("HDEL", jobKey, "parentKey", "parent")
  return 1
end
return 0
