"""Cell sources of every runbook and notebook (built into .ipynb by tools/build_notebooks.py).

Each entry: (kind, source) with kind "md", "code" or "parameters" (the papermill-tagged cell).
Cells call the SDK only — no raw redis.
"""

from __future__ import annotations

SETUP = '''
import altair as alt

import sbqueue
from sbqueue import charts, runbook
from sbqueue.connection import url_of
from sbqueue.inspection import Inspector

alt.renderers.enable("svg")  # static charts: the HTML report renders offline

conn = sbqueue.connect(redis_url)  # None -> SBQUEUE_REDIS_URL / REDIS_URL / the embedded server
insp = Inspector(conn, prefix, progress=False)  # no progress bars in reports
print("Redis:", sbqueue.mask_url(url_of(conn)))
'''

APPLY = '''
if dry_run:
    print("dry run: nothing changed (set dry_run = False to apply the automatic actions above)")
else:
    for line in finding.apply(confirm=True):
        print(line)
'''

VERIFY = '''
if dry_run:
    print("dry run: nothing was applied, so nothing to verify")
else:
    fixed, seen = finding.verify()
    print("fixed" if fixed else "NOT fixed", "-", seen)
'''

VERDICT = '''
print(finding.verdict())
'''


def runbook_cells(title: str, intro: str, params: str, inspect: list[str], diagnose: str, extra: list[tuple[str, str]]
                  ) -> list[tuple[str, str]]:  # fmt: skip
    cells: list[tuple[str, str]] = [("md", f"# {title}\n\n{intro}"), ("parameters", params), ("code", SETUP),
                                    ("md", "## Inspect")]  # fmt: skip
    cells += [("code", c) for c in inspect]
    cells += [("md", "## Diagnose"), ("code", diagnose), ("code", "finding.checks")]
    cells += extra
    cells += [
        ("md", "## Plan\n\nWhat would be done. Rows with `automatic = False` are for a human."),
        ("code", "finding.plan"),
        ("md", "## Apply\n\nOnly when `dry_run` is False."),
        ("code", APPLY),
        ("md", "## Verify"),
        ("code", VERIFY),
        ("md", "## Verdict"),
        ("code", VERDICT),
    ]
    return cells


COMMON_PARAMS = '''
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues (BullMQ default: "bull")
'''

STUCK = runbook_cells(
    "Runbook: jobs are waiting but nothing happens",
    "Checks, most specific first: is the queue paused? rate-limited? at its global concurrency? are workers "
    "connected at all? are they all busy? are the jobs delayed and simply not due? The first that holds is the "
    "cause; the plan fixes what can be fixed safely (resuming a paused queue).",
    COMMON_PARAMS + '''queue = "stuck"  # the queue whose jobs are not moving
dry_run = True  # True: diagnose and plan only; False: also apply the automatic fixes
''',
    ["insp.queue(queue).summary().T", "insp.workers(queue)"],
    "finding = runbook.diagnose_stuck(queue, conn, prefix)",
    [],
)

STALLED = runbook_cells(
    "Runbook: stalled jobs",
    "Active jobs whose lock is gone or whose worker is gone. A running worker's stalled check would requeue them "
    "after the lock expires; this runbook names them now and can requeue (or fail) them at once. Jobs still "
    "locked are left alone unless `force = True` — their worker might be alive.",
    COMMON_PARAMS + '''queue = "stalled"  # the queue with jobs stuck in active
dry_run = True  # True: diagnose and plan only; False: requeue/fail the stalled jobs
mode = "requeue"  # "requeue" (run again, next) or "fail"
force = False  # also take jobs whose lock still exists although no worker of theirs is connected
''',
    ["insp.stalled(queue)[['id', 'name', 'processed_by', 'lock_ttl_s', 'worker_connected', 'stalled_count', 'verdict']]"],
    "finding = runbook.diagnose_stalled(queue, conn, prefix, mode=mode, force=force)",
    [],
)

FAILED = runbook_cells(
    "Runbook: failed jobs",
    "Failed jobs grouped by error signature (normalised reason + top stack frame), the trend per minute, "
    "examples; then retry (or remove) one chosen signature in batches. `FailureTriage` below does the same "
    "interactively, with a Confirm step.",
    COMMON_PARAMS + '''queue = "failing"  # the queue with failed jobs
dry_run = True  # True: diagnose and plan only; False: retry/remove the chosen jobs
signature = None  # substring of the failure signature to act on (see the table), e.g. "invalid email"
name = None  # only jobs with this name
since = None  # only failures since this time (ISO string, datetime or timedelta)
action = "retry"  # "retry" or "remove"
''',
    ["failures = insp.failures(queue)\nfailures[['signature', 'count', 'first_seen', 'last_seen', 'names', 'example_ids']]",
     "charts.failures(failures)",
     "insp.jobs(queue, 'failed', limit=5)[['id', 'name', 'attempts_made', 'failed_reason', 'finished_on']]"],
    "finding = runbook.diagnose_failed(queue, conn, prefix, signature=signature, name=name, since=since, "
    "action=action)",
    [("md", "Interactive triage (retry or remove a whole signature group, with Confirm):"),
     ("code", "from sbqueue.widgets import FailureTriage\n\nFailureTriage(queue, connection=conn, prefix=prefix)")],
)

