# %% [markdown]
# # 05 · Rate limits and priorities, measured

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-limits"  # key prefix for this notebook
limit_max = 5  # jobs per window
limit_ms = 500  # window length (ms)
jobs = 20  # jobs for the rate-limit experiment

# %%

import time

import sbqueue
from sbqueue.inspection import Inspector


def wait_until(predicate, timeout=60.0):
    """Poll until predicate() is true (the worker runs in a background thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# %% [markdown]
# ## A worker rate limit: at most `limit_max` jobs per `limit_ms`

# %%
queue = sbqueue.Queue("limited", connection=redis_url, prefix=prefix)
queue.obliterate(force=True)
queue.add_bulk([{"name": "call-api", "data": {"i": i}} for i in range(jobs)])
worker = sbqueue.Worker("limited", lambda job: None, connection=redis_url, prefix=prefix, concurrency=10,
                        limiter={"max": limit_max, "duration": limit_ms}).start()
wait_until(lambda: queue.get_job_counts("completed")["completed"] == jobs)
worker.close()
done = Inspector(redis_url, prefix, progress=False).jobs("limited", "completed")
start = done["processed_on"].min()
window = ((done["processed_on"] - start).dt.total_seconds() * 1000 // limit_ms).astype(int)
per_window = window.value_counts().sort_index()
print(per_window.to_dict())
assert per_window.max() <= limit_max
print(f"{jobs} jobs took {(done['processed_on'].max() - start).total_seconds():.2f} s "
      f"(at least {(jobs // limit_max - 1) * limit_ms / 1000:.2f} s by the limit)")

# %% [markdown]
# ## Priorities: jobs without a priority first (BullMQ 6 order), then 1 (most urgent), 2, 3

# %%
pq = sbqueue.Queue("prio", connection=redis_url, prefix=prefix)
pq.obliterate(force=True)
for i, priority in enumerate([3, 1, 0, 2, 1, 0, 3]):
    pq.add(f"p{priority}", {"i": i}, priority=priority)
order = []
worker = sbqueue.Worker("prio", lambda job: order.append(job.name), connection=redis_url, prefix=prefix, concurrency=1)
worker.start()
wait_until(lambda: len(order) == 7)
worker.close()
print(order)
assert order == ["p0", "p0", "p1", "p1", "p2", "p3", "p3"]
