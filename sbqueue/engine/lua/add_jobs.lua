--@include add
--[[ add_jobs — add a batch of jobs in one call (each exactly as add_job; the batch is atomic).

  Callers keep batches small (add_bulk sends at most 500 jobs per call) so no call blocks Redis long.

  KEYS: queue (see sbqueue/_core/keys.py QUEUE_KEYS)
  ARGV[1] n_jobs      number of jobs; then 12 values per job, in add_job's ARGV order:
                      job_id, name, data, opts, timestamp, delay, priority, lifo, dedup_id, dedup_ttl,
                      scheduler, dedup_mode

  Returns: one {job_id, status} per job, as add_job
  Events: as add_job, per job
]]
local results = {}
local n = tonumber(ARGV[1])
for j = 0, n - 1 do
  local b = 1 + j * 12
  results[#results + 1] = add_one({ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6],
    ARGV[b + 7], ARGV[b + 8], ARGV[b + 9], ARGV[b + 10], ARGV[b + 11], ARGV[b + 12]})
end
return results
