# %% [markdown]
# # Runbook: Redis memory

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues
queue = None  # clean only this queue; None: every queue under the prefix
dry_run = True  # True: report and plan only; False: clean the old finished jobs
max_age_hours = 24.0  # clean completed/failed jobs finished longer ago than this
top = 20  # how many of the biggest keys to list

# %%
import datetime as dt

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
# the evidence as it was before any clean: memory used and its limit, bytes by queue and key role, the biggest keys
info = insp.info("memory").set_index("field")
limit = info.loc["maxmemory", "number"]
memory = render.fields([
    ("used", render.human_bytes(info.loc["used_memory", "number"])),
    ("peak", render.human_bytes(info.loc["used_memory_peak", "number"])),
    ("maxmemory", render.human_bytes(limit) if limit else "no limit (maxmemory 0)"),
    ("maxmemory-policy", info.loc["maxmemory_policy", "value"]),
])  # fmt: skip
by_queue = insp.memory_by_queue()
big = insp.bigkeys(top=top)

# %%
# diagnose; clean the old finished jobs unless this is a dry run; verify
finding = runbook.diagnose_memory(conn, prefix, max_age=dt.timedelta(hours=max_age_hours), queue=queue)
finding.carry_out(dry_run=dry_run)  # dry run: only the audit trail records the plan

# %%
render.banner(finding, dry_run=dry_run, context=context)

# %%
render.section("Memory (before any clean)", memory)
render.section("Checks", render.table(finding.checks, headers={"result": "holds"}))
render.section("Plan", render.table(finding.plan, headers={"automatic": "automatic (no: for a human)"}))
render.section("Bytes by queue and key role", render.table(by_queue.head(20)),
               charts.memory(by_queue) if len(by_queue) else None)
render.section(f"The {top} biggest keys", render.table(big, ["key", "type", "length", "bytes", "queue", "role"]))

# %% [markdown]
# ## About this runbook
#
# Memory used vs maxmemory, bytes by queue and key role, the biggest keys, and finished jobs kept forever because no
# removeOnComplete/removeOnFail is set. The fix cleans completed/failed jobs older than `max_age_hours`, in batches that
# never block Redis.
