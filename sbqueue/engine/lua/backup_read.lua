--[[ backup_read — read-only: one batch of a queue for a backup, in one atomic read.

  KEYS: queue
  ARGV[1] mode        "jobs": each item is a job id; "keys": each item is a key name relative to the queue
  ARGV[2] max_items   a key (or job sub-key) with more members than this is returned as "big" (paged by the
                      caller); also the read's budget: once this many members were read, the script stops
                      after the current item (so one call stays short however large the jobs are)
  ARGV[3] n_items     number of items that follow

  Returns: one entry per item, in order, for the first items up to the budget (at least one; the caller
           sends the rest again):
    mode "jobs": {id, type of the job key, hash (flat), state, score, subkeys}
                 state: completed/failed/delayed/prioritized/waiting-children (score = its zset score),
                 active (score ""), or "" when in none of those (the caller decides wait / paused / none);
                 subkeys: flat {suffix, value} for each existing :logs :dependencies :processed :failed
                 :unsuccessful, value = read_key (below)
    mode "keys": {name, read_key}
    read_key = {type, pttl, value}: value is the string, LRANGE, SMEMBERS, HGETALL (flat) or
               ZRANGE WITHSCORES (flat); {} for "none"; the string "big" when larger than max_items
  Events: none (nothing is written)
]]
local mode = ARGV[1]
local maxItems = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local spent = 0

local function read_key(key)
  local t = key_type(key)
  local pttl = redis.call("PTTL", key)
  local size, value = 0, {}
  if t == "string" then
    return {t, pttl, redis.call("GET", key)}
  elseif t == "list" then
    size = redis.call("LLEN", key)
    if size <= maxItems then value = redis.call("LRANGE", key, 0, -1) end
  elseif t == "set" then
    size = redis.call("SCARD", key)
    if size <= maxItems then value = redis.call("SMEMBERS", key) end
  elseif t == "hash" then
    size = redis.call("HLEN", key)
    if size <= maxItems then value = redis.call("HGETALL", key) end
  elseif t == "zset" then
    size = redis.call("ZCARD", key)
    if size <= maxItems then value = redis.call("ZRANGE", key, 0, -1, "WITHSCORES") end
  elseif t ~= "none" then
    return {t, pttl, {}}  -- a stream or another type: the caller reads it itself
  end
  if size > maxItems then return {t, pttl, "big"} end
  spent = spent + size
  return {t, pttl, value}
end

local out = {}
if mode == "keys" then
  for i = 1, n do
    local name = ARGV[3 + i]
    out[i] = {name, read_key(prefix .. name)}
    spent = spent + 1
    if spent >= maxItems then return out end
  end
  return out
end

-- containers a peer garbled (another type) read as empty: one broken key must not stop a backup
local active = {}
local ids = redis.pcall("LRANGE", K["active"], 0, -1)
if type(ids) == "table" and not ids.err then
  for _, id in ipairs(ids) do active[id] = true end
end
local zstates = {"completed", "failed", "delayed", "prioritized", "waiting-children"}
local subs = {"logs", "dependencies", "processed", "failed", "unsuccessful"}
for i = 1, n do
  local id = ARGV[3 + i]
  local jobKey = prefix .. id
  local t = key_type(jobKey)
  if t ~= "hash" then
    out[i] = {id, t, {}, "", "", {}}
  else
    local state, score = "", ""
    for _, s in ipairs(zstates) do
      local sc = redis.pcall("ZSCORE", K[s], id)
      if type(sc) == "string" then
        state, score = s, sc
        break
      end
    end
    if state == "" and active[id] then state = "active" end
    local found = {}
    for _, suffix in ipairs(subs) do
      local subKey = jobKey .. ":" .. suffix
      if redis.call("EXISTS", subKey) == 1 then
        found[#found + 1] = suffix
        found[#found + 1] = read_key(subKey)
      end
    end
    local fields = redis.call("HGETALL", jobKey)
    spent = spent + #fields / 2
    out[i] = {id, t, fields, state, score, found}
  end
  if spent >= maxItems then return out end
end
return out
