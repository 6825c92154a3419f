"""Soak: N jobs through one worker process, watching its memory, open files and Redis connections.

    python -m benchmarks.soak --jobs 1000000                  # the full run, threads (make soak)
    python -m benchmarks.soak --jobs 1000000 --processes 2    # the same through a pool of 2 child processes
    python -m benchmarks.soak --jobs 20000                    # CI's short run

The worker is ``sbqueue worker`` (threads, ``--concurrency``) in its own process; this process adds the jobs
in batches, keeping the backlog bounded, and samples the worker every ``--samples``-th of the run: RSS
(``/proc/<pid>/status`` VmRSS), open file descriptors (``/proc/<pid>/fd``) and the worker's Redis
connections (its sockets: it talks to nothing else). Jobs are removed on completion, so Redis
itself stays flat. With ``--processes N`` the worker runs its jobs in N child processes: each sample also
holds the children's count and their summed RSS (``children_rss_kib``), and the children must neither grow
nor be replaced (no child dies in a soak). Verdict (exit status 1 when it fails): RSS growth after the
warm-up (the first ``--warmup`` share of the jobs) at most 10 % — the worker's, and the children's sum —,
open files and connections constant after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import sbqueue
from sbqueue.connection import url_of

QUEUE = "soak"
#: the published run (``--publish``): the README's soak figures and notebook 07's chart
PUBLISHED = Path(__file__).resolve().parent / "soak-latest.json"
PUBLISHED_PROCESSES = Path(__file__).resolve().parent / "soak-processes-latest.json"
RSS_GROWTH_LIMIT = 0.10


def process(job: Any) -> int:
    """The soak processor: a tiny amount of work and a small result."""
    return len(str(job.data))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _sockets(pid: int) -> int:
    """The worker's open sockets: its Redis connections (it talks to nothing else)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def child_pids(pid: int, min_age_s: float = 0.0) -> list[int]:
    """The pids of ``pid``'s child processes (a worker's process pool) running for at least ``min_age_s`` s,
    from /proc (also used by tests/chaos/test_pool_chaos.py)."""
    kids = []
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
            age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
            if int(fields[1]) == pid and age >= min_age_s:
                kids.append(int(entry))
    return sorted(kids)


def _sample(pid: int, processes: int) -> dict[str, Any]:
    row: dict[str, Any] = {"rss_kib": _rss_kib(pid), "fds": _fds(pid), "connections": _sockets(pid)}
    if processes:
        kids = child_pids(pid)
        row["children"] = len(kids)
        row["children_rss_kib"] = sum(_rss_kib(k) for k in kids)
        row["children_pids"] = kids
    return row


