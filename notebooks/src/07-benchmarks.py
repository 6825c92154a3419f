# %% [markdown]
# # 07 · Benchmarks: sbqueue beside Node BullMQ and bullmq (PyPI)
#
# Charts a run of `python -m benchmarks` (`make bench`): every engine measured in one run on one Redis, median of the
# repeats with min-max whiskers. By default it shows the newest run under `benchmarks/results/`, else the published one
# (`benchmarks/latest.json`, the numbers the README quotes).

# %% tags=["parameters"]
results_file = None  # a throughput-*.json of `python -m benchmarks`, or None: newest run, else the published one

# %%
import json
from pathlib import Path

import pandas as pd

from sbqueue import charts


def find_results(explicit):
    if explicit:
        return Path(explicit)
    for folder in [Path.cwd(), *Path.cwd().parents]:
        bench = folder / "benchmarks"
        if (bench / "latest.json").exists():
            runs = sorted((bench / "results").glob("throughput-*.json"))
            return runs[-1] if runs else bench / "latest.json"
    raise FileNotFoundError("no benchmarks/latest.json in this folder or above: pass results_file=")


path = find_results(results_file)
run = json.loads(path.read_text())
machine = run["machine"]
rows = pd.DataFrame(run["rows"])
print(f"{path.name}: {machine['date']}, {machine['cores']} cores {machine['cpu']}, Python {machine['python']}, "
      f"Node {machine['node']}, Redis {machine['redis']} (persistence {machine['persistence']}), "
      f"N={machine['n']}, {machine['repeats']} repeats")

# %%
order = list(dict.fromkeys(rows["operation"]))
table = rows.pivot(index="operation", columns="engine", values="median").reindex(order)
for other in [e for e in table.columns if e != "sbqueue"]:
    table[f"sbqueue/{other}"] = table["sbqueue"] / table[other]
table.round(2)

# %%
charts.benchmark(rows)

# %% [markdown]
# ## Against the targets (same-run ratios to Node BullMQ)

# %%
targets = {"add one by one": 1.0, "add_bulk (1000/batch)": 1.0, "process, c=10": 0.8, "process, c=100": 1.0}
for operation, target in targets.items():
    if operation in table.index and "node" in table.columns:
        ratio = table.loc[operation, "sbqueue"] / table.loc[operation, "node"]
        verdict = "met" if ratio >= target else "NOT met"
        print(f"{operation:<24} sbqueue/node {ratio:.2f}x (target {target:.1f}x): {verdict}")
assert (rows["median"] > 0).all()

# %% [markdown]
# ## Soak: one worker over a million jobs
#
# `make soak` (`python -m benchmarks.soak --jobs 1000000 --publish`) runs one `sbqueue worker` process for a million
# jobs and samples its memory, open files and Redis connections. After the warm-up (shaded) the lines must stay flat:
# nothing may grow per job, or a worker would not survive weeks.

# %%
soak_file = path.parent / "soak-latest.json" if path.name == "latest.json" else path.parent.parent / "soak-latest.json"
soak = json.loads(soak_file.read_text())
verdict = soak["verdict"]
print(f"{verdict['jobs']:,} jobs in {verdict['seconds']:,.0f} s ({verdict['jobs_per_s']:,} jobs/s); RSS "
      f"{verdict['rss_after_warmup_kib'] / 1024:,.1f} MiB after the warm-up, {verdict['rss_end_kib'] / 1024:,.1f} MiB "
      f"at the end ({verdict['rss_growth']:+.1%}); open files {verdict['fds']}, Redis connections "
      f"{verdict['connections']}: {'OK' if verdict['ok'] else 'FAILED'}")

# %%
charts.soak(pd.DataFrame(soak["rows"]))

# %% [markdown]
# The same million jobs through a process pool (`python -m benchmarks.soak --jobs 1000000 --processes 2
# --concurrency 4 --publish`): the worker's lines, plus its two children's summed RSS, which must stay flat too, with
# no child replaced.

# %%
pool_file = soak_file.with_name("soak-processes-latest.json")
pool = json.loads(pool_file.read_text())
pv = pool["verdict"]
print(f"{pv['jobs']:,} jobs in {pv['seconds']:,.0f} s ({pv['jobs_per_s']:,} jobs/s) through {pv['processes']} "
      "children; "
      f"worker RSS {pv['rss_growth']:+.1%}, children's RSS {pv['children_rss_after_warmup_kib'] / 1024:,.1f} MiB -> "
      f"{pv['children_rss_end_kib'] / 1024:,.1f} MiB ({pv['children_rss_growth']:+.1%}); children replaced "
      f"{pv['children_replaced']}: {'OK' if pv['ok'] else 'FAILED'}")
assert pv["ok"]

# %%
charts.soak(pd.DataFrame(pool["rows"]), title="Soak: a process-pool worker over a long run")

