--@include add
--@include flow
--[[ replay_dead_letters — move dead letters back as fresh jobs of this queue, each in one atomic step:
  the letter leaves its dead-letter queue (as remove_job) and a new job with the letter's current name and
  data and the given options is added here (as add_job, a new id from this queue's counter). A letter that is
  gone (replayed by a concurrent call, removed) or held by a worker is left alone. Both queues must be on the
  same hash slot (Redis Cluster: the same hash tag); the caller checks.

  KEYS: queue (the queue the letters go back to)
  ARGV[1] letters_queue  "<prefix>:<dead-letter queue>"
  ARGV[2] now            ms, the new jobs' timestamp
  ARGV[3] n_letters      then n groups of 4: letter id, opts JSON, priority (0 = none), lifo ("1"/"0")

  Returns: one {code, new job id} per letter, in order: code 1 replayed; -1 no such letter (nothing
           written); -2 a worker holds it (active or locked: nothing written)
  Events: removed prev=<state> (the dead-letter queue); added + waiting (this queue)
]]
local source = ARGV[1]
local now = ARGV[2]
local out = {}
for i = 0, tonumber(ARGV[3]) - 1 do
  local b = 4 + i * 4
  local id = ARGV[b]
  local letterKey = source .. ":" .. id
  if key_type(letterKey) ~= "hash" then
    out[#out + 1] = {-1, ""}
  elseif flow_locked(letterKey) or redis.call("LPOS", source .. ":active", id) then
    out[#out + 1] = {-2, ""}
  else
    local nd = redis.call("HMGET", letterKey, "name", "data")
    flow_remove_job(source, id, nil, false)
    local added = add_one({"", nd[1] or "", nd[2] or "{}", ARGV[b + 1], now, "0", ARGV[b + 2], ARGV[b + 3],
                           "", "0", "", ""})
    out[#out + 1] = {1, added[1]}
  end
end
return out
