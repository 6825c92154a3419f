--[[ update_job — change one field of an existing job: data, progress, or a log line.

  KEYS: queue
  ARGV[1] job_id
  ARGV[2] what        "data" | "progress" | "log"
  ARGV[3] value       JSON (data, progress) or the log line
  ARGV[4] keep_logs   for "log": keep only the newest n lines (0 = all)

  Returns: 1 (data/progress) or the number of log lines; -1 if the job does not exist;
           -14 its key is not a hash (written by something else): nothing changed
  Events: progress (jobId, data) for "progress"
]]
local id, what, value = ARGV[1], ARGV[2], ARGV[3]
local jobKey = prefix .. id
if redis.call("EXISTS", jobKey) == 0 then return -1 end
if foreign_type(jobKey) then return -14 end
if what == "data" then
  redis.call("HSET", jobKey, "data", value)
  return 1
elseif what == "progress" then
  redis.call("HSET", jobKey, "progress", value)
  emit("progress", "jobId", id, "data", value)
  return 1
end
local logKey = jobKey .. ":logs"
local n = redis.call("RPUSH", logKey, value)
local keep = tonumber(ARGV[4])
if keep > 0 and n > keep then
  redis.call("LTRIM", logKey, -keep, -1)
  n = keep
end
return n
