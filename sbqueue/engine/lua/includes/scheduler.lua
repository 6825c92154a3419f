-- Job scheduler helpers (spec §13): iterations are ordinary jobs "repeat:<id>:<millis>".

-- Create the iteration due at `nextMs` for scheduler `sid` (id counter advanced, as BullMQ does).
local function add_iteration(sid, nextMs, now, name, data, jobOpts, priority)
  redis.call("INCR", K["id"])
  local id = "repeat:" .. sid .. ":" .. nextMs
  local jobKey = prefix .. id
  if redis.call("EXISTS", jobKey) == 1 then
    emit("duplicated", "jobId", id)
    return id
  end
  local delay = nextMs - now
  if delay < 0 then delay = 0 end
  redis.call("HSET", jobKey, "name", name, "data", data, "opts", jobOpts, "timestamp", now,
    "delay", delay, "priority", priority, "rjk", sid)
  emit("added", "jobId", id, "name", name)
  if delay > 0 then
    schedule_delayed(id, nextMs)
    emit("delayed", "jobId", id, "delay", nextMs)
  else
    push_runnable(id, priority, false)
    emit("waiting", "jobId", id)
  end
  return id
end

-- Delete the scheduler's pending iteration if it has not started; returns the state it was in.
local function drop_pending_iteration(sid, score, withEvent)
  local id = "repeat:" .. sid .. ":" .. score
  local prev = nil
  if redis.call("ZREM", K["delayed"], id) > 0 then prev = "delayed"
  elseif redis.call("ZREM", K["prioritized"], id) > 0 then prev = "prioritized"
  elseif redis.call("LREM", K["wait"], 0, id) > 0 then prev = "wait" end
  if prev then
    delete_job(id)
    if withEvent then emit("removed", "jobId", id, "prev", prev) end
  end
  return prev
end