def run(
    jobs: int, concurrency: int, samples: int, warmup: float, url: str | None, processes: int = 0
) -> dict[str, Any]:
    client = sbqueue.connect(url)
    url = url_of(client)
    prefix = f"soak{uuid.uuid4().hex[:8]}"
    queue = sbqueue.Queue(QUEUE, client, prefix=prefix, default_job_options={"remove_on_complete": True})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    worker = subprocess.Popen([sys.executable, "-m", "sbqueue", "worker", QUEUE, "benchmarks.soak:process",
                               "--url", url, "--prefix", prefix, "--concurrency", str(concurrency),
                               "--log-level", "WARNING"]
                              + (["--processes", str(processes)] if processes else []), env=env)  # fmt: skip
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        added, batch, step = 0, 1000, max(jobs // samples, 1)
        next_sample = step
        while True:
            done = added - sum(queue.get_job_counts("waiting", "active").values())
            if done >= next_sample or done >= jobs:
                rows.append({"jobs": done, "seconds": round(time.monotonic() - started, 1),
                             **_sample(worker.pid, processes)})  # fmt: skip
                next_sample += step
                if done >= jobs:
                    break
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            if added < jobs and added - done < 5 * batch:  # a bounded backlog
                n = min(batch, jobs - added)
                queue.add_bulk([{"name": "soak", "data": {"i": added + i}} for i in range(n)])
                added += n
            else:
                time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(60)
        queue.obliterate(force=True)
        queue.close()
        client.close()
    after = [r for r in rows if r["jobs"] >= warmup * jobs] or rows[-1:]
    base = after[0]["rss_kib"]
    growth = (rows[-1]["rss_kib"] - base) / base if base else 0.0
    verdict = {
        "jobs": jobs, "seconds": rows[-1]["seconds"], "jobs_per_s": round(jobs / max(rows[-1]["seconds"], 1e-3)),
        "rss_after_warmup_kib": base, "rss_end_kib": rows[-1]["rss_kib"], "rss_growth": round(growth, 4),
        "fds": sorted({r["fds"] for r in after}), "connections": sorted({r["connections"] for r in after}),
    }  # fmt: skip
    verdict["ok"] = (growth <= RSS_GROWTH_LIMIT and len(verdict["fds"]) == 1 and len(verdict["connections"]) == 1)
    if processes:
        kids_base = after[0]["children_rss_kib"]
        kids_growth = (rows[-1]["children_rss_kib"] - kids_base) / kids_base if kids_base else 0.0
        pid_sets = {tuple(r.pop("children_pids")) for r in rows if r["jobs"] >= warmup * jobs} or {()}
        for r in rows:
            r.pop("children_pids", None)
        verdict.update({"processes": processes, "children_rss_after_warmup_kib": kids_base,
                        "children_rss_end_kib": rows[-1]["children_rss_kib"],
                        "children_rss_growth": round(kids_growth, 4),
                        "children": sorted({r["children"] for r in after}),
                        "children_replaced": len(pid_sets) - 1})  # fmt: skip
        verdict["ok"] = (verdict["ok"] and kids_growth <= RSS_GROWTH_LIMIT and verdict["children"] == [processes]
                         and verdict["children_replaced"] == 0)  # fmt: skip
    return {"rows": rows, "verdict": verdict}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--samples", type=int, default=20, help="samples over the run")
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the jobs that is warm-up")
    parser.add_argument("--url", default=None, help="Redis URL (default: env or the embedded server)")
    parser.add_argument("--processes", type=int, default=0, help="run the jobs in a pool of N child processes")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--publish", action="store_true",
                        help=f"also write {PUBLISHED} (committed; the README and notebook 07 quote it)")
    args = parser.parse_args(argv)
    result = run(args.jobs, args.concurrency, args.samples, args.warmup, args.url, args.processes)
    kids = " children  children RSS KiB" if args.processes else ""
    print(f"{'jobs':>10} {'seconds':>8} {'RSS KiB':>10} {'fds':>5} {'conns':>5}{kids}")
    for r in result["rows"]:
        more = f" {r['children']:>9} {r['children_rss_kib']:>17}" if args.processes else ""
        print(f"{r['jobs']:>10} {r['seconds']:>8} {r['rss_kib']:>10} {r['fds']:>5} {r['connections']:>5}{more}")
    v = result["verdict"]
    print(f"SOAK jobs={v['jobs']} seconds={v['seconds']} jobs/s={v['jobs_per_s']} "
          f"rss_after_warmup={v['rss_after_warmup_kib']}KiB rss_end={v['rss_end_kib']}KiB "
          f"growth={v['rss_growth']:.1%} fds={v['fds']} connections={v['connections']} "
          + (f"children={v['children']} children_rss_after_warmup={v['children_rss_after_warmup_kib']}KiB "
             f"children_rss_end={v['children_rss_end_kib']}KiB children_growth={v['children_rss_growth']:.1%} "
             f"children_replaced={v['children_replaced']} " if args.processes else "")
          + f"{'OK' if v['ok'] else 'FAIL'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.publish:
        result["machine"] = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
                             "concurrency": args.concurrency, "processes": args.processes,
                             "python": sys.version.split()[0]}  # fmt: skip
        (PUBLISHED_PROCESSES if args.processes else PUBLISHED).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if v["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
