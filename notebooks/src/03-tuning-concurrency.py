# %% [markdown]
# # 03 · Tuning: worker concurrency
#
# Throughput and latency against concurrency for an I/O-bound and a CPU-bound processor. Defaults are small so CI stays
# fast; raise `jobs` and add concurrencies to scale up.

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-tuning"  # key prefix for this notebook
jobs = 200  # jobs per measurement
concurrencies = [1, 4, 16, 64]  # worker concurrency settings to compare
io_ms = 5  # simulated I/O wait per job (ms)
cpu_loops = 20000  # simulated CPU work per job (loop iterations)

# %%
import asyncio
import time

import pandas as pd

import sbqueue
from sbqueue import charts
from sbqueue.inspection import Inspector


# %%
async def io_bound(job):
    await asyncio.sleep(io_ms / 1000)


def cpu_bound(job):
    return sum(i * i for i in range(cpu_loops)) % 7


def measure(kind, processor, concurrency):
    queue = sbqueue.Queue(f"tune-{kind}", connection=redis_url, prefix=prefix)
    queue.obliterate(force=True)
    queue.add_bulk([{"name": kind, "data": {"i": i}} for i in range(jobs)])
    worker = sbqueue.Worker(queue.name, processor, connection=redis_url, prefix=prefix, concurrency=concurrency)
    start = time.perf_counter()
    worker.start()
    while worker.processed < jobs:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    worker.close()
    done = Inspector(redis_url, prefix, progress=False).jobs(queue.name, "completed")
    latency = done["wait_s"] + done["run_s"]
    return {"kind": kind, "concurrency": concurrency, "throughput": jobs / elapsed,
            "p50_latency_s": latency.median(), "p95_latency_s": latency.quantile(0.95)}


processors = [("io", io_bound), ("cpu", cpu_bound)]
results = pd.DataFrame([measure(kind, fn, c) for kind, fn in processors for c in concurrencies])
results.round(3)

# %%
charts.tuning(results, x='concurrency', y='throughput', color='kind', x_title='concurrency (jobs in flight)',
              y_title='throughput (jobs/s)', log_x=True)

# %% [markdown]
# ## Conclusion (computed from the numbers above)

# %%
io = results[results["kind"] == "io"].set_index("concurrency")["throughput"]
cpu = results[results["kind"] == "cpu"].set_index("concurrency")["throughput"]
print(f"I/O-bound: {io.iloc[0]:.0f} -> {io.iloc[-1]:.0f} jobs/s from concurrency {io.index[0]} to {io.index[-1]} "
      f"({io.iloc[-1] / io.iloc[0]:.1f}x): waiting overlaps, so concurrency pays.")
print(f"CPU-bound: {cpu.iloc[0]:.0f} -> {cpu.iloc[-1]:.0f} jobs/s ({cpu.iloc[-1] / cpu.iloc[0]:.1f}x): "
      "the GIL serialises Python CPU work; scale with more worker processes instead.")
assert io.iloc[-1] > io.iloc[0]