MEMORY = runbook_cells(
    "Runbook: Redis memory",
    "Memory used vs maxmemory, bytes by queue and key role, the biggest keys, and finished jobs kept forever "
    "because no removeOnComplete/removeOnFail is set. The fix cleans completed/failed jobs older than "
    "`max_age_hours`, in batches that never block Redis.",
    '''redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues
queue = None  # clean only this queue; None: every queue under the prefix
dry_run = True  # True: report and plan only; False: clean the old finished jobs
max_age_hours = 24.0  # clean completed/failed jobs finished longer ago than this
top = 20  # how many of the biggest keys to list
''',
    ["fields = ['used_memory_human', 'used_memory_peak_human', 'maxmemory_human', 'maxmemory_policy']\n"
     "insp.info('memory').set_index('field').loc[fields, ['value']]",
     "by_queue = insp.memory_by_queue()\nby_queue.head(20)",
     "charts.memory(by_queue)",
     "insp.bigkeys(top=top)[['key', 'type', 'length', 'bytes', 'queue', 'role']]"],
    "import datetime as dt\n\n"
    "finding = runbook.diagnose_memory(conn, prefix, max_age=dt.timedelta(hours=max_age_hours), queue=queue)",
    [],
)

HEALTH = runbook_cells(
    "Runbook: Redis health",
    "The ten alerts of the deployment guide (down, memory, connections, rejections, evictions, replication lag, "
    "RDB/AOF failures, slow queries, CPU) plus queue alerts, evaluated now; persistence, slow log, latency and "
    "the config audit. The one automatic fix: an evicting `maxmemory-policy` goes back to `noeviction` (an "
    "evicting policy deletes job keys silently).",
    '''redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues
queue = None  # unused here (health covers the server and every queue); kept for a uniform interface
dry_run = True  # True: report and plan only; False: also fix an evicting maxmemory-policy
window_s = 1.0  # seconds between the two samples that rates (evictions/s, slow queries/s, CPU) come from
''',
    ["alerts = insp.alerts(window_s=window_s)\nalerts", "insp.persistence().T", "insp.slowlog(10)",
     "insp.latency()", "insp.config_audit()"],
    "finding = runbook.diagnose_health(conn, prefix, window_s=window_s)",
    [],
)

REPORT = [
    ("md", "# Queue report\n\nCounts, throughput, latency and failures for one queue (or all of them)."),
    ("parameters", COMMON_PARAMS + '''queue = None  # one queue name, or None for every queue under the prefix
window_min = 60  # the throughput/failure-rate window, minutes
'''),
    ("code", SETUP),
    ("md", "## Queues"),
    ("code", "overview = insp.queues(window_min=window_min)\n"
             "if queue is not None:\n    overview = overview[overview['queue'] == queue]\noverview"),
    ("code", "charts.counts(overview)"),
    ("md", "## Throughput"),
    ("code", "names = [queue] if queue else list(overview['queue'])\n"
             "for name in names:\n    display(charts.throughput(insp.metrics(name)).properties(title=f'{name}: throughput'))"),
    ("md", "## Latency (wait and run times of finished jobs)"),
    ("code", "import pandas as pd\n\nfinished = pd.concat([insp.jobs(n, ['completed', 'failed'], limit=5000) for n in names])\n"
             "finished.groupby('name')[['wait_s', 'run_s']].describe(percentiles=[0.5, 0.95, 0.99])"),
    ("code", "charts.latency(finished)"),
    ("md", "## Failures"),
    ("code", "fails = pd.concat([insp.failures(n).assign(queue=n) for n in names])\n"
             "fails[['queue', 'signature', 'count', 'last_seen', 'example_ids']].head(20)"),
]

RUNBOOKS = {
    "runbooks/stuck-jobs.ipynb": STUCK,
    "runbooks/stalled-jobs.ipynb": STALLED,
    "runbooks/failed-jobs.ipynb": FAILED,
    "runbooks/redis-memory.ipynb": MEMORY,
    "runbooks/redis-health.ipynb": HEALTH,
    "runbooks/queue-report.ipynb": REPORT,
}

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {**RUNBOOKS}
