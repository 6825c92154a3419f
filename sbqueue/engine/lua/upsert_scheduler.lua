--@include scheduler
--[[ upsert_scheduler — create or replace a job scheduler and enqueue its next iteration.

  KEYS: queue
  ARGV[1] scheduler_id
  ARGV[2] next_ms     due time of the first iteration (computed by the client: every/cron/tz)
  ARGV[3] now         ms
  ARGV[4] name        job name of iterations
  ARGV[5] data        template data JSON ("{}" is not stored, as BullMQ)
  ARGV[6] opts        template opts JSON for the scheduler hash ("{}" is not stored)
  ARGV[7] job_opts    opts JSON written on the iteration job
  ARGV[8] priority    priority of iterations
  ARGV[9] n_fields    number of (field, value) pairs that follow: every|pattern|tz|offset|limit|
                      startDate|endDate

  Returns: the id of the pending iteration; -15 a cron scheduler's run id is taken; -16 the next 32
           `every` slots are all taken
  Events: added + delayed|waiting (a replaced pending iteration is deleted without an event)

  As BullMQ: an update keeps the iteration count `ic`, and when `every` is unchanged the replaced
  pending iteration's time slot is kept (so an idempotent upsert at start-up does not run it early);
  when that run is already active, the next run goes to the slot after it.
]]
local sid = ARGV[1]
local skey = prefix .. "repeat:" .. sid
local nextMs = tonumber(ARGV[2])
local old = redis.call("ZSCORE", K["repeat"], sid)
local prev = redis.call("HMGET", skey, "ic", "every", "offset")
local ic = tonumber(prev[1] or "1") or 1
local newEvery = nil
for i = 0, tonumber(ARGV[9]) - 1 do
  if ARGV[10 + i * 2] == "every" then newEvery = ARGV[11 + i * 2] end
end
local keepSlot = false
local removed = old and drop_pending_iteration(sid, old, false)
local every = newEvery and tonumber(newEvery)
if old and every and prev[2] == newEvery then
  if removed then
    nextMs = tonumber(old)
  else
    -- the pending run is active (or finished): as BullMQ, the slot after it, not a run at once
    local now = tonumber(ARGV[3])
    nextMs = tonumber(old) + every
    if nextMs < now then
      local aligned = math.floor(now / every) * every + (tonumber(prev[3] or "0") or 0)
      if aligned <= now then nextMs = aligned + every else nextMs = aligned end
    end
  end
  keepSlot = true
end
-- the run's id is taken (a run still active or kept from an earlier scheduler of that id): as BullMQ,
-- `every` walks forward to a free slot (at most 32), a cron pattern refuses
if redis.call("EXISTS", prefix .. "repeat:" .. sid .. ":" .. nextMs) == 1 then
  if every then
    local scans = 0
    repeat
      nextMs = nextMs + every
      scans = scans + 1
    until redis.call("EXISTS", prefix .. "repeat:" .. sid .. ":" .. nextMs) == 0 or scans >= 32
    if redis.call("EXISTS", prefix .. "repeat:" .. sid .. ":" .. nextMs) == 1 then return -16 end
    keepSlot = true
  elseif not removed then
    return -15
  end
end
redis.call("DEL", skey)
local fields = {"name", ARGV[4], "ic", ic}
if ARGV[5] ~= "{}" then fields[#fields + 1] = "data"; fields[#fields + 1] = ARGV[5] end
if ARGV[6] ~= "{}" then fields[#fields + 1] = "opts"; fields[#fields + 1] = ARGV[6] end
for i = 0, tonumber(ARGV[9]) - 1 do
  local field, value = ARGV[10 + i * 2], ARGV[11 + i * 2]
  if keepSlot and field == "offset" then value = math.fmod(nextMs, every) end
  fields[#fields + 1] = field
  fields[#fields + 1] = value
end
redis.call("HSET", skey, unpack(fields))
redis.call("ZADD", K["repeat"], nextMs, sid)
return add_iteration(sid, nextMs, tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[7], tonumber(ARGV[8]))
