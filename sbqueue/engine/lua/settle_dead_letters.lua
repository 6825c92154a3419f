--@include flow
--[[ settle_dead_letters — the dead-letter queue's two steps of a replay across Redis Cluster slots, where the
  letter and its new job cannot change in one script. "claim" marks letters as being replayed by one caller
  (field sbqReplay = "<token>:<ms>" of the letter's hash) and parks those a consumer could take (waiting,
  paused, prioritized, delayed) in delayed, due in a year; the caller then adds each new job under an id
  derived from the letter (adding it again is a no-op) and calls "remove", which deletes the letters it still
  holds the claim of. A claim older than lease_ms may be taken over (a replay that died half-way: the next
  one finishes it).

  KEYS: queue (the dead-letter queue)
  ARGV[1] mode      "claim" or "remove"
  ARGV[2] token     the caller's token (unique per replay call)
  ARGV[3] now       ms
  ARGV[4] lease_ms  claim: how long another replay's claim holds
  ARGV[5] n_ids     then n letter ids

  Returns: one code per letter, in order: 1 claimed / removed; -1 no such letter; -2 a worker holds it
           (active or locked); -3 another replay holds the claim (claim: younger than lease_ms; remove: taken
           over). Nothing is written for a letter with a code < 0.
  Events: removed prev=<state> (remove)
]]
local mode, token, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local parked = delayed_score(now + 365 * 86400000)
local out = {}
for i = 1, tonumber(ARGV[5]) do
  local id = ARGV[5 + i]
  local jobKey = prefix .. id
  local claim = key_type(jobKey) == "hash" and (redis.call("HGET", jobKey, "sbqReplay") or "") or nil
  if claim == nil then
    out[i] = -1
  elseif flow_locked(jobKey) or redis.call("LPOS", K["active"], id) then
    out[i] = -2
  elseif mode == "claim" then
    local owner, at = string.match(claim, "^(.*):(%d+)$")
    if owner and owner ~= token and now - tonumber(at) < lease then
      out[i] = -3
    else
      redis.call("HSET", jobKey, "sbqReplay", token .. ":" .. now)
      local prev = nil
      for _, s in ipairs({"wait", "paused"}) do
        if redis.call("LREM", K[s], 0, id) > 0 then prev = s end
      end
      for _, s in ipairs({"prioritized", "delayed"}) do
        if redis.call("ZREM", K[s], id) > 0 then prev = s end
      end
      if prev then
        redis.call("ZADD", K["delayed"], parked, id)
      end
      out[i] = 1
    end
  elseif string.match(claim, "^(.*):%d+$") ~= token then
    out[i] = -3
  else
    flow_remove_job(string.sub(prefix, 1, -2), id, nil, false)
    out[i] = 1
  end
end
return out
