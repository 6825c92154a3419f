--[[ add_job — add one job: to wait (FIFO/LIFO), prioritized, or delayed.

  KEYS: queue (see sbqueue/_core/keys.py QUEUE_KEYS)
  ARGV[1] job_id      custom id, or "" for the next value of the id counter
  ARGV[2] name        job name
  ARGV[3] data        JSON text, stored verbatim
  ARGV[4] opts        JSON text of BullMQ-named options
  ARGV[5] timestamp   creation time, ms
  ARGV[6] delay       ms (0 = runnable now)
  ARGV[7] priority    0..2097151 (0 = none)
  ARGV[8] lifo        "1" or "0"
  ARGV[9] dedup_id    deduplication id or ""
  ARGV[10] dedup_ttl  ms, 0 = until the job finishes
  ARGV[11] scheduler  repeatJobKey (rjk) or ""

  Returns: {job_id, status}: status 1 = added, 0 = duplicate custom id (nothing written),
           2 = deduplicated (job_id is the owner's id)
  Events: added + waiting|delayed; duplicated; deduplicated
]]
local counter = redis.call("INCR", K["id"])  -- BullMQ advances the counter on every add attempt
local id = ARGV[1]
if id == "" then id = tostring(counter) end
local jobKey = prefix .. id

if ARGV[1] ~= "" and redis.call("EXISTS", jobKey) == 1 then
  emit("duplicated", "jobId", id)
  return {id, 0}
end

local dedupId = ARGV[9]
if dedupId ~= "" then
  local dk = prefix .. "de:" .. dedupId
  local ttl = tonumber(ARGV[10])
  local owned
  if ttl > 0 then
    owned = redis.call("SET", dk, id, "PX", ttl, "NX")
  else
    owned = redis.call("SET", dk, id, "NX")
  end
  if not owned then
    local owner = redis.call("GET", dk)
    -- a key with a ttl is a time window (it holds even if its job is gone, as BullMQ); a key
    -- without one whose job hash is gone is stale: this add takes it over
    if owner and (redis.call("PTTL", dk) ~= -1 or redis.call("EXISTS", prefix .. owner) == 1) then
      emit("deduplicated", "jobId", owner, "deduplicationId", dedupId, "deduplicatedJobId", id)
      return {owner, 2}
    end
    if ttl > 0 then redis.call("SET", dk, id, "PX", ttl) else redis.call("SET", dk, id) end
  end
end

local timestamp = tonumber(ARGV[5])
local delay = tonumber(ARGV[6])
local priority = tonumber(ARGV[7])
local fields = {"name", ARGV[2], "data", ARGV[3], "opts", ARGV[4], "timestamp", ARGV[5],
  "delay", ARGV[6], "priority", ARGV[7]}
if dedupId ~= "" then
  fields[#fields + 1] = "deid"; fields[#fields + 1] = dedupId
end
if ARGV[11] ~= "" then
  fields[#fields + 1] = "rjk"; fields[#fields + 1] = ARGV[11]
end
redis.call("HSET", jobKey, unpack(fields))

emit("added", "jobId", id, "name", ARGV[2])
if delay > 0 then
  local due = timestamp + delay
  schedule_delayed(id, due)
  emit("delayed", "jobId", id, "delay", due)
else
  push_runnable(id, priority, ARGV[8] == "1")
  emit("waiting", "jobId", id)
end
return {id, 1}
