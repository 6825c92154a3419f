"""The job-latency runbook: why jobs wait too long before they start — the cause, its evidence, the remedy.

:func:`diagnose_latency` measures a queue over a window (:func:`sbqueue.inspection.latency.measure`: arrival
vs service rate, wait-time percentiles now and earlier, worker saturation, run time by job name, who waits at
which priority, the rate limit and global concurrency, overdue delayed jobs, Redis stalls) and names the
first cause that holds, most specific first. A latency cause needs a human (more workers, a higher limit, a
queue of its own for a slow job): the outcome is ``ACTION NEEDED`` with the numbers to act on. The one safe
automatic fix is promoting delayed jobs that are overdue; ``OK`` when the waits are within ``max_wait_s``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from sbqueue.engine._sync.queue import Queue
from sbqueue.errors import InvalidOptionError, SbqueueError
from sbqueue.inspection import Inspector
from sbqueue.inspection.latency import LATENCY_SPIKE_S, SLOW_COMMAND_S, Measurements, measure
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of
from sbqueue.workbench.runbook.progress import WATCH_S, watch_progress
from sbqueue.workbench.runbook.scope import each_queue

RUNBOOK = "job-latency"
#: the causes in the order they are tried (the most specific first); the first that holds is named
CAUSES = ("paused", "no workers", "rate limit caps throughput", "global concurrency caps throughput",
          "priority starvation", "slow job name", "workers saturated", "delayed jobs promoted late",
          "Redis slow")  # fmt: skip
FINE, UNKNOWN = "wait times fine", "wait times high, cause not found"
#: the jobs finished in the window waited too long, but nothing waits too long now
PASSED = "wait times were high earlier in the window"
#: a share of samples with runnable jobs at or above this counts as "there is always a backlog"
BACKLOG_SHARE = 0.8
#: a slow-log entry this long (seconds) stalls every client enough to be a cause of waiting
STALL_S = 0.1


@dataclasses.dataclass
class LatencyFinding(Finding):
    """A :class:`~sbqueue.workbench.runbook.finding.Finding` that keeps what was measured (tables and charts)."""

    measurements: Measurements | None = None


def diagnose_latency(queue: str | Queue | None, connection: Any = None, prefix: str = "bull", *,
                     window_s: float = 300.0, max_wait_s: float = 10.0, sample_s: float = 2.0,
                     concurrency: int | None = None, history: Any = None,
                     watch_s: float = WATCH_S) -> Finding:  # fmt: skip
    """Jobs wait too long before they start: why? Measures the last ``window_s`` seconds (and samples the
    queue for ``sample_s``), compares the waits with ``max_wait_s`` and names the cause: paused, no workers, a
    rate limit or global concurrency that caps throughput, priority starvation, one slow job name taking the
    workers, too few workers (with how many to add), delayed jobs promoted late, Redis stalls.
    ``concurrency`` is the per-worker concurrency when known (else estimated from the peak active count);
    ``history`` (a path or :class:`sbqueue.History`) adds recorded completions. ``queue`` None: every queue of
    the prefix, sampled in turn (``sample_s`` each). The only automatic fix promotes overdue delayed jobs;
    verifying it watches ``watch_s`` s."""
    for value, option in ((window_s, "window_s"), (max_wait_s, "max_wait_s")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 30 * 86400:
            raise InvalidOptionError(f"{option} must be seconds in (0, 30 days], got {value!r}", option=option)
    if isinstance(sample_s, bool) or not isinstance(sample_s, (int, float)) or not 0 <= sample_s <= 60:
        raise InvalidOptionError(f"sample_s must be seconds in [0, 60], got {sample_s!r}", option="sample_s")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency < 1):  # fmt: skip
        raise InvalidOptionError(f"concurrency must be a positive int or None, got {concurrency!r}",
                                 option="concurrency")  # fmt: skip
    return each_queue(RUNBOOK, _latency, queue, connection, prefix, window_s=float(window_s),
                       max_wait_s=float(max_wait_s), sample_s=float(sample_s), concurrency=concurrency,
                       history=history, watch_s=watch_s)  # fmt: skip


def _workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def _rate(x: float) -> str:
    return f"{x:.3g}/s"


def _secs(x: float) -> str:
    return "none" if math.isnan(x) else f"{x:.3g} s"


def _history_of(insp: Inspector, history: Any) -> Any:
    if history is None or hasattr(history, "throughput"):
        return history
    if isinstance(history, (str, Path)):
        return insp.history(history)
    raise InvalidOptionError(f"history must be a path or a History, got {history!r}", option="history")


class _Facts:
    """The numbers the checks and remedies are written from."""

    def __init__(self, m: Measurements, max_wait_s: float, concurrency: int | None) -> None:
        self.m = m
        self.arrival, self.service = m.arrival_per_s, m.service_per_s
        self.p95 = m.wait_p95_s()
        self.oldest = m.oldest_waiting_s()
        self.slow = (not math.isnan(self.p95) and self.p95 > max_wait_s) or self.oldest > max_wait_s
        self.backlog = m.busy_share() >= BACKLOG_SHARE
        self.workers = m.workers
        self.estimated = concurrency is None
        peak = m.peak_active()
        self.per_worker = concurrency or (max(math.ceil(peak / self.workers), 1) if self.workers else 1)
        self.slots = self.workers * self.per_worker

    def capacity(self) -> str:
        """How many workers or how much concurrency keeps up with the arrivals (the issue's formula)."""
        slots = f"{_workers(self.workers)} x concurrency {self.per_worker}" + (" (estimated)" if self.estimated else "")
        if self.service <= 0 or self.slots == 0:
            return f"nothing finished in the window with {slots}: see why the jobs do not finish"
        if self.arrival <= self.service:
            drain = self.m.runnable / max(self.service - self.arrival, 1e-9)
            return (f"service {_rate(self.service)} keeps up with arrival {_rate(self.arrival)} ({slots}): the backlog "
                    f"of {self.m.runnable} drains in ~{drain:.0f} s; add workers to drain it faster")  # fmt: skip
        need = self.arrival / self.service * self.slots  # slots at today's per-slot speed
        add = math.floor(need / self.per_worker) + 1 - self.workers
        raise_to = math.floor(need / self.workers) + 1
        return (f"arrival {_rate(self.arrival)}, service {_rate(self.service)} with {slots} all busy: "
                f"add ≥ {_workers(add)} or raise concurrency to {raise_to}")  # fmt: skip


def _latency(q: Queue, *, window_s: float, max_wait_s: float, sample_s: float, concurrency: int | None,
             history: Any, watch_s: float) -> Finding:  # fmt: skip
    with Inspector(q.client, q.prefix, progress=False) as insp:  # its own pool: closed once measured
        m = measure(insp._ctx, q.name, window_s=window_s, sample_s=sample_s, history=_history_of(insp, history))
    f = _Facts(m, max_wait_s, concurrency)
    fired: dict[str, tuple[bool, str, dict[str, Any] | None]] = {}  # cause -> (holds, evidence, plan row)
    _check_queue(q, m, f, fired)
    _check_limits(m, f, fired)
    _check_starvation(m, f, max_wait_s, fired)
    _check_slow_name(m, f, fired)
    _check_saturation_and_late(q, m, f, max_wait_s, fired)
    waits = {row["window"]: row for row in m.wait_percentiles().to_dict("records")}
    now_jobs, earlier_jobs = int(waits["now"]["jobs"]), int(waits["earlier"]["jobs"])
    earlier_p95 = float(waits["earlier"]["p95_s"])
    checks = [("wait times high", f.slow,
               f"p95 wait {_secs(f.p95)} over the last {window_s:g} s ({now_jobs} jobs); "
               f"the window before: {_secs(earlier_p95)} ({earlier_jobs} jobs); oldest waiting "
               f"{_secs(f.oldest)}; max_wait_s {max_wait_s:g}"),
              ("arrival above service", f.arrival > 1.1 * f.service and m.backlog_growth_per_s > 0,
               f"arrival {_rate(f.arrival)}, service {_rate(f.service)} over {m.span_s:.3g} s ({m.rate_source}); "
               f"{m.runnable} runnable, backlog {m.backlog_growth_per_s:+.3g}/s")]  # fmt: skip
    checks += [(name, fired[name][0], fired[name][1]) for name in CAUSES]
    if m.metrics is not None:  # another view of the completions: per minute, kept for a week
        checks.append(("BullMQ metrics", False, f"metrics: {m.metrics['completed']} completed, {m.metrics['failed']} "
                       f"failed in the window's {m.metrics['minutes']} minutes"))  # fmt: skip
    if m.history is not None:
        checks.append(("recorded history", False, f"history: {m.history['completed']} completed, "
                       f"{m.history['failed']} failed in the window"))  # fmt: skip
    df = frame_of([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    cause = next((name for name in CAUSES if fired[name][0]), UNKNOWN) if f.slow else FINE
    if cause == UNKNOWN and f.oldest <= max_wait_s:
        cause = PASSED
    plan: list[dict[str, Any]] = []
    if cause == PASSED:
        plan.append({"action": "look back", "target": q.name, "jobs": 0, "automatic": False,
                     "detail": f"jobs finished in the last {window_s:g} s waited up to {_secs(f.p95)} (p95), but "
                     "nothing waits too long now: the incident has passed. Rerun with a shorter window_s to confirm, "
                     "or compare windows in the recorded history (History.compare)"})  # fmt: skip
    elif cause == UNKNOWN:
        plan.append({"action": "investigate", "target": q.name, "jobs": m.runnable, "automatic": False,
                     "detail": "waits are high but no cause held in the window: rerun with a longer window_s; check "
                     "the worker logs (a processor blocking its event loop holds every slot)"})  # fmt: skip
    elif cause != FINE:
        row = fired[cause][2]
        if row is not None:
            plan.append(row)
    overdue = list(m.overdue.loc[m.overdue["overdue_s"] > max_wait_s, "id"]) if len(m.overdue) else []
    if cause == "delayed jobs promoted late" and overdue:
        plan.insert(0, {"action": "promote overdue delayed jobs", "target": q.name, "jobs": len(overdue),
                        "automatic": True, "detail": f"move {len(overdue)} delayed jobs past their due time to "
                        f"wait (what a worker does when it gets to them): {', '.join(overdue[:5])}"})  # fmt: skip
    summary = _summary(cause, m, f, fired, max_wait_s)

    def apply() -> list[str]:
        if cause != "delayed jobs promoted late":
            return []
        done = 0
        for job_id in overdue:
            try:
                q.promote_job(job_id)
                done += 1
            except SbqueueError:
                continue  # promoted or removed meanwhile: not ours to touch
        return [f"promoted {done} of {len(overdue)} overdue delayed jobs"]

    def verify() -> tuple[bool, str, str | None]:
        left = set(overdue) & set(q.get_job_ids("delayed"))
        if left:
            return False, f"{len(left)} of the {len(overdue)} overdue jobs still delayed", None
        moving, seen, needed = watch_progress(q, watch_s)
        return moving, seen, needed

    return LatencyFinding(RUNBOOK, q.name, cause, summary, df, frame_of(plan, PLAN_COLUMNS), apply,
                          verify if overdue and cause == "delayed jobs promoted late" else None,
                          ok=cause == FINE, audit_to=(q.client, q.prefix), measurements=m)  # fmt: skip


def _summary(cause: str, m: Measurements, f: _Facts, fired: dict[str, Any], max_wait_s: float) -> str:
    if cause == FINE:
        return (f"jobs start within {max_wait_s:g} s: p95 wait {_secs(f.p95)}, oldest waiting {_secs(f.oldest)}, "
                f"arrival {_rate(f.arrival)}, service {_rate(f.service)}")  # fmt: skip
    head = f"jobs wait {_secs(max(f.oldest, 0 if math.isnan(f.p95) else f.p95))} (limit {max_wait_s:g} s)"
    if cause in (UNKNOWN, PASSED):
        return f"{head}; {'nothing waits too long now' if cause == PASSED else 'no cause held in the window'}"
    return f"{head}: {fired[cause][1]}"


def _check_queue(q: Queue, m: Measurements, f: _Facts, fired: dict[str, Any]) -> None:
    paused = "paused" in m.meta
    fired["paused"] = (paused, f"{'paused' if paused else 'not paused'}, {m.runnable} runnable",
                       {"action": "resume", "target": q.name, "jobs": m.runnable, "automatic": False,
                        "detail": "the queue is paused: resume it (queue.resume(), or the stuck-jobs runbook) "
                        "if it was not paused on purpose"})  # fmt: skip
    waiting = m.runnable > 0 or len(m.overdue) > 0
    fired["no workers"] = (waiting and f.workers == 0,
                           f"{_workers(f.workers)} connected; {m.runnable} runnable, {len(m.overdue)} delayed due",
                           {"action": "start a worker", "target": q.name, "jobs": m.runnable, "automatic": False,
                            "detail": f"sbqueue worker {q.name} MODULE:FUNCTION --prefix {q.prefix}"})  # fmt: skip


def _check_limits(m: Measurements, f: _Facts, fired: dict[str, Any]) -> None:
    limit_max, duration = _num(m.meta.get("max")), _num(m.meta.get("duration"))
    held = m.limiter_share()
    if not math.isnan(limit_max) and not math.isnan(duration) and duration > 0:
        limit_rate = limit_max * 1000 / duration
        needed = math.floor(f.arrival * duration / 1000) + 1
        evidence = (f"global rate limit {limit_max:.0f} per {duration:.0f} ms = {_rate(limit_rate)}; limiter used up "
                    f"in {held:.0%} of samples; service {_rate(f.service)}, arrival {_rate(f.arrival)}")  # fmt: skip
        detail = (f"raise it to ≥ {needed} per {duration:.0f} ms (queue.set_global_rate_limit({needed}, "
                  f"{duration:.0f})) if the downstream allows; else the backlog grows by "
                  f"{_rate(max(f.arrival - limit_rate, 0))}")  # fmt: skip
    else:
        evidence = f"no global rate limit; the limiter key held fetching back in {held:.0%} of samples"
        detail = ("a worker limiter or queue.rate_limit() holds the workers back: raise the worker's "
                  "limiter max, or lift a manual limit (queue.remove_rate_limit_key())")  # fmt: skip
    fired["rate limit caps throughput"] = (f.backlog and held >= 0.25, evidence,
                                           {"action": "raise the rate limit", "target": m.queue, "jobs": m.runnable,
                                            "automatic": False, "detail": detail})  # fmt: skip
    cap = _num(m.meta.get("concurrency"))
    reached = m.global_concurrency_share()
    holds = f.backlog and reached >= 0.5 and (f.estimated or f.slots > cap)
    needed_cap = math.floor(f.arrival / f.service * cap) + 1 if f.service > 0 and not math.isnan(cap) else None
    slots = (f"{_workers(f.workers)} connected, their concurrency unknown (the cap hides it; pass concurrency=)"
             if f.estimated and not math.isnan(cap) else f"{f.slots} worker slots connected")  # fmt: skip
    fired["global concurrency caps throughput"] = (
        holds, ("no global concurrency" if math.isnan(cap) else f"global concurrency {cap:.0f} reached in "
                f"{reached:.0%} of samples") + f"; {slots}",
        {"action": "raise global concurrency", "target": m.queue, "jobs": m.runnable, "automatic": False,
         "detail": f"raise it to {needed_cap or 'more'} (queue.set_global_concurrency({needed_cap or 'n'})) if the "
         f"downstream allows: at {_rate(f.service)} it serves fewer than the {_rate(f.arrival)} that arrive; the "
         "workers need that many slots too"},
    )  # fmt: skip


def _check_starvation(m: Measurements, f: _Facts, max_wait_s: float, fired: dict[str, Any]) -> None:
    b = m.backlog
    old = b[(b["state"] == "prioritized") & (b["age_s"] > max_wait_s)] if len(b) else b
    holds, evidence, row = False, "no prioritized job waits longer than max_wait_s", None
    if len(old):
        priority = int(old["priority"].max())  # the lowest priority that waits too long
        starving = old[old["priority"] == priority]
        since = float(starving["created_ms"].min())
        done = m.finished[m.finished["window"] == "now"] if len(m.finished) else m.finished
        served = done[(done["priority"] < priority) & (done["created_ms"] > since)] if len(done) else done
        holds = len(served) >= 5
        evidence = (f"{len(starving)} jobs at priority {priority} have waited up to {starving['age_s'].max():.3g} s "
                    f"while {len(served)} jobs of priority < {priority} created after them were served")  # fmt: skip
        row = {"action": "serve the starving priority", "target": f"{m.queue} priority {priority}",
               "jobs": len(starving), "automatic": False,
               "detail": f"higher priorities take every slot: add capacity so every priority is served "
               f"({f.capacity()}), or give priority-{priority} jobs their own queue and workers, or raise their "
               "priority (job.change_priority)"}  # fmt: skip
    fired["priority starvation"] = (holds, evidence, row)


def _check_slow_name(m: Measurements, f: _Facts, fired: dict[str, Any]) -> None:
    names = m.by_name()
    holds, evidence, row = False, f"{len(names)} job names finished in the window", None
    if len(names) >= 2:
        top = names.iloc[0]
        done = m.finished[(m.finished["window"] == "now") & (m.finished["name"].fillna("(none)") != top["name"])]
        others = float(done["run_s"].median()) if len(done) else math.nan
        holds = (top["share"] >= 0.5 and top["jobs"] >= 2 and not math.isnan(others)
                 and top["run_p50_s"] >= 5 * max(others, 0.001))  # fmt: skip
        evidence = (f"{top['name']!r} runs {top['run_p50_s']:.3g} s (p50) vs {others:.3g} s for the other names and "
                    f"takes {top['share']:.0%} of the workers' time ({int(top['jobs'])} jobs)")  # fmt: skip
        row = {"action": f"isolate {top['name']!r}", "target": m.queue, "jobs": int(top["jobs"]), "automatic": False,
               "detail": f"{evidence}: move it to its own queue with its own workers (or make it faster) so the "
               f"other jobs stop waiting behind it; meanwhile {f.capacity()}"}  # fmt: skip
    fired["slow job name"] = (holds, evidence, row)


def _check_saturation_and_late(q: Queue, m: Measurements, f: _Facts, max_wait_s: float, fired: dict[str, Any]) -> None:
    mean = m.mean_active()
    # busy slots: a fetch between two jobs empties a slot for a moment, so "all busy" allows a quarter of dips
    saturated = f.workers > 0 and f.backlog and f.slots > 0 and mean >= 0.75 * f.slots
    fired["workers saturated"] = (
        saturated, f"{mean:.3g} active of {f.slots} slots ({_workers(f.workers)} x concurrency {f.per_worker}"
        f"{', estimated from the peak active count' if f.estimated else ''}); jobs runnable in "
        f"{m.busy_share():.0%} of samples",
        {"action": "add workers", "target": q.name, "jobs": m.runnable, "automatic": False, "detail": f.capacity()},
    )  # fmt: skip
    late = m.overdue[m.overdue["overdue_s"] > max_wait_s] if len(m.overdue) else m.overdue
    lateness = m.finished.loc[m.finished["window"] == "now", "promoted_late_s"].astype(float).dropna()
    promoted_late = int((lateness > max_wait_s).sum())
    fired["delayed jobs promoted late"] = (
        len(late) > 0 or promoted_late > 0,
        f"{len(late)} delayed jobs overdue by more than {max_wait_s:g} s now"
        + (f" (up to {late['overdue_s'].max():.3g} s)" if len(late) else "")
        + f"; {promoted_late} of {len(lateness)} delayed jobs finished in the window were promoted late"
        + (f" (up to {lateness.max():.3g} s)" if promoted_late else ""),
        {"action": "see why workers do not promote", "target": q.name, "jobs": len(late), "automatic": False,
         "detail": "workers promote due delayed jobs when they fetch: check that they run and are not blocked"}
        if f.workers == 0 else None,
    )  # fmt: skip
    slow, spikes = m.slow_commands, m.latency_spikes
    longest = float(slow["duration_s"].max()) if len(slow) else 0.0
    mine = int(slow["command"].astype(str).str.contains(f" {q.prefix}:", regex=False).sum()) if len(slow) else 0
    worst = f"; longest {longest:.3g} s: {str(slow.iloc[slow['duration_s'].argmax()]['command'])[:60]}" \
        if len(slow) else ""  # fmt: skip
    # the slow log is server-wide and a busy host logs 10-20 ms scripts all day: only a stall that holds every
    # client for a noticeable time (>= STALL_S) is a cause; shorter entries stay evidence
    fired["Redis slow"] = (
        longest >= STALL_S or len(spikes) > 0,
        f"{len(slow)} slow-log entries ≥ {SLOW_COMMAND_S * 1000:.0f} ms in the window ({mine} on this prefix){worst}; "
        f"{len(spikes)} latency spikes ≥ {LATENCY_SPIKE_S * 1000:.0f} ms",
        {"action": "look at the slow commands", "target": "redis", "jobs": 0, "automatic": False,
         "detail": "Redis itself stalls: Inspector.slowlog() / latency(), the redis-health runbook; big keys, "
         "KEYS/SCAN-heavy clients, persistence forks on a busy host"},
    )  # fmt: skip


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
