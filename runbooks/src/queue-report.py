# %% [markdown]
# # Queue report

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues (BullMQ default: "bull")
queue = None  # one queue name, or None for every queue under the prefix
window_min = 60  # the throughput/failure-rate window, minutes
history = None  # a dataset written by `sbqueue record` (folder or URL); None: $SBQUEUE_HISTORY, else no history
history_hours = 24  # how far back the history section looks

# %%
import os

import altair as alt
import pandas as pd
from IPython.display import display

import sbqueue
from sbqueue import charts
from sbqueue.connection import url_of
from sbqueue.inspection import Inspector
from sbqueue.workbench import render

alt.renderers.enable("svg")  # static charts: the HTML report renders offline

conn = sbqueue.connect(redis_url)  # None -> SBQUEUE_REDIS_URL / REDIS_URL / the embedded server
insp = Inspector(conn, prefix, progress=False)  # no progress bars in reports
context = {"Redis": sbqueue.mask_url(url_of(conn)), "prefix": prefix, "queue": queue or "every queue of the prefix"}

# %%
# counts, throughput, latency and failures of the queues this report covers
overview = insp.queues(window_min=window_min)
if queue is not None:
    overview = overview[overview["queue"] == queue]
names = [queue] if queue else list(overview["queue"])
jobs = [insp.jobs(n, ["completed", "failed"], limit=5000) for n in names]
finished = pd.concat(jobs) if jobs else None
latency = None
if finished is not None and len(finished):
    by_name = finished.groupby("name")
    latency = pd.DataFrame({"jobs": by_name["id"].count()}
                           | {f"{col[:-2]}_p{round(p * 100)}_s": by_name[col].quantile(p)
                              for col in ("wait_s", "run_s") for p in (0.5, 0.95, 0.99)}).reset_index()  # fmt: skip
fails = pd.concat([insp.failures(n).assign(queue=n) for n in names]) if names else None

# %%
# the summary first: a report diagnoses nothing, so its status word is REPORT
idle = overview[(overview["waiting"] + overview["prioritized"] > 0) & (overview["workers"] == 0) & ~overview["paused"]]
summary = (f"{len(overview)} queue(s): {int(overview['waiting'].sum()):,} waiting, {int(overview['active'].sum()):,} "
           f"active, {int(overview['failed_window'].sum()):,} failed and {int(overview['completed_window'].sum()):,} "
           f"completed in the last {window_min} min; {int(overview['paused'].sum())} paused.")  # fmt: skip
needed = [f"{q}: jobs are waiting and no worker is connected (run the stuck-jobs runbook)" for q in idle["queue"]]
if queue is not None and overview.empty:
    needed = [f"queue {queue!r} does not exist under prefix {prefix!r}: check the name and the prefix"]
render.summary_banner("REPORT", summary, needed=needed, title="queue-report", context=context)

# %%
render.section("Queues", render.table(overview, [
    "queue", "paused", "waiting", "prioritized", "delayed", "waiting_children", "active", "completed", "failed",
    "workers", "oldest_waiting_age_s", "completed_window", "failed_window", "failure_rate"],
    headers={"oldest_waiting_age_s": "oldest waiting for", "completed_window": f"completed ({window_min} min)",
             "failed_window": f"failed ({window_min} min)"}), charts.counts(overview) if len(overview) else None)

# %%
metrics = {n: insp.metrics(n) for n in names}  # queues without BullMQ metrics have no throughput chart
render.section("Throughput", *[charts.throughput(m).properties(title=f"{n}: throughput")
                               for n, m in metrics.items() if len(m)])

# %%
render.section("Latency (wait and run times of finished jobs)", render.table(latency),
               charts.latency(finished) if latency is not None else None)
render.section("Failures", render.table(fails.head(20) if fails is not None else None,
                                        ["queue", "signature", "count", "last_seen", "example_ids"],
                                        headers={"example_ids": "example jobs"}))

# %% [markdown]
# ## About this report
#
# Counts, throughput, latency and failures for one queue (or all of them). With a dataset written by `sbqueue record`
# (the `history` parameter or `SBQUEUE_HISTORY`), it also shows latency percentiles and failure rates of the last
# `history_hours` — what Redis has already forgotten — and any gaps in the recording.

# %%
# the history section (only when `sbqueue record` keeps a dataset)
history = history or os.environ.get("SBQUEUE_HISTORY")
if history:
    h = insp.history(history)
    since = pd.Timedelta(hours=history_hours)
    display(render.Html(f"<h2>History (last {history_hours} h)</h2>", "History"))
    for name in [n for n in names if n in h.queues()]:
        pct = h.percentiles(name, since=since, freq="15min")
        display(charts.percentiles_over_time(pct).properties(title=f"{name}: run time percentiles"))
        rates = h.failure_rate(name, since=since, freq="1h", by=["name"]).unstack("name").round(3).tail(24)
        display(render.table(rates, index=True))
    gaps = h.gaps()
    display(render.note(f"{len(gaps)} gap(s) in the recorded history"))
    render.section("Gaps in the recording", render.table(gaps))
