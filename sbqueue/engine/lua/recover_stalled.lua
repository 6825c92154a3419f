--@include flow
--[[ recover_stalled — an operator's fix for active jobs whose worker is gone: requeue or fail them now.

  The stalled check (stalled_check.lua) does this by itself after the lock expires plus up to two check
  intervals; this script lets a runbook act at once on ids it has diagnosed.

  KEYS: queue
  ARGV[1] now         ms
  ARGV[2] mode        "requeue" (back to the tail of wait: runs next) or "fail"
  ARGV[3] force       "1" = also take jobs whose lock still exists (orphaned: no worker holds it)
  ARGV[4] reason      failedReason when mode is "fail"
  ARGV[5] n_ids       number of job ids that follow

  Returns: codes per id: 1 done, -1 no such job, -3 not active, -10 still locked (and not force),
           -13 its key is not a hash: dropped from active, the key left for inspection
  Flows: failing a child applies its fail/continue/ignore/remove-dependency option to its parent.
  Events: requeue: waiting prev=active + stalled; fail: failed prev=active; failed (key not a hash)
]]
local now, mode, force, reason = tonumber(ARGV[1]), ARGV[2], ARGV[3] == "1", ARGV[4]
local codes = {}
for i = 1, tonumber(ARGV[5]) do
  local id = ARGV[5 + i]
  local jobKey = prefix .. id
  local code = 1
  if redis.call("EXISTS", jobKey) == 0 then
    code = -1
  elseif not force and redis.call("EXISTS", jobKey .. ":lock") == 1 then
    code = -10
  elseif redis.call("LREM", K["active"], 1, id) == 0 then
    code = -3
  elseif report_unreadable(jobKey, id, "active") then
    redis.call("DEL", jobKey .. ":lock")
    redis.call("SREM", K["stalled"], id)
    code = -13
  else
    redis.call("DEL", jobKey .. ":lock")
    redis.call("SREM", K["stalled"], id)
    if mode == "fail" then
      flow_child_failed(jobKey, reason, now)  -- a child: its parent option applies, as on any final failure
      local atm = hincrby(jobKey, "atm", 1)
      redis.call("HSET", jobKey, "failedReason", reason, "finishedOn", now)
      redis.call("ZADD", K["failed"], now, id)
      local deid = release_dedup(jobKey, id)
      if deid then requeue_dedup_next(deid, now) end  -- a keepLastIfActive job parked for it runs now
      emit("failed", "jobId", id, "failedReason", reason, "prev", "active")
    else
      hincrby(jobKey, "stc", 1)
      redis.call("RPUSH", K["wait"], id)
      emit("waiting", "jobId", id, "prev", "active")
      emit("stalled", "jobId", id)
      wake_workers()
    end
  end
  codes[#codes + 1] = code
end
return codes
