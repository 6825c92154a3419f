--[[ reschedule_job — change a job's priority, or a delayed job's due time.

  KEYS: queue
  ARGV[1] job_id
  ARGV[2] what        "priority" | "delay"
  ARGV[3] value       new priority (0..2097151) or new delay in ms from now
  ARGV[4] now         ms
  ARGV[5] lifo        for "priority": "1" = go ahead of jobs with the same priority

  Returns: 1 ok; -1 no such job; -3 not delayed (for "delay"); -14 its key is not a hash: nothing changed
  Events: delayed (jobId, delay = new due time) for "delay"; none for "priority" (as BullMQ)
]]
local id, what = ARGV[1], ARGV[2]
local value, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local jobKey = prefix .. id
if redis.call("EXISTS", jobKey) == 0 then return -1 end
if foreign_type(jobKey) then return -14 end
if what == "delay" then
  if redis.call("ZREM", K["delayed"], id) == 0 then return -3 end
  local due = now + value
  redis.call("HSET", jobKey, "delay", value)
  schedule_delayed(id, due)
  emit("delayed", "jobId", id, "delay", due)
  return 1
end
redis.call("HSET", jobKey, "priority", value)
local lifo = ARGV[5] == "1"
local runnable = redis.call("ZREM", K["prioritized"], id) > 0
if not runnable then runnable = redis.call("LREM", K["wait"], 0, id) > 0 end
if runnable then readd_runnable(id, value, lifo) end
return 1
