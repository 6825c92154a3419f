# %% [markdown]
# # Runbook: stalled jobs

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues (BullMQ default: "bull")
queue = None  # the queue with jobs stuck in active; None: every queue under the prefix
dry_run = True  # True: diagnose and plan only; False: requeue/fail the stalled jobs
mode = "requeue"  # "requeue" (run again, next) or "fail"
force = False  # also take jobs whose lock still exists although no worker of theirs is connected
watch_s = 3.0  # after requeueing, seconds to watch for jobs being fetched (FIXED needs a worker fetching them)

# %%
import pandas as pd

import sbqueue
from sbqueue import runbook
from sbqueue.connection import url_of
from sbqueue.inspection import Inspector
from sbqueue.workbench import render

conn = sbqueue.connect(redis_url)  # None -> SBQUEUE_REDIS_URL / REDIS_URL / the embedded server
insp = Inspector(conn, prefix, progress=False)  # no progress bars in reports
context = {"Redis": sbqueue.mask_url(url_of(conn)), "prefix": prefix, "queue": queue or "every queue of the prefix"}

# %%
# the evidence as it was before any fix: the active jobs of the queues this run covers, lock and worker of each
existing = runbook.queue_names(conn, prefix)
names = existing if queue is None else [q for q in existing if q == queue]
active = pd.concat([insp.stalled(n).assign(queue=n) for n in names]) if names else None

# %%
# diagnose; requeue (or fail) unless this is a dry run; verify (watches the queue for jobs being fetched)
finding = runbook.diagnose_stalled(queue, conn, prefix, mode=mode, force=force, watch_s=watch_s)
finding.carry_out(dry_run=dry_run)  # dry run: only the audit trail records the plan

# %%
render.banner(finding, dry_run=dry_run, context=context)

# %%
render.section("Checks", render.table(finding.checks, headers={"result": "holds"}))
render.section("Plan", render.table(finding.plan, headers={"automatic": "automatic (no: for a human)"}))
render.section("Active jobs (before any fix)", render.table(active, [
    "queue", "id", "name", "processed_by", "lock_ttl_s", "worker_connected", "stalled_count", "active_s", "verdict"],
    headers={"lock_ttl_s": "lock expires in", "active_s": "active for"}))

# %% [markdown]
# ## About this runbook
#
# Active jobs whose lock is gone or whose worker is gone. A running worker's stalled check would requeue them after the
# lock expires; this runbook names them now and can requeue (or fail) them at once. Jobs still locked are left alone
# unless `force = True` — their worker might be alive.
