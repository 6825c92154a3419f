"""``sbqueue record``: run a :class:`~sbqueue.history.Recorder` until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any


def run_record_cli(args: argparse.Namespace) -> int:
    """Build the recorder from the parsed arguments and run it; SIGTERM stops it after a final flush."""
    from sbqueue.ops.recorder import Recorder

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queues = None if args.queues == "all" else [q for q in args.queues.split(",") if q]
    fields = [f for f in args.data_fields.split(",") if f]
    rec = Recorder(args.url, args.prefix, args.to, queues=queues, data_fields=fields, start=args.start,
                   flush_interval=args.flush_interval)

    def _stop(*_: Any) -> None:
        rec.stop()

    signal.signal(signal.SIGTERM, _stop)
    try:
        rec.run(duration=args.duration)
    except KeyboardInterrupt:
        rec.flush(force=True)
    return 0
