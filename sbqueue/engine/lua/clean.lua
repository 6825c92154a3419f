--@include flow
--[[ clean — remove jobs of one state older than a cutoff; one bounded batch per call.

  KEYS: queue
  ARGV[1] state       wait | active | paused | prioritized | delayed | completed | failed
  ARGV[2] cutoff_ms   remove jobs whose time is <= this (finishedOn for completed/failed,
                      processedOn or timestamp otherwise; a job key that is not a hash counts as old)
  ARGV[3] limit       remove at most this many in this call
  ARGV[4] cursor      entries already examined and kept, counted from the oldest end
  ARGV[5] scan        examine at most this many entries in this call (bounds the call's run time)

  Returns: {removed ids, next cursor, more (1 = call again)}
  Flows: a parent left with nothing pending stops waiting (includes/flow.lua flow_child_gone)
  Events: cleaned count=<n> (when n > 0)
]]
local state, cutoff, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cursor, scan = tonumber(ARGV[4]), tonumber(ARGV[5])
local key = K[state]
local removed = {}
local more = 0

if state == "completed" or state == "failed" then
  local take = math.min(limit, scan)
  local ids = redis.call("ZRANGEBYSCORE", key, 0, cutoff, "LIMIT", 0, take)
  for i = 1, #ids do
    flow_child_gone(prefix .. ids[i], true)  -- a parent waiting only for it stops waiting (BullMQ)
    delete_job(ids[i])
  end
  if #ids > 0 then zrem_all(key, ids) end
  removed = ids
  if #ids == take then more = 1 end
else
  local isList = (state == "wait" or state == "active" or state == "paused")
  local entries
  if isList then
    -- oldest at the tail: the `cursor` kept entries sit at the very tail, so this window (which
    -- LRANGE clamps at the head) holds exactly the entries not examined yet; walk it oldest first
    local window = redis.call("LRANGE", key, -(cursor + scan), -(cursor + 1))
    entries = {}
    for i = #window, 1, -1 do entries[#entries + 1] = window[i] end
  else
    entries = redis.call("ZRANGE", key, cursor, cursor + scan - 1)
  end
  local kept = 0
  for i = 1, #entries do
    if #removed >= limit then break end
    local id = entries[i]
    local jobKey = prefix .. id
    -- a job key of another type (a peer wrote it) has no time: it counts as old, and is cleaned
    local ts = tonumber(hget(jobKey, "processedOn") or hget(jobKey, "timestamp") or "0") or 0
    local locked = state == "active" and redis.call("EXISTS", jobKey .. ":lock") == 1
    if ts <= cutoff and not locked and not is_current_iteration(jobKey, id) then
      if isList then redis.call("LREM", key, -1, id) else redis.call("ZREM", key, id) end
      flow_child_gone(jobKey, true)
      delete_job(id)
      removed[#removed + 1] = id
    else
      kept = kept + 1
    end
  end
  cursor = cursor + kept
  if #entries == scan and #removed < limit then more = 1 end
end
if #removed > 0 then emit("cleaned", "count", #removed) end
return {removed, cursor, more}
