--@include flow
--[[ remove_unprocessed_children — delete the children a parent still waits for that have not started.

  Children that are active (locked) or failed stay, and so do completed ones; each child removed takes its
  own unprocessed children with it (BullMQ's removeUnprocessedChildren).

  KEYS: queue (see sbqueue/_core/keys.py QUEUE_KEYS)
  ARGV[1] job_id      the parent

  Returns: 1 done; -1 no such job
  Events: removed prev=<state> per child removed (in its queue); waiting prev=waiting-children when the
          parent is left with nothing pending
]]
local jobKey = prefix .. ARGV[1]
if redis.call("EXISTS", jobKey) == 0 then return -1 end
flow_remove_children(jobKey, true)
return 1
