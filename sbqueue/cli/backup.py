"""``sbqueue backup`` and ``sbqueue restore``: thin wrappers over :mod:`sbqueue.engine.backup`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sbqueue.connection import connect
from sbqueue.engine import audit, backup
from sbqueue.engine.backup import RestoreReport
from sbqueue.errors import InvalidOptionError


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def run_backup_cli(args: argparse.Namespace) -> int:
    if args.rdb is not None:
        snap = backup.rdb_snapshot(args.rdb, connection=args.url, timeout=args.timeout)
        print(f"BGSAVE finished in {snap.seconds:.1f} s (server file: {snap.server_path or 'unknown'})")
        if snap.copied_to:
            print(f"copied the RDB file to {snap.copied_to}")
            return 0
        print(f"not copied: {snap.how_to_copy}")
        return 3
    if not args.queues and not args.all:
        raise InvalidOptionError(
            "name the queues to back up, or pass --all for every queue of --prefix", option="queues"
        )
    name = f"{args.prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.sbq.gz"
    output = Path(args.output) / name if args.output and Path(args.output).is_dir() else (args.output or name)
    summary = backup.export(output, connection=args.url, prefix=args.prefix, queues=args.queues or None,
                            events=args.events, pause=args.pause, pause_timeout=args.pause_timeout)  # fmt: skip
    for queue, states in summary.jobs.items():
        detail = ", ".join(f"{state} {n}" for state, n in states.items()) or "no jobs"
        active = summary.active_ids.get(queue) or []
        note = f" ({len(active)} active: restored as waiting)" if active else ""
        print(f"{args.prefix}:{queue}: {detail}{note}")
    skipped = ", ".join(f"{why} {n}" for why, n in summary.skipped.items())
    print(
        f"wrote {summary.path} ({_human(summary.bytes)}): {summary.total_jobs} jobs, {summary.keys} keys, "
        f"{summary.events} events in {summary.seconds:.1f} s; {summary.batches} reads, the slowest "
        f"{summary.max_batch_ms:.1f} ms" + (f"; left out: {skipped}" if skipped else "")
    )
    return 0


def _queue_map(specs: list[str]) -> dict[str, str] | None:
    if not specs:
        return None
    out: dict[str, str] = {}
    for spec in specs:
        old, _, new = spec.partition("=")
        out[old] = new or old
    return out


def _audit_restore(args: argparse.Namespace, report: RestoreReport) -> None:
    """One audit entry per restored queue, under the prefix it was restored to. A dry run writes nothing at all
    (not even the trail: the target prefix may not exist yet)."""
    if report.dry_run:
        return
    client = connect(args.url)
    try:
        with audit.acting("cli:restore"):
            for source, target in report.targets.items():
                prefix, _, queue = target.rpartition(":")
                audit.note(client, prefix, "restore", queue, count=sum(report.jobs.get(target, {}).values()),
                           params={"file": str(args.file), "from": source, "overwrite": bool(args.force)},
                           result="ok")  # fmt: skip
    finally:
        client.close()


def run_restore_cli(args: argparse.Namespace) -> int:
    report = backup.restore(args.file, connection=args.url, prefix=args.prefix, queues=_queue_map(args.queue),
                            overwrite=args.force, dry_run=args.dry_run, events=not args.no_events)  # fmt: skip
    verb = "would restore" if report.dry_run else "restored"
    for source, target in report.targets.items():
        states = report.jobs.get(target, {})
        detail = ", ".join(f"{state} {n}" for state, n in states.items()) or "no jobs"
        again = " (replacing the existing queue)" if target in report.overwritten else ""
        print(f"{verb} {source} -> {target}{again}: {detail}")
    print(f"{verb} {report.total_jobs} jobs, {report.keys} keys, {report.events} events")
    _audit_restore(args, report)
    if report.external_refs:
        print("note: restored jobs point to queues outside this backup (flow parents/children): "
              + ", ".join(report.external_refs))  # fmt: skip
    return 0
