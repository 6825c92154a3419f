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


# --- teaching and tuning notebooks -------------------------------------------------------------------------

WAIT_HELPER = '''
import time


def wait_until(predicate, timeout=60.0):
    """Poll until predicate() is true (the worker runs in a background thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
'''

QUICKSTART = [
    ("md", "# 01 · Quickstart\n\nAdd jobs, process them with a worker, look at them as a DataFrame and a chart. "
           "With no `SBQUEUE_REDIS_URL`/`REDIS_URL` set, sbqueue starts (or reuses) its embedded Redis."),
    ("parameters", '''redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-quickstart"  # key prefix for this notebook (its queue is reset below)
jobs = 20  # how many jobs to add
'''),
    ("code", "import sbqueue\nfrom sbqueue import charts\nfrom sbqueue.inspection import Inspector\n" + WAIT_HELPER),
    ("md", "## A queue and some jobs"),
    ("code", '''queue = sbqueue.Queue("squares", connection=redis_url, prefix=prefix)
queue.obliterate(force=True)  # a fresh start every run
for x in range(jobs):
    queue.add("square", {"x": x})
print(queue.get_job_counts("waiting", "completed"))'''),
    ("md", "## A worker\n\nA plain function runs in a thread pool; an `async def` would run on the worker's event loop."),
    ("code", '''def square(job):
    return job.data["x"] ** 2


worker = sbqueue.Worker("squares", square, connection=redis_url, prefix=prefix, concurrency=4).start()
wait_until(lambda: queue.get_job_counts("completed")["completed"] == jobs)
worker.close()
print(queue.get_job_counts("waiting", "active", "completed", "failed"))'''),
    ("md", "## Jobs as a DataFrame"),
    ("code", '''insp = Inspector(redis_url, prefix, progress=False)
done = insp.jobs("squares", "completed")
assert len(done) == jobs
print(sorted(done["returnvalue"]) == sorted(x * x for x in range(jobs)))
print(done.dtypes[["timestamp", "wait_s", "run_s"]].to_dict())'''),
    ("code", "# NBVAL_IGNORE_OUTPUT\n# (the chart embeds random ids and timestamps)\ncharts.counts(insp.queues())"),
]

ANALYSIS = [
    ("md", "# 02 · Queue analysis\n\nData-science style questions on a queue: wait and run time distributions by "
           "job name, failure rates, the event timeline, and an export to Parquet."),
    ("parameters", '''redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-analysis"  # key prefix for this notebook
jobs = 200  # jobs to generate (raise it for a meatier analysis)
'''),
    ("code", "import random\n\nimport sbqueue\nfrom sbqueue import charts\nfrom sbqueue.inspection import Inspector\n"
             + WAIT_HELPER),
    ("code", '''queue = sbqueue.Queue("reports", connection=redis_url, prefix=prefix)
queue.obliterate(force=True)
rng = random.Random(42)
kinds = {"thumbnail": 0.002, "pdf": 0.01, "email": 0.001}
queue.add_bulk([{"name": name, "data": {"n": i, "fail": rng.random() < 0.1}}
                for i in range(jobs) for name in [rng.choice(list(kinds))]])


def work(job):
    time.sleep(kinds[job.name] * rng.uniform(0.5, 1.5))
    if job.data["fail"]:
        raise RuntimeError(f"{job.name} renderer crashed")
    return {"bytes": 1000 + job.data["n"]}


worker = sbqueue.Worker("reports", work, connection=redis_url, prefix=prefix, concurrency=8).start()
wait_until(lambda: sum(queue.get_job_counts("completed", "failed").values()) == jobs)
worker.close()
insp = Inspector(redis_url, prefix, progress=False)
df = insp.jobs("reports", ["completed", "failed"])
df.groupby(["name", "state"]).size().unstack(fill_value=0)'''),
    ("md", "## Wait and run times by job name (seconds)"),
    ("code", "df.groupby('name')[['wait_s', 'run_s']].describe(percentiles=[0.5, 0.95]).round(4)"),
    ("code", "charts.latency(df)"),
    ("md", "## Failure rate by name, and the failure signatures"),
    ("code", '''rates = df.assign(failed=df["state"] == "failed").groupby("name")["failed"].mean().rename("failure_rate")
assert rates.between(0, 1).all()
rates.round(3)'''),
    ("code", "insp.failures('reports')[['signature', 'count', 'names']]"),
    ("md", "## The event timeline"),
    ("code", "events = insp.events('reports')\nevents['event'].value_counts()"),
    ("code", "charts.timeline(events)"),
    ("md", "## Export"),
    ("code", '''import tempfile
from pathlib import Path

import pandas as pd

path = Inspector.export(df.drop(columns=["data", "opts", "returnvalue", "progress"]), Path(tempfile.mkdtemp()) / "jobs.parquet")
back = pd.read_parquet(path)
assert len(back) == len(df)
print(path.name, len(back), "rows")'''),
]

