# %% [markdown]
# # Runbook: jobs are waiting but nothing happens

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues (BullMQ default: "bull")
queue = None  # the queue whose jobs are not moving; None: every queue under the prefix
dry_run = True  # True: diagnose and plan only; False: also apply the automatic fixes
watch_s = 3.0  # after a fix, seconds to watch for jobs being fetched (FIXED needs a worker fetching them)

# %%
import sbqueue
from sbqueue import runbook
from sbqueue.connection import url_of
from sbqueue.inspection import Inspector
from sbqueue.workbench import render

conn = sbqueue.connect(redis_url)  # None -> SBQUEUE_REDIS_URL / REDIS_URL / the embedded server
insp = Inspector(conn, prefix, progress=False)  # no progress bars in reports
context = {"Redis": sbqueue.mask_url(url_of(conn)), "prefix": prefix, "queue": queue or "every queue of the prefix"}

# %%
# the evidence as it was before any fix: the queues this run covers, their counts, the connected workers
existing = runbook.queue_names(conn, prefix)
names = existing if queue is None else [q for q in existing if q == queue]
overview = insp.queues()
overview = overview[overview["queue"].isin(names)]
workers = insp.workers(queue)

# %%
# diagnose; apply the automatic fixes unless this is a dry run; verify (watches the queue for jobs being fetched)
finding = runbook.diagnose_stuck(queue, conn, prefix, watch_s=watch_s)
finding.carry_out(dry_run=dry_run)  # dry run: only the audit trail records the plan

# %%
render.banner(finding, dry_run=dry_run, context=context)

# %%
render.section("Checks", render.table(finding.checks, headers={"result": "holds"}),
               intro="Most specific first: the first check that holds is the cause.")
render.section("Plan", render.table(finding.plan, headers={"automatic": "automatic (no: for a human)"}))
render.section("Queues (before any fix)", render.table(overview, [
    "queue", "paused", "waiting", "prioritized", "delayed", "waiting_children", "active", "completed", "failed",
    "workers", "global_concurrency", "rate_limit_max", "rate_limit_duration_s", "oldest_waiting_age_s"],
    headers={"oldest_waiting_age_s": "oldest waiting for"}))
render.section("Connected workers", render.table(workers, ["queue", "worker_name", "addr", "age_s", "idle_s", "cmd"],
                                                 none="no worker is connected"), always=finding.outcome != "NOT FOUND")

# %% [markdown]
# ## About this runbook
#
# Checks, most specific first: are parents stuck waiting for children nothing will finish? is the queue paused?
# rate-limited? at its global concurrency? are workers connected at all? are they all busy? are the jobs delayed and
# simply not due? The first that holds is the cause; the plan fixes what can be fixed safely (resuming a paused queue;
# releasing a parent with nothing pending, as BullMQ would have).
