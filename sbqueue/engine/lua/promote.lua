--[[ promote — move delayed jobs to run now: given ids, or the earliest `count`.

  KEYS: queue
  ARGV[1] count       used when no ids are given
  ARGV[2] n_ids       number of explicit ids that follow

  Returns: {promoted ids, codes}: one code per job examined (1 ok, -1 missing, -3 not delayed,
           -13 its key is not a hash: dropped from delayed, the key left for inspection)
  Events: waiting prev=delayed; failed (an id whose key is not a hash: dropped)
]]
local ids
local nIds = tonumber(ARGV[2])
if nIds > 0 then
  ids = {}
  for i = 1, nIds do ids[i] = ARGV[2 + i] end
else
  ids = redis.call("ZRANGE", K["delayed"], 0, tonumber(ARGV[1]) - 1)
end
local promoted, codes = {}, {}
for i = 1, #ids do
  local id = ids[i]
  local jobKey = prefix .. id
  local code = 1
  if redis.call("EXISTS", jobKey) == 0 then
    redis.call("ZREM", K["delayed"], id)
    code = -1
  elseif redis.call("ZREM", K["delayed"], id) == 0 then
    code = -3
  elseif report_unreadable(jobKey, id, "delayed") then
    code = -13
  else
    redis.call("HSET", jobKey, "delay", 0)
    push_runnable(id, job_priority(jobKey), false)
    emit("waiting", "jobId", id, "prev", "delayed")
    promoted[#promoted + 1] = id
  end
  codes[#codes + 1] = code
end
return {promoted, codes}
