--[[ stalled_check — recover active jobs whose worker died (two-phase, spec §7).

  KEYS: queue
  ARGV[1] now               ms
  ARGV[2] interval_ms       throttle: at most one check per interval across all workers
  ARGV[3] max_stalled       a job recovered more often than this gets `defa` (failed at next fetch);
                            never a run of a scheduler that still exists (as BullMQ 6.7.6)

  Returns: {recovered ids, failed-flagged ids}; {} when another worker checked within the interval
  Events: waiting prev=active, stalled (per recovered job)
]]
if redis.call("SET", K["stalled-check"], ARGV[1], "PX", ARGV[2], "NX") == false then
  return {{}, {}}
end
local maxStalled = tonumber(ARGV[3])
local recovered, flagged = {}, {}
local candidates = redis.call("SMEMBERS", K["stalled"])
for i = 1, #candidates do
  local id = candidates[i]
  local jobKey = prefix .. id
  if redis.call("EXISTS", jobKey .. ":lock") == 0 and redis.call("LREM", K["active"], 1, id) > 0 then
    if key_type(jobKey) == "hash" then  -- no hash (gone, or a key of another type): id dropped
      local stc = hincrby(jobKey, "stc", 1)
      if stc > maxStalled and not is_scheduler_run(jobKey) then
        redis.call("HSET", jobKey, "defa", "job stalled more than allowable limit")
        flagged[#flagged + 1] = id
      end
      redis.call("RPUSH", K["wait"], id)  -- tail: it runs next
      emit("waiting", "jobId", id, "prev", "active")
      emit("stalled", "jobId", id)
      recovered[#recovered + 1] = id
    end
  end
end
if #recovered > 0 then wake_workers() end
redis.call("DEL", K["stalled"])
local active = redis.call("LRANGE", K["active"], 0, -1)
for i = 1, #active, 1000 do
  redis.call("SADD", K["stalled"], unpack(active, i, math.min(i + 999, #active)))
end
return {recovered, flagged}