CONCURRENCY = [
    ("md", "# 03 · Tuning: worker concurrency\n\nThroughput and latency against concurrency for an I/O-bound and a "
           "CPU-bound processor. Defaults are small so CI stays fast; raise `jobs` and add concurrencies to scale up."),
    ("parameters", '''redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-tuning"  # key prefix for this notebook
jobs = 200  # jobs per measurement
concurrencies = [1, 4, 16, 64]  # worker concurrency settings to compare
io_ms = 5  # simulated I/O wait per job (ms)
cpu_loops = 20000  # simulated CPU work per job (loop iterations)
'''),
    ("code", "import asyncio\nimport time\n\nimport pandas as pd\n\nimport sbqueue\nfrom sbqueue import charts\nfrom sbqueue.inspection import Inspector"),
    ("code", '''async def io_bound(job):
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
    return {"kind": kind, "concurrency": concurrency, "throughput": jobs / elapsed,
            "p50_latency_s": (done["wait_s"] + done["run_s"]).median(), "p95_latency_s": (done["wait_s"] + done["run_s"]).quantile(0.95)}


results = pd.DataFrame([measure(kind, fn, c) for kind, fn in [("io", io_bound), ("cpu", cpu_bound)] for c in concurrencies])
results.round(3)'''),
    ("code", "charts.tuning(results, x='concurrency', y='throughput', color='kind', x_title='concurrency (jobs in flight)', y_title='throughput (jobs/s)', log_x=True)"),
    ("md", "## Conclusion (computed from the numbers above)"),
    ("code", '''io = results[results["kind"] == "io"].set_index("concurrency")["throughput"]
cpu = results[results["kind"] == "cpu"].set_index("concurrency")["throughput"]
print(f"I/O-bound: {io.iloc[0]:.0f} -> {io.iloc[-1]:.0f} jobs/s from concurrency {io.index[0]} to {io.index[-1]} "
      f"({io.iloc[-1] / io.iloc[0]:.1f}x): waiting overlaps, so concurrency pays.")
print(f"CPU-bound: {cpu.iloc[0]:.0f} -> {cpu.iloc[-1]:.0f} jobs/s ({cpu.iloc[-1] / cpu.iloc[0]:.1f}x): the GIL serialises "
      "Python CPU work; scale with more worker processes instead.")
assert io.iloc[-1] > io.iloc[0]'''),
]

PERSISTENCE = [
    ("md", "# 04 · Tuning: persistence\n\nThe durability/speed trade-off of the deployment guide, measured: add "
           "latency and throughput under `appendfsync always | everysec | no`, with RDB snapshots on or off. Each "
           "setting runs on its own temporary redis-server that sbqueue starts (your data is never touched)."),
    ("parameters", '''jobs = 300  # adds per setting (raise for steadier numbers)
settings = ["always", "everysec", "no"]  # appendfsync values to compare
'''),
    ("code", '''import tempfile
import time

import pandas as pd

import sbqueue
from sbqueue import charts, embedded


def measure(appendfsync, rdb):
    home = tempfile.mkdtemp(prefix="sbq-persist-")
    info = embedded.ensure_server(home, config={"appendfsync": appendfsync, "save": "900 1 300 10 60 10000" if rdb else ""})
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
results.round(3)'''),
    ("code", "charts.tuning(results, x='appendfsync', y='adds_per_s', color='rdb', x_title='appendfsync', y_title='adds per second')"),
    ("code", '''by = results.groupby("appendfsync")["adds_per_s"].mean()
print(f"always: {by['always']:.0f}/s, everysec: {by['everysec']:.0f}/s, no: {by['no']:.0f}/s")
print(f"everysec runs at {by['everysec'] / by['always']:.1f}x the speed of always and {by['everysec'] / by['no']:.0%} of no, "
      "while losing at most ~1 s of writes on a crash (always: none; no: whatever the OS had not flushed).")
assert (results["adds_per_s"] > 0).all()'''),
]

