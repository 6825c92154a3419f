# %% [markdown]
# # Runbook: jobs wait too long before they start

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues (BullMQ default: "bull")
queue = None  # the queue whose jobs wait too long; None: every queue under the prefix
dry_run = True  # True: diagnose and plan only; False: also promote overdue delayed jobs (the one automatic fix)
window_s = 300.0  # the window measured (seconds or a duration such as 5m): arrivals, completions, waits
max_wait_s = 10.0  # a job should start within this many seconds of becoming runnable
sample_s = 2.0  # seconds spent sampling each queue's backlog, active jobs and limiter
concurrency = 0  # per-worker concurrency if known; 0: estimated from the peak active count
watch_s = 3.0  # after promoting, seconds to watch for jobs being fetched (FIXED needs a worker fetching them)

# %%
import altair as alt

import sbqueue
from sbqueue import charts, runbook
from sbqueue.connection import url_of
from sbqueue.inspection import Inspector
from sbqueue.workbench import render

alt.renderers.enable("svg")  # static charts: the HTML report renders offline

conn = sbqueue.connect(redis_url)  # None -> SBQUEUE_REDIS_URL / REDIS_URL / the embedded server
insp = Inspector(conn, prefix, progress=False)  # no progress bars in reports
context = {"Redis": sbqueue.mask_url(url_of(conn)), "prefix": prefix, "queue": queue or "every queue of the prefix"}

# %%
# the evidence as it was before any fix: the queues this run covers, their counts, workers and limits
existing = runbook.queue_names(conn, prefix)
names = existing if queue is None else [q for q in existing if q == queue]
overview = insp.queues()
overview = overview[overview["queue"].isin(names)]

# %%
# diagnose (samples each queue for sample_s); promote overdue delayed jobs unless this is a dry run; verify
finding = runbook.diagnose_latency(queue, conn, prefix, window_s=window_s, max_wait_s=max_wait_s, sample_s=sample_s,
                                   concurrency=concurrency or None, watch_s=watch_s)
finding.carry_out(dry_run=dry_run)  # dry run: only the audit trail records the plan

# %%
render.banner(finding, dry_run=dry_run, context=context)

# %%
render.section("Checks", render.table(finding.checks, headers={"result": "holds"}),
               intro="Most specific first: when the waits are too long, the first cause that holds is named.")
render.section("Plan", render.table(finding.plan, headers={"automatic": "automatic (no: for a human)"}))
for part in finding.parts or [finding]:
    m = getattr(part, "measurements", None)
    if m is None:
        continue
    render.section(f"{part.queue}: rates", render.fields([
        ("arrival", f"{m.arrival_per_s:.3g}/s"), ("service (completed + failed)", f"{m.service_per_s:.3g}/s"),
        ("measured over", render.human_duration(m.span_s)), ("counted from", m.rate_source),
        ("workers connected", m.workers), ("runnable now", m.runnable)]))
    done = m.finished[m.finished["window"] == "now"]
    render.section(f"{part.queue}: wait times", render.table(m.wait_percentiles()),
                   charts.latency(done, title=f"{part.queue}: wait and run times") if len(done) else None,
                   intro="Jobs finished in the window (now), in the window before it (earlier), and the jobs still "
                   "waiting; a wait counts from when a job became runnable (its due time when it was delayed).")
    render.section(f"{part.queue}: run time by job name", render.table(m.by_name().head(10)))
render.section("Queues (before any fix)", render.table(overview, [
    "queue", "paused", "waiting", "prioritized", "delayed", "active", "workers", "global_concurrency",
    "rate_limit_max", "rate_limit_duration_s", "oldest_waiting_age_s"],
    headers={"oldest_waiting_age_s": "oldest waiting for"}))

# %% [markdown]
# ## About this runbook
#
# Measures a window: arrivals vs completions, wait-time percentiles now and the window before, how busy the connected
# workers are, run time by job name, who waits at which priority, the rate limit and global concurrency, delayed jobs
# promoted late, Redis stalls. The first cause that holds (most specific first) is named with its evidence and what to
# do — e.g. how many workers to add. Latency needs a human: the one automatic fix promotes delayed jobs that are
# overdue.
