# %% [markdown]
# # 04 · Tuning: persistence
#
# The durability/speed trade-off of the deployment guide, measured: add latency and throughput under `appendfsync always
# | everysec | no`, with RDB snapshots on or off. Each setting runs on its own temporary redis-server that sbqueue
# starts (your data is never touched).

# %% tags=["parameters"]
jobs = 300  # adds per setting (raise for steadier numbers)
settings = ["always", "everysec", "no"]  # appendfsync values to compare

# %%
import tempfile
import time

import pandas as pd

import sbqueue
from sbqueue import charts, embedded


def measure(appendfsync, rdb):
    home = tempfile.mkdtemp(prefix="sbq-persist-")
    save = "900 1 300 10 60 10000" if rdb else ""  # "": RDB snapshots off
    info = embedded.ensure_server(home, config={"appendfsync": appendfsync, "save": save})
    try:
        queue = sbqueue.Queue("persist", connection=info.url, prefix="exp")
        latencies = []
        start = time.perf_counter()
        for i in range(jobs):
            t = time.perf_counter()
            queue.add("write", {"i": i, "pad": "x" * 200})
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        queue.close()
    finally:
        embedded.stop(home)
    lat = pd.Series(latencies) * 1000
    return {"appendfsync": appendfsync, "rdb": "on" if rdb else "off", "adds_per_s": jobs / elapsed,
            "p50_ms": lat.median(), "p99_ms": lat.quantile(0.99)}


results = pd.DataFrame([measure(a, rdb) for a in settings for rdb in (True, False)])
results.round(3)

# %%
charts.tuning(results, x='appendfsync', y='adds_per_s', color='rdb', x_title='appendfsync', y_title='adds per second')

# %%
by = results.groupby("appendfsync")["adds_per_s"].mean()
print(f"always: {by['always']:.0f}/s, everysec: {by['everysec']:.0f}/s, no: {by['no']:.0f}/s")
print(f"everysec runs at {by['everysec'] / by['always']:.1f}x the speed of always "
      f"and {by['everysec'] / by['no']:.0%} of no, "
      "while losing at most ~1 s of writes on a crash (always: none; no: whatever the OS had not flushed).")
assert (results["adds_per_s"] > 0).all()
