"""History benchmarks: the recorder's rate and memory, and History queries on a 10-million-event dataset.

    python -m benchmarks.bench_history              # 200,000 recorded events; a 10,000,000-event dataset
    python -m benchmarks.bench_history --quick      # 20,000 / 200,000: checks that it runs (no timing assertion)

1. **recorder**: a backlog of planted events (BullMQ-shaped: added, waiting, active, completed/failed) in one
   queue's events stream of a private embedded Redis; a fresh ``python -m sbqueue record``-equivalent process
   drains it; events/s and its peak RSS (``VmHWM``) are printed. Target: >= 20,000 events/s, <= 200 MB.
2. **dataset**: ``--events`` rows written straight to Parquet in the recorder's layout (10 queues x 24 hours, the
   same schema), then: one queue, one hour with :meth:`History.events` (target <= 1 s) and
   :meth:`History.percentiles` of one queue over the whole day (target <= 3 s). Each is the median of 3 runs.

Figures are printed side by side with the targets; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from sbqueue import embedded

RECORD = """
import resource, sys, time
from sbqueue.history import Recorder
rec = Recorder(sys.argv[1], sys.argv[2], sys.argv[3], flush_interval=5, compact_interval=0)
total = int(sys.argv[4])
t0 = time.perf_counter()
done = 0
while done < total:
    done += rec.run_once()
rec.flush()
dt = time.perf_counter() - t0
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
# VmHWM, not ru_maxrss: after fork+exec ru_maxrss starts at the parent's RSS (the planting process)
print(done / dt, int(hwm[0]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def bench_recorder(url: str, events: int, tmp: Path) -> tuple[float, float, int]:
    import redis

    from sbqueue.workbench.history_plant import plant_workload

    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"benchh{uuid.uuid4().hex[:6]}"
    per_minute = 100
    minutes = max(1, events // (4 * per_minute))
    start = int(time.time() * 1000) - (minutes + 60) * 60_000
    plant = plant_workload(client, prefix, "q", start_ms=start, minutes=minutes, jobs_per_minute=per_minute)
    res = subprocess.run([sys.executable, "-c", RECORD, url, prefix, str(tmp / "rec"), str(plant.events)],
                         capture_output=True, text=True, check=True)
    rate, rss_mb = (float(x) for x in res.stdout.split())
    client.close()
    return rate, rss_mb, plant.events


def write_dataset(root: Path, events: int, queues: int = 10, hours: int = 24) -> int:
    """``events`` rows (4 per job) in ``queues`` x ``hours`` files of the recorder's layout."""
    from sbqueue.inspection.history_store import FILE_SCHEMA, Store, open_fs

    store = Store(*open_fs(root))
    rng = np.random.default_rng(1)
    day0 = (int(time.time() * 1000) // 86_400_000 - 2) * 86_400_000
    per_file = events // (queues * hours) // 4 * 4
    names = np.array(["resize", "email", "report", "sync"])
    written = 0
    for q in range(queues):
        for hr in range(hours):
            jobs = per_file // 4
            base = day0 + hr * 3_600_000
            added = np.sort(rng.integers(base, base + 3_590_000, jobs))
            active = added + rng.exponential(50, jobs).astype(np.int64) + 1
            done = np.minimum(active + rng.lognormal(np.log(200), 0.4, jobs).astype(np.int64) + 1,
                              base + 3_599_999)
            ts = np.concatenate([added, added, active, done])
            kind = np.repeat(np.arange(4), jobs)
            order = np.lexsort((kind, ts))
            ts, kind = ts[order], kind[order]
            seq = np.zeros(len(ts), dtype=np.int64)
            same = np.concatenate([[False], ts[1:] == ts[:-1]])
            run = np.cumsum(~same)
            seq = np.arange(len(ts)) - np.searchsorted(run, run, side="left")  # position within equal-ms runs
            job_ids = (np.tile(np.arange(jobs), 4)[order] + hr * jobs).astype(str)
            ids = np.char.add(np.char.add(ts.astype(str), "-"), seq.astype(str))
            events_ = np.array(["added", "waiting", "active", "completed"])[kind]
            job_names = names[np.tile(np.arange(jobs), 4)[order] % 4]
            table = pa.table({
                "stream_id": ids, "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "id_seq": seq,
                "event": events_, "job_id": job_ids, "job_name": job_names,
            })
            table = pa.table({f.name: table[f.name] if f.name in table.column_names
                              else pa.nulls(len(ts), f.type) for f in FILE_SCHEMA}, schema=FILE_SCHEMA)
            first, last = ids[0].split("-"), ids[-1].split("-")
            hour = time.strftime("%Y-%m-%dT%H", time.gmtime(base / 1000))
            store.write_table(table, store.path_for(f"q{q}", hour, (int(first[0]), int(first[1])),
                                                    (int(last[0]), int(last[1]))))
            written += len(ts)
    return written


def timed(fn: object, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from sbqueue.history import History

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_history", description=__doc__.splitlines()[0])
    parser.add_argument("--recorded", type=int, default=None, help="events the recorder drains (default 200,000)")
    parser.add_argument("--events", type=int, default=None, help="dataset events (default 10,000,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 recorded / 200,000 in the dataset")
    args = parser.parse_args(argv)
    recorded = args.recorded or (20_000 if args.quick else 200_000)
    events = args.events or (200_000 if args.quick else 10_000_000)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sbqueue-bench-history-") as tmp_s:
        tmp = Path(tmp_s)
        home = tmp / "redis"
        info = embedded.ensure_server(str(home), config={"appendonly": "no", "save": ""})
        try:
            rate, rss, n = bench_recorder(info.url, recorded, tmp)
        finally:
            embedded.stop(str(home))
        rows.append((f"recorder: drain {n:,} events", f"{rate:,.0f} events/s", ">= 20,000 events/s"))
        rows.append(("recorder: peak RSS", f"{rss:,.0f} MB", "<= 200 MB"))
        t0 = time.perf_counter()
        written = write_dataset(tmp / "ds", events)
        print(f"wrote a {written:,}-event dataset in {time.perf_counter() - t0:.1f}s", flush=True)
        h = History(tmp / "ds")
        hours = sorted(h.store.hours("q0"))
        one_hour = (f"{hours[12]}:00Z", f"{hours[13]}:00Z")
        n_hour = len(h.events("q0", *one_hour))
        t_hour = timed(lambda: h.events("q0", *one_hour))
        rows.append((f"dataset {written:,} events: one queue, one hour ({n_hour:,} rows)", f"{t_hour:.2f} s",
                     "<= 1 s"))
        day = (f"{hours[0]}:00Z", None)
        pct = h.percentiles("q0", *day, freq="1h")
        t_day = timed(lambda: h.percentiles("q0", *day, freq="1h"))
        rows.append((f"percentiles of one queue over a day ({int(pct['count'].sum()):,} attempts)", f"{t_day:.2f} s",
                     "<= 3 s"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}} | {'measured':>18} | target")
    print(f"{'-' * width}-|-{'-' * 18}-|-{'-' * 20}")
    for label, value, target in rows:
        print(f"{label:<{width}} | {value:>18} | {target}")
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cores, Redis {info.version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
