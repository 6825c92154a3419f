# %% [markdown]
# # 01 · Quickstart
#
# Add jobs, process them with a worker, look at them as a DataFrame and a chart. With no `SBQUEUE_REDIS_URL`/`REDIS_URL`
# set, sbqueue starts (or reuses) its embedded Redis.

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-quickstart"  # key prefix for this notebook (its queue is reset below)
jobs = 20  # how many jobs to add

# %%
import time

import sbqueue
from sbqueue import charts
from sbqueue.inspection import Inspector


def wait_until(predicate, timeout=60.0):
    """Poll until predicate() is true (the worker runs in a background thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# %% [markdown]
# ## A queue and some jobs

# %%
queue = sbqueue.Queue("squares", connection=redis_url, prefix=prefix)
queue.obliterate(force=True)  # a fresh start every run
for x in range(jobs):
    queue.add("square", {"x": x})
print(queue.get_job_counts("waiting", "completed"))


# %% [markdown]
# ## A worker
#
# A plain function runs in a thread pool; an `async def` would run on the worker's event loop.

# %%
def square(job):
    return job.data["x"] ** 2


worker = sbqueue.Worker("squares", square, connection=redis_url, prefix=prefix, concurrency=4).start()
wait_until(lambda: queue.get_job_counts("completed")["completed"] == jobs)
worker.close()
print(queue.get_job_counts("waiting", "active", "completed", "failed"))

# %% [markdown]
# ## Jobs as a DataFrame

# %%
insp = Inspector(redis_url, prefix, progress=False)
done = insp.jobs("squares", "completed")
assert len(done) == jobs
print(sorted(done["returnvalue"]) == sorted(x * x for x in range(jobs)))
print(done.dtypes[["timestamp", "wait_s", "run_s"]].to_dict())

# %%
# NBVAL_IGNORE_OUTPUT
# (the chart embeds random ids and timestamps)
charts.counts(insp.queues())
