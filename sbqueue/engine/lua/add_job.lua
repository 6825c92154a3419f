--@include add
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
  ARGV[12] dedup_mode deduplication mode letters: k keepLastIfActive, e extend, r replace, s reschedule

  Returns: {job_id, status}: status 1 = added, 0 = duplicate custom id (nothing written),
           2 = deduplicated (job_id is the owner's id)
  Events: added + waiting|delayed; duplicated; deduplicated; removed + deduplicated (replace);
          delayed (reschedule)
]]
return add_one(ARGV)
