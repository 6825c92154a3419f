# %% [markdown]
# # Runbook: failed jobs

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues (BullMQ default: "bull")
queue = None  # the queue with failed jobs; None: every queue under the prefix
dry_run = True  # True: diagnose and plan only; False: retry/remove the chosen jobs
signature = None  # part of the failure signature to act on (see the table), e.g. "invalid email"; None: transient ones
name = None  # only jobs with this name
since = None  # only failures since this time (ISO string, datetime or timedelta)
action = "retry"  # "retry" or "remove"
retry_permanent = False  # also retry permanent failures (bad data, validation): only once their cause is fixed
watch_s = 3.0  # after retrying, seconds to watch the retried jobs (FIXED: fetched and none failed again)
dead_letter_queue = None  # a dead-letter queue to show and, unless dry_run, replay from; None: none
replay_name = None  # replay only dead letters with this job name; None: every letter of the dead-letter queue

# %%
import altair as alt
import pandas as pd

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
# the evidence as it was before any retry: failures grouped by signature (and their class), the latest failed jobs
existing = runbook.queue_names(conn, prefix)
names = existing if queue is None else [q for q in existing if q == queue]
failures = pd.concat([insp.failures(n).assign(queue=n) for n in names]) if names else insp.failures(queue or "none")
failures["class"] = [runbook.classify_failure(s) for s in failures["signature"]]
cols = ["id", "name", "attempts_made", "failed_reason", "finished_on"]
latest = pd.concat([insp.jobs(n, "failed", limit=5)[cols].assign(queue=n) for n in names]) if names else None

# %%
# diagnose; retry (or remove) unless this is a dry run; verify (watches the retried jobs)
finding = runbook.diagnose_failed(queue, conn, prefix, signature=signature, name=name, since=since, action=action,
                                  retry_permanent=retry_permanent, watch_s=watch_s)
letters = None
if dead_letter_queue:  # its letters too: replayed (each removed from the DLQ atomically) and checked after
    letters = insp.dead_letters(dead_letter_queue)
    dead = runbook.diagnose_dead_letters(dead_letter_queue, conn, prefix, name=replay_name)
    finding = runbook.with_dead_letters(finding, dead)
finding.carry_out(dry_run=dry_run)  # dry run: only the audit trail records the plan

# %%
render.banner(finding, dry_run=dry_run, context=context)

# %%
render.section("Failure signatures (before any retry)",
               render.table(failures, ["queue", "signature", "class", "count", "first_seen", "last_seen", "names",
                                       "example_ids"], headers={"example_ids": "example jobs"}),
               charts.failures(failures) if len(failures) else None,
               intro="Transient failures (timeouts, 429, connection) are retried; permanent ones (bad data, "
                     "validation) are not, until their cause is fixed.")  # fmt: skip
render.section("Checks", render.table(finding.checks, headers={"result": "holds"}))
render.section("Plan", render.table(finding.plan, headers={"automatic": "automatic (no: for a human)"}))
render.section(f"Dead letters in {dead_letter_queue} (before any replay)",
               render.table(letters, ["dead_letter_id", "source_queue", "source_job_id", "name", "failed_reason",
                                      "attempts_made", "dead_lettered", "state"],
                            headers={"dead_lettered": "dead-lettered at"}),
               intro="Jobs that failed for good, copied to the dead-letter queue by the workers; with dry_run=False "
                     "the chosen ones go back to their source queue as fresh jobs.") if letters is not None else None
render.section("Latest failed jobs (before any retry)",
               render.table(latest, ["queue", *cols], headers={"finished_on": "failed at"}))

# %%
# in JupyterLab the triage widget; in the static report a note saying where to use it
from sbqueue.workbench.widgets import FailureTriage

render.section("Interactive triage", render.widget_or_note(
    lambda: FailureTriage(names[0], connection=conn, prefix=prefix),
    "Retrying or removing a whole signature group, with a Confirm step,") if names else None)

# %% [markdown]
# ## About this runbook
#
# Failed jobs grouped by error signature (normalised reason + top stack frame), the trend per minute, examples; then
# retry (or remove) one chosen signature in batches. `FailureTriage` above does the same interactively, with a Confirm
# step.
