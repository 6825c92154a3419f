"""The ``sbqueue`` command line: ``server``, ``worker``, ``exporter``, ``report``, ``runbooks``, ``lab``, ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sbqueue import connection
from sbqueue._version import __version__
from sbqueue.connection import embedded
from sbqueue.errors import SbqueueError


def _server(args: argparse.Namespace) -> int:
    if args.action == "start":
        info = embedded.ensure_server()
        print(f"embedded Redis {info.version} running (pid {info.pid}) at {info.url}  [data: {info.home}]")
    elif args.action == "stop":
        print("stopped" if embedded.stop() else "no embedded server was running")
    elif args.action == "status":
        found = embedded.status()
        if found is None:
            print("not running")
            return 3
        print(json.dumps({**found.__dict__, "url": found.url}, indent=2))
    else:  # url
        print(embedded.ensure_server().url)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from sbqueue.cli.worker import run_worker_cli

    return run_worker_cli(args)


def _exporter(args: argparse.Namespace) -> int:
    from sbqueue.cli.exporter import run_exporter_cli

    return run_exporter_cli(args)


def _demo(args: argparse.Namespace) -> int:
    from sbqueue.workbench.demo import run_demo

    return run_demo(args)


def _report(args: argparse.Namespace) -> int:
    from sbqueue.workbench import reports

    asked = getattr(args, "help", False)
    args.runbook = getattr(args, "runbook", None)
    if not asked and not args.runbook:
        args.report_parser.error("give a runbook: an installed name (sbqueue runbooks list) or a path to a .ipynb")
    if asked:
        args.report_parser.print_help()
        if args.runbook:
            print()
            print(reports.describe_parameters(args.runbook))
        return 0
    params = reports.parse_parameters(args.runbook, args.param or [])  # typed and checked before a kernel starts
    stem = Path(args.runbook).stem if args.runbook.endswith(".ipynb") else Path(args.runbook).name
    stamped_nb, stamped_html = reports.timestamped(stem, args.reports)
    output = args.output or stamped_nb
    html_path = args.html or (None if args.output else stamped_html)
    try:
        out = reports.run(args.runbook, params, output=output, html_path=html_path)
    except SbqueueError:
        if html_path and not args.html and Path(html_path).exists():  # kept beside, never over, the last good one
            failed = Path(html_path).with_name(Path(html_path).stem + "-failed.html")
            Path(html_path).rename(failed)
            if Path(output).exists():
                Path(output).rename(failed.with_suffix(".ipynb"))
            reports.update_index(args.reports)
            print(f"failed run's report: {failed}", file=sys.stderr)
        raise
    print(f"executed notebook: {out}")
    if html_path:
        print(f"HTML report: {html_path}")
        if not args.html:
            print(f"index: {reports.update_index(args.reports)}")
    print(reports.verdict_of(out))
    return 0


def _runbooks(args: argparse.Namespace) -> int:
    from sbqueue.workbench import reports

    if args.action == "list":
        found = reports.installed_runbooks()
        width = max((len(n) for n in found), default=0)
        for name, path in found.items():
            print(f"{name:<{width}}  {reports.title_of(path)}")
        print(f"installed in {reports.runbook_dir()}; run one: sbqueue report NAME -p queue Q")
    else:  # copy
        for path in reports.copy_runbooks(args.directory, args.names or None, overwrite=args.force):
            print(path)
        print(f"run an edited copy: sbqueue report {Path(args.directory) / 'NAME.ipynb'} -p queue Q")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from sbqueue.cli.lab import run_lab_cli

    return run_lab_cli(args)


def _backup(args: argparse.Namespace) -> int:
    from sbqueue.cli.backup import run_backup_cli

    return run_backup_cli(args)


def _restore(args: argparse.Namespace) -> int:
    from sbqueue.cli.backup import run_restore_cli

    return run_restore_cli(args)


def _record(args: argparse.Namespace) -> int:
    from sbqueue.cli.record import run_record_cli

    return run_record_cli(args)


URL_HELP = "Redis URL; None: SBQUEUE_REDIS_URL, REDIS_URL or the embedded server"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _SaysItsDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: …)`` except where the default is None: that help says what None means itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sbqueue", description="Run and troubleshoot BullMQ-layout Redis queues",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"sbqueue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of the commands below (each has --help)")  # fmt: skip
    defaults = argparse.ArgumentDefaultsHelpFormatter

    server = sub.add_parser("server", help="manage the embedded Redis server", formatter_class=defaults,
                            description="The embedded Redis that sbqueue starts when no URL is configured "
                            "(SBQUEUE_REDIS_URL / REDIS_URL / --url). It keeps running between commands.")  # fmt: skip
    server.add_argument("action", choices=["start", "stop", "status", "url"],
                        help="start: start it (or reuse the running one) and print its URL and data folder; "
                        "stop: stop it; status: print its details as JSON (exit 3 if not running); "
                        "url: print its URL, starting it if needed")  # fmt: skip
    server.set_defaults(func=_server)

    worker = sub.add_parser("worker", help="run a worker: sbqueue worker QUEUE package.module:function",
                            formatter_class=_SaysItsDefaults)  # fmt: skip
    worker.add_argument("queue", help="the queue to process")
    worker.add_argument("processor", help="import path of the processor, module:function")
    worker.add_argument("--concurrency", type=int, default=None,
                        help="jobs processed at once (default: 10) — with --processes N: N (default) or more, the "
                             "extra jobs fetched and ready for the next free child")  # fmt: skip
    worker.add_argument("--processes", type=int, default=None,
                        help="run jobs in N child processes (CPU-bound or crash-prone processors) instead of threads")
    worker.add_argument("--max-jobs-per-child", type=int, default=None,
                        help="with --processes: replace a child process after N jobs (leaks)")
    worker.add_argument("--max-memory-per-child", type=int, default=None,
                        help="with --processes: cap each child's address space at N MB (RLIMIT_AS)")
    worker.add_argument("--url", default=None, help=URL_HELP)
    worker.add_argument("--prefix", default="bull", help="key prefix of the queue")
    worker.add_argument("--name", default=None, help="worker name (shown as processedBy and in CLIENT LIST)")
    worker.add_argument("--lock-duration", type=int, default=30_000, help="ms")
    worker.add_argument("--stalled-interval", type=int, default=30_000, help="ms")
    worker.add_argument("--max-stalled-count", type=int, default=1, help="stalls before a job is failed")
    worker.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds to finish in-flight jobs")
    worker.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="log level")
    worker.set_defaults(func=_worker)

    exporter = sub.add_parser("exporter", help="serve Prometheus metrics of the queues and their Redis",
                              formatter_class=defaults)  # fmt: skip
    exporter.add_argument("--url", default=None, help=URL_HELP)
    exporter.add_argument("--prefix", default="bull", help="key prefix of the queues")
    exporter.add_argument("--queues", default="all", help="comma-separated queue names, or 'all' (found by SCAN)")
    exporter.add_argument("--port", type=int, default=9121, help="HTTP port of /metrics")
    exporter.add_argument("--address", default="0.0.0.0", help="address to listen on")
    exporter.add_argument("--discovery-interval", type=float, default=60.0, help="seconds between queue scans")
    exporter.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="log level")
    exporter.set_defaults(func=_exporter)

    report = sub.add_parser(
        "report", help="run a runbook with papermill and render it as HTML", add_help=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run a runbook (sbqueue runbooks list) against Redis and write a timestamped HTML report; "
        "reports/index.html links the newest of each. `sbqueue report RUNBOOK --help` lists its parameters.",
    )  # fmt: skip
    report.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS,
                        help="show this help (and the runbook's parameters)")  # fmt: skip
    report.add_argument("runbook", nargs="?", default=argparse.SUPPRESS,
                        help="an installed runbook's name or a path to a .ipynb")  # fmt: skip
    report.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="a runbook parameter, typed by the runbook's parameters cell (repeatable)")  # fmt: skip
    report.add_argument("--reports", default="reports", help="directory for timestamped reports and index.html")
    report.add_argument("--html", default=None, help="HTML output path; None: REPORTS/<runbook>-<time>.html")
    report.add_argument("--output", default=None, help="executed notebook path; None: next to the HTML")
    report.set_defaults(func=_report, report_parser=report)

    runbooks = sub.add_parser("runbooks", help="list the installed runbooks, or copy them for editing",
                              formatter_class=defaults)  # fmt: skip
    runbooks_sub = runbooks.add_subparsers(dest="action", required=True, metavar="ACTION",
                                           help="list: the installed runbooks; copy: editable copies")  # fmt: skip
    runbooks_sub.add_parser("list", help="name and title of every installed runbook, and where they are")
    copy = runbooks_sub.add_parser("copy", help="editable copies in DIRECTORY (run them: sbqueue report PATH)",
                                   formatter_class=defaults)  # fmt: skip
    copy.add_argument("directory", help="where to write the copies")
    copy.add_argument("names", nargs="*", help="runbooks to copy (default: all)")
    copy.add_argument("--force", action="store_true", help="overwrite existing files")
    runbooks.set_defaults(func=_runbooks)

    lab = sub.add_parser("lab", help="JupyterLab on copies of the runbooks and notebooks, connected to Redis",
                         formatter_class=defaults,
                         description="Copies the runbooks (and, from a clone, the tutorial notebooks) into DIR, "
                         "keeping copies already there, and opens JupyterLab on it. Kernels get the Redis URL as "
                         "SBQUEUE_REDIS_URL, so the notebooks' redis_url = None connects to it.")  # fmt: skip
    lab.add_argument("--dir", default="sbqueue-lab", help="working folder for the copies (created if missing)")
    lab.add_argument("--url", default=None, help=URL_HELP)
    lab.add_argument("--prefix", default=None,
                     help="key prefix written into the runbook copies' parameters cell; None: leave them as they "
                     "are (new copies say 'bull')")  # fmt: skip
    lab.add_argument("--port", type=int, default=8888, help="JupyterLab port (the next free one if taken)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser (print the URL only)")
    lab.set_defaults(func=_lab)

    backup = sub.add_parser("backup", help="back up queues into one portable file (or --rdb: a server snapshot)",
                            formatter_class=defaults)
    backup.add_argument("queues", nargs="*", help="queue names (or --all)")
    backup.add_argument("--all", action="store_true", help="every queue of --prefix")
    backup.add_argument("--url", default=None, help=URL_HELP)
    backup.add_argument("--prefix", default="bull")
    backup.add_argument("-o", "--output", default=None,
                        help="file (or directory) to write; default name <prefix>-<UTC time>.sbq.gz")  # fmt: skip
    backup.add_argument("--events", action="store_true", help="include the events streams")
    backup.add_argument("--pause", action="store_true", help="pause each queue while it is read (exact snapshot)")
    backup.add_argument("--pause-timeout", type=float, default=30.0, help="seconds to wait for active jobs")
    backup.add_argument("--rdb", default=None, metavar="DEST", help="BGSAVE and copy the RDB file to DEST instead")
    backup.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for BGSAVE (--rdb)")
    backup.set_defaults(func=_backup)

    restore = sub.add_parser("restore", help="restore queues from a backup file", formatter_class=defaults)
    restore.add_argument("file")
    restore.add_argument("--url", default=None, help=URL_HELP)
    restore.add_argument("--prefix", default=None, help="target prefix (default: the backup's)")
    restore.add_argument("--queue", action="append", default=[], metavar="NAME[=NEW]",
                         help="restore only this queue (optionally under a new name); repeatable")  # fmt: skip
    restore.add_argument("--force", action="store_true", help="delete existing target queues first")
    restore.add_argument("--dry-run", action="store_true", help="validate and show what would be written")
    restore.add_argument("--no-events", action="store_true", help="skip the events streams in the file")
    restore.set_defaults(func=_restore)

    record = sub.add_parser("record", help="record the queues' events streams into a Parquet dataset (history)",
                            formatter_class=defaults)
    record.add_argument("--to", required=True, help="dataset folder or fsspec URL (s3://bucket/history)")
    record.add_argument("--url", default=None, help=URL_HELP)
    record.add_argument("--prefix", default="bull")
    record.add_argument("--queues", default="all", help="comma-separated queue names, or 'all' (found by SCAN)")
    record.add_argument("--data-fields", default="", help="comma-separated job data paths kept (a.b,c)")
    record.add_argument("--start", default="begin", choices=["begin", "now"], help="where new queues start")
    record.add_argument("--flush-interval", type=float, default=10.0, help="seconds between file writes")
    record.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    record.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    record.set_defaults(func=_record)

    demo = sub.add_parser("demo", help="the end-to-end demo on the embedded Redis", formatter_class=defaults,
                          description="Plants every incident on its own queue, runs the matching runbook on each "
                          "and writes HTML reports with an index. The embedded server keeps running afterwards "
                          "(stop it: sbqueue server stop).")  # fmt: skip
    demo.add_argument("--url", default=None, help=URL_HELP)
    demo.add_argument("--jobs", type=int, default=200, help="jobs in the engine tour")
    demo.add_argument("--reports", default="reports", help="directory for the HTML reports")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    connection.set_url_hint("pass --url URL")  # errors name the CLI flag, not the API argument
    try:
        return int(args.func(args) or 0)
    except SbqueueError as exc:
        print(f"sbqueue: error: {exc}", file=sys.stderr)  # messages carry masked URLs only
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
