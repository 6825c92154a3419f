# %% [markdown]
# # 02 · Queue analysis
#
# Data-science style questions on a queue: wait and run time distributions by job name, failure rates, the event
# timeline, and an export to Parquet.

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-analysis"  # key prefix for this notebook
jobs = 200  # jobs to generate (raise it for a meatier analysis)

# %%
import random
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


# %%
queue = sbqueue.Queue("reports", connection=redis_url, prefix=prefix)
queue.obliterate(force=True)
rng = random.Random(42)
kinds = {"thumbnail": 0.002, "pdf": 0.01, "email": 0.001}
queue.add_bulk([{"name": name, "data": {"n": i, "fail": rng.random() < 0.1}}
                for i in range(jobs) for name in [rng.choice(list(kinds))]])


def work(job):
    time.sleep(kinds[job.name] * rng.uniform(0.5, 1.5))
    if job.data["fail"]:
        raise RuntimeError(f"{job.name} renderer crashed")
    return {"bytes": 1000 + job.data["n"]}


worker = sbqueue.Worker("reports", work, connection=redis_url, prefix=prefix, concurrency=8).start()
wait_until(lambda: sum(queue.get_job_counts("completed", "failed").values()) == jobs)
worker.close()
insp = Inspector(redis_url, prefix, progress=False)
df = insp.jobs("reports", ["completed", "failed"])
df.groupby(["name", "state"]).size().unstack(fill_value=0)

# %% [markdown]
# ## Wait and run times by job name (seconds)

# %%
df.groupby('name')[['wait_s', 'run_s']].describe(percentiles=[0.5, 0.95]).round(4)

# %%
charts.latency(df)

# %% [markdown]
# ## Failure rate by name, and the failure signatures

# %%
rates = df.assign(failed=df["state"] == "failed").groupby("name")["failed"].mean().rename("failure_rate")
assert rates.between(0, 1).all()
rates.round(3)

# %%
insp.failures('reports')[['signature', 'count', 'names']]

# %% [markdown]
# ## The event timeline

# %%
events = insp.events('reports')
events['event'].value_counts()

# %%
charts.timeline(events)

# %% [markdown]
# ## Export

# %%
import tempfile
from pathlib import Path

import pandas as pd

table = df.drop(columns=["data", "opts", "returnvalue", "progress"])
path = Inspector.export(table, Path(tempfile.mkdtemp()) / "jobs.parquet")
back = pd.read_parquet(path)
assert len(back) == len(df)
print(path.name, len(back), "rows")
