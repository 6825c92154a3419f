# %% [markdown]
# # 08 · History: keep what Redis forgets
#
# Redis keeps only the last ~10,000 entries of a queue's events stream, and production queues remove finished jobs.
# `sbqueue record` (here: `sbqueue.Recorder`) copies every entry into a Parquet dataset partitioned by queue and hour,
# and `sbqueue.History` answers questions about any past window.
#
# This notebook plants two hours of traffic (six hours ago) with two incidents — one job name gets slower, another fails
# in a burst — records it, and finds both. A real worker adds a few live jobs at the end.

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-history"  # key prefix for this notebook (its queues are reset below)
minutes = 120  # length of the planted traffic
jobs_per_minute = 30
dataset = None  # folder or fsspec URL of the dataset; None: a temporary folder

# %%
import tempfile
import time
from datetime import timedelta

import pandas as pd

import sbqueue
from sbqueue import charts
from sbqueue.workbench.history_plant import plant_workload

conn = sbqueue.connect(redis_url)
dataset = dataset or tempfile.mkdtemp(prefix="sbqueue-history-")
for name in ("work", "live"):
    sbqueue.Queue(name, connection=conn, prefix=prefix).obliterate(force=True)

# %% [markdown]
# ## Plant two hours of traffic with two incidents

# %%
start = (int(time.time() * 1000) // 3_600_000 - 6) * 3_600_000  # six hours ago, on the hour
plant = plant_workload(conn, prefix, "work", start_ms=start, minutes=minutes, jobs_per_minute=jobs_per_minute)


def ts(ms):
    return pd.Timestamp(ms, unit="ms", tz="UTC")


print(f"{plant.jobs} jobs, {plant.events} events from {ts(plant.start_ms)} to {ts(plant.end_ms)}")

# %% [markdown]
# ## Record
#
# `run_once()` reads a page of every queue's stream; `run()` loops (that is what `sbqueue record --to PATH` does).
# Stopped and restarted at any point, it resumes at the last stream id in the dataset's file names: no gap, no
# duplicate.

# %%
rec = sbqueue.Recorder(conn, prefix, dataset, flush_interval=0, compact_interval=0)
while rec.run_once():
    pass
rec.flush()
print(rec.progress_line())
h = sbqueue.History(dataset)
assert len(h.events("work")) == plant.events and h.gaps().empty

# %% [markdown]
# ## Question 1 — what happened between two times?
#
# One row per job attempt, with wait and run times; only the hour partitions of the window are read.

# %%
t0 = plant.burst_from_ms
window = h.jobs("work", since=t0, until=t0 + 20 * 60_000)
window.groupby(["name", "outcome"]).size().unstack(fill_value=0)

# %%
rate = (window["outcome"] == "failed").groupby(window["name"]).mean()
assert rate.idxmax() == plant.burst_name, rate
rate.round(3)

# %% [markdown]
# ## Question 2 — when did it get slower, and what?

# %%
pct = h.percentiles("work", by=["name"], freq="5min")
baseline = pct.groupby("name")["p50"].apply(lambda s: s.iloc[:6].median())
slow = pct[pct["p50"] > 2 * pct["name"].map(baseline)]
first = slow.sort_values("time").iloc[0]
print(f"{first['name']} slower from {first['time']} (planted at {ts(plant.slow_from_ms)})")
assert first["name"] == plant.slow_name
assert abs(first["time"] - ts(plant.slow_from_ms)) <= pd.Timedelta("5min")

# %%
charts.percentiles_over_time(pct)

# %% [markdown]
# ## Question 3 — was there a failure burst?

# %%
fr = h.failure_rate("work", freq="5min", by=["name"]).unstack("name")
burst = fr[fr[plant.burst_name] > 0.3]
print("burst buckets:", [str(t) for t in burst.index])
assert len(burst) >= 1
assert burst.index.min() >= ts(plant.burst_from_ms) and burst.index.max() < ts(plant.burst_to_ms)
fr.round(2).tail(12)

# %% [markdown]
# ## Before / after
#
# `compare` ranks names by Cliff's delta of run time (share of pairs slower after minus faster after) and tests the
# failure-rate change.

# %%
cmp = h.compare("work", (plant.start_ms, plant.slow_from_ms), (plant.slow_from_ms, plant.end_ms))
assert cmp.loc[0, "name"] == plant.slow_name and cmp.loc[0, "effect"] > 0.8
cmp.round(3)

# %%
charts.comparison(cmp)

# %% [markdown]
# ## Wait times

# %%
charts.wait_heatmap(h.jobs("work"), freq="5min")

# %% [markdown]
# ## Live jobs from a real worker
#
# The same recorder picks up a new queue at its next discovery.

# %%
live = sbqueue.Queue("live", connection=conn, prefix=prefix)
for i in range(10):
    live.add("ping", {"i": i})
worker = sbqueue.Worker("live", lambda job: job.data["i"], connection=conn, prefix=prefix, name="nb-worker").start()
deadline = time.monotonic() + 60
while live.get_job_counts("completed")["completed"] < 10:
    assert time.monotonic() < deadline
    time.sleep(0.05)
worker.close()
rec.discover()
while rec.run_once():
    pass
rec.flush()
jobs = h.jobs("live", since=timedelta(minutes=10))
assert len(jobs) == 10 and (jobs["worker"] == "nb-worker").all() and (jobs["outcome"] == "completed").all()
jobs[["job_id", "name", "wait_s", "run_s", "outcome", "worker"]]

# %% [markdown]
# ## Anything lost or unreadable?
#
# `gaps()` lists holes (a stream trimmed before the recorder read it); `problems()` lists skipped files.

# %%
assert h.gaps().empty and h.problems().empty
print("no gaps, no unreadable files in", dataset)