LIMITS = [
    ("md", "# 05 · Rate limits and priorities, measured"),
    ("parameters", '''redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-limits"  # key prefix for this notebook
limit_max = 5  # jobs per window
limit_ms = 500  # window length (ms)
jobs = 20  # jobs for the rate-limit experiment
'''),
    ("code", "import pandas as pd\n\nimport sbqueue\nfrom sbqueue.inspection import Inspector\n" + WAIT_HELPER),
    ("md", "## A worker rate limit: at most `limit_max` jobs per `limit_ms`"),
    ("code", '''queue = sbqueue.Queue("limited", connection=redis_url, prefix=prefix)
queue.obliterate(force=True)
queue.add_bulk([{"name": "call-api", "data": {"i": i}} for i in range(jobs)])
worker = sbqueue.Worker("limited", lambda job: None, connection=redis_url, prefix=prefix, concurrency=10,
                        limiter={"max": limit_max, "duration": limit_ms}).start()
wait_until(lambda: queue.get_job_counts("completed")["completed"] == jobs)
worker.close()
done = Inspector(redis_url, prefix, progress=False).jobs("limited", "completed")
start = done["processed_on"].min()
window = ((done["processed_on"] - start).dt.total_seconds() * 1000 // limit_ms).astype(int)
per_window = window.value_counts().sort_index()
print(per_window.to_dict())
assert per_window.max() <= limit_max
print(f"{jobs} jobs took {(done['processed_on'].max() - start).total_seconds():.2f} s "
      f"(at least {(jobs // limit_max - 1) * limit_ms / 1000:.2f} s by the limit)")'''),
    ("md", "## Priorities: jobs without a priority first (BullMQ 6 order), then 1 (most urgent), 2, 3"),
    ("code", '''pq = sbqueue.Queue("prio", connection=redis_url, prefix=prefix)
pq.obliterate(force=True)
for i, priority in enumerate([3, 1, 0, 2, 1, 0, 3]):
    pq.add(f"p{priority}", {"i": i}, priority=priority)
order = []
worker = sbqueue.Worker("prio", lambda job: order.append(job.name), connection=redis_url, prefix=prefix, concurrency=1).start()
wait_until(lambda: len(order) == 7)
worker.close()
print(order)
assert order == ["p0", "p0", "p1", "p1", "p2", "p3", "p3"]'''),
]

WIDGETS = [
    ("md", "# 06 · Widgets\n\nThe panels people use during an incident. Destructive actions show what they will do "
           "and need **Confirm**. (In a report these render as static placeholders; open the notebook in "
           "JupyterLab to click.)"),
    ("parameters", '''redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-widgets"  # key prefix for this notebook
'''),
    ("code", '''import sbqueue
from sbqueue import scenarios
from sbqueue.widgets import CleanPanel, FailureTriage, JobBrowser, QueueDashboard

conn = sbqueue.connect(redis_url)
planted = scenarios.failing(conn, prefix, "demo-failing", jobs=40)
print(planted.description)'''),
    ("code", "QueueDashboard(connection=conn, prefix=prefix)"),
    ("code", "browser = JobBrowser(sbqueue.Queue('demo-failing', conn, prefix=prefix), state='failed')\nbrowser"),
    ("code", "FailureTriage('demo-failing', connection=conn, prefix=prefix)"),
    ("code", "CleanPanel('demo-failing', connection=conn, prefix=prefix)"),
]

BENCHMARKS = [
    ("md", "# 07 · Benchmarks: sbqueue beside Node BullMQ and bullmq (PyPI)\n\n"
           "Charts a run of `python -m benchmarks` (`make bench`): every engine measured in one run on one Redis, "
           "median of the repeats with min-max whiskers. By default it shows the newest run under "
           "`benchmarks/results/`, else the published one (`benchmarks/latest.json`, the numbers the README quotes)."),
    ("parameters", '''results_file = None  # a throughput-*.json of `python -m benchmarks`, or None: newest run, else the published one
'''),
    ("code", '''import json
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
      f"N={machine['n']}, {machine['repeats']} repeats")'''),
    ("code", '''order = list(dict.fromkeys(rows["operation"]))
table = rows.pivot(index="operation", columns="engine", values="median").reindex(order)
for other in [e for e in table.columns if e != "sbqueue"]:
    table[f"sbqueue/{other}"] = table["sbqueue"] / table[other]
table.round(2)'''),
    ("code", "charts.benchmark(rows)"),
    ("md", "## Against the targets (same-run ratios to Node BullMQ)"),
    ("code", '''targets = {"add one by one": 1.0, "add_bulk (1000/batch)": 1.0, "process, c=10": 0.8, "process, c=100": 1.0}
for operation, target in targets.items():
    if operation in table.index and "node" in table.columns:
        ratio = table.loc[operation, "sbqueue"] / table.loc[operation, "node"]
        print(f"{operation:<24} sbqueue/node {ratio:.2f}x (target {target:.1f}x): {'met' if ratio >= target else 'NOT met'}")
assert (rows["median"] > 0).all()'''),
]

NOTEBOOKS.update({
    "notebooks/01-quickstart.ipynb": QUICKSTART,
    "notebooks/02-queue-analysis.ipynb": ANALYSIS,
    "notebooks/03-tuning-concurrency.ipynb": CONCURRENCY,
    "notebooks/04-tuning-persistence.ipynb": PERSISTENCE,
    "notebooks/05-rate-limits-and-priorities.ipynb": LIMITS,
    "notebooks/06-widgets.ipynb": WIDGETS,
    "notebooks/07-benchmarks.ipynb": BENCHMARKS,
})
