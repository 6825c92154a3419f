"""``sbqueue worker QUEUE module:function``: run a worker process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from sbqueue.errors import InvalidOptionError


def load_processor(path: str) -> Any:
    """Import ``package.module:function``; a clear error if it is not there. Modules are found as ``python -m``
    finds them: in the current directory first (the ``sbqueue`` console script alone would not look there),
    then in the installed packages."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise InvalidOptionError(f"processor must look like package.module:function, got {path!r}", option="processor")
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidOptionError(f"cannot import {module_name!r}: {exc}", option="processor") from None
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise InvalidOptionError(f"{module_name!r} has no attribute {attr!r}", option="processor")
    if not callable(fn):
        raise InvalidOptionError(f"{path!r} is not callable", option="processor")
    return fn


def _connect_patiently(url: str | None, log: logging.Logger) -> Any:
    """Connect, waiting (with backoff) while Redis is unreachable — a worker started before its Redis (or
    during a restart) should wait, not crash-loop. Bad URLs and too-old servers still fail at once."""
    import signal
    import threading

    from sbqueue.connection import connect
    from sbqueue.errors import ConnectionFailedError

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    delay = 0.5
    try:
        while not stop.is_set():
            try:
                return connect(url)
            except ConnectionFailedError as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_worker_cli(args: argparse.Namespace) -> int:
    from sbqueue.connection import mask_url, url_of
    from sbqueue.engine.worker import Worker

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    log = logging.getLogger("sbqueue.engine.worker")
    processor = load_processor(args.processor)
    client = _connect_patiently(args.url, log)
    if client is None:
        return 0  # asked to stop before Redis came up
    processes = getattr(args, "processes", None)
    worker = Worker(
        args.queue, args.processor if processes else processor, client, args.prefix,
        concurrency=args.concurrency, name=args.name, lock_duration=args.lock_duration,
        stalled_interval=args.stalled_interval, max_stalled_count=args.max_stalled_count, processes=processes,
        max_jobs_per_child=getattr(args, "max_jobs_per_child", None),
        max_memory_per_child=getattr(args, "max_memory_per_child", None),
    )  # fmt: skip
    worker._close_timeout = args.shutdown_timeout
    worker.on("error", lambda exc: log.warning("worker error: %s", exc))
    mode = f"{processes} processes" if processes else f"concurrency {worker.concurrency}"
    log.info("worker %s on queue %r at %s (%s)", worker.name or worker.id[:8], args.queue,
             mask_url(url_of(client)), mode)  # fmt: skip
    worker.run()
    log.info("worker stopped: %d completed, %d failed", worker.processed, worker.failed_count)
    return 0
