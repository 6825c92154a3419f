"""The ``sbqueue`` command line: ``server``, ``worker``, ``demo`` (and more as they land)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__, embedded
from .errors import SbqueueError


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
    from .worker_cli import run_worker_cli

    return run_worker_cli(args)


def _exporter(args: argparse.Namespace) -> int:
    from .exporter_cli import run_exporter_cli

    return run_exporter_cli(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _report(args: argparse.Namespace) -> int:
    from . import reports

    params = {name: _literal(value) for name, value in args.param}
    html_path = args.html or (None if args.output else f"reports/{args.runbook.removesuffix('.ipynb')}.html")
    out = reports.run(args.runbook, params, output=args.output, html_path=html_path)
    print(f"executed notebook: {out}")
    if html_path:
        print(f"HTML report: {html_path}")
    print(reports.verdict_of(out))
    return 0


def _literal(text: str) -> object:
    """A -p value: Python literal when it parses (True, 3, None, "x"), else the string itself."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # e.g. "{[1]: 2}", "-" * 10**5 + "1"
        return text


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sbqueue", description="Run and troubleshoot BullMQ-layout Redis queues")
    parser.add_argument("--version", action="version", version=f"sbqueue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="manage the embedded Redis server")
    server.add_argument("action", choices=["start", "stop", "status", "url"])
    server.set_defaults(func=_server)

    worker = sub.add_parser("worker", help="run a worker: sbqueue worker QUEUE package.module:function")
    worker.add_argument("queue")
    worker.add_argument("processor", help="import path of the processor, module:function")
    worker.add_argument("--concurrency", type=int, default=10)
    worker.add_argument("--url", default=None, help="Redis URL (default: env or embedded server)")
    worker.add_argument("--prefix", default="bull")
    worker.add_argument("--name", default=None, help="worker name (shown as processedBy and in CLIENT LIST)")
    worker.add_argument("--lock-duration", type=int, default=30_000, help="ms")
    worker.add_argument("--stalled-interval", type=int, default=30_000, help="ms")
    worker.add_argument("--max-stalled-count", type=int, default=1)
    worker.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds to finish in-flight jobs")
    worker.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    worker.set_defaults(func=_worker)

    exporter = sub.add_parser("exporter", help="serve Prometheus metrics of the queues and their Redis")
    exporter.add_argument("--url", default=None, help="Redis URL (default: env or embedded server)")
    exporter.add_argument("--prefix", default="bull")
    exporter.add_argument("--queues", default="all", help="comma-separated queue names, or 'all' (found by SCAN)")
    exporter.add_argument("--port", type=int, default=9121)
    exporter.add_argument("--address", default="0.0.0.0", help="address to listen on")
    exporter.add_argument("--discovery-interval", type=float, default=60.0, help="seconds between queue scans")
    exporter.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    exporter.set_defaults(func=_exporter)

    report = sub.add_parser("report", help="run a runbook with papermill and render it as HTML")
    report.add_argument("runbook", help="stuck-jobs, stalled-jobs, failed-jobs, redis-memory, redis-health, ...")
    report.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    report.add_argument("--html", default=None, help="HTML output (default reports/<runbook>.html)")
    report.add_argument("--output", default=None, help="executed notebook output path")
    report.set_defaults(func=_report)

    demo = sub.add_parser("demo", help="the end-to-end demo on the embedded Redis")
    demo.add_argument("--url", default=None)
    demo.add_argument("--jobs", type=int, default=200)
    demo.add_argument("--reports", default="reports", help="directory for the HTML reports")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SbqueueError as exc:
        print(f"sbqueue: error: {exc}", file=sys.stderr)  # messages carry masked URLs only
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
