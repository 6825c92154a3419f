"""``sbqueue exporter``: serve :mod:`sbqueue.ops.exporter` metrics over HTTP until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from sbqueue.connection import mask_url, resolve_url
from sbqueue.errors import ConfigurationError, InvalidOptionError

log = logging.getLogger("sbqueue.ops.exporter")


def parse_queues(value: str) -> list[str] | None:
    """``"all"`` -> None (discover them); ``"a,b"`` -> ``["a", "b"]``."""
    if value.strip() == "all":
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise InvalidOptionError(f"--queues must be 'all' or a comma-separated list of names, got {value!r}",
                                 option="queues")  # fmt: skip
    return names


def serve(collector: Any, port: int, address: str = "0.0.0.0", extra: tuple[Any, ...] = ()
          ) -> tuple[Any, threading.Thread]:
    """Serve ``collector`` (and the exporter's own process metrics) on ``http://address:port/metrics``.

    Returns prometheus_client's ``(server, thread)``; stop with ``server.shutdown(); server.server_close()``.
    ``port=0`` picks a free port (``server.server_port``).
    """
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry()
    registry.register(collector)
    for more in extra:
        registry.register(more)
    ProcessCollector(registry=registry)
    try:
        return start_http_server(port, addr=address, registry=registry)
    except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0..65535
        raise ConfigurationError(f"cannot listen on {address}:{port}: {exc}") from None


def warn_missing_queues(client: Any, prefix: str, queues: list[str]) -> list[str]:
    """Log a warning naming each of ``queues`` that does not exist under ``prefix`` (it is exported as zeros
    until it appears), with the queues and prefixes that do exist; return the missing names."""
    from sbqueue.workbench import runbook

    try:
        existing = runbook.queue_names(client, prefix)
        missing = [q for q in queues if q not in existing]
        others = runbook.prefixes(client) if missing else []
    except Exception as exc:  # Redis may be down at start (the exporter then reports redis_up 0)
        log.warning("could not check that the queues exist: %s", exc)
        return []
    if missing:
        log.warning("queue(s) %s do not exist under prefix %r: exported as zeros until they appear; queues under "
                    "%r: %s; prefixes on the server: %s", ", ".join(missing), prefix, prefix,
                    ", ".join(existing) or "none", ", ".join(others) or "none")  # fmt: skip
    return missing


def run_exporter_cli(args: argparse.Namespace) -> int:
    try:
        from sbqueue.ops.exporter import QueueCollector, connect_exporter
    except ImportError as exc:  # prometheus_client is an optional dependency
        raise ConfigurationError(f"the exporter needs prometheus-client ({exc}): pip install 'sbqueue[ops]'") from None

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    queues = parse_queues(args.queues)
    url, _source = resolve_url(args.url)
    if url is None:
        from sbqueue.connection import embedded

        url = embedded.ensure_server().url
    client = connect_exporter(url)  # not pinged: an exporter starts (and reports redis_up 0) before its Redis
    collector = QueueCollector(client, args.prefix, queues, discovery_interval=args.discovery_interval)
    extra: tuple[Any, ...] = ()
    if os.environ.get("SBQUEUE_HISTORY"):  # the recorder's dataset: serve its lag and gaps too
        from sbqueue.ops.recorder_metrics import RecorderCollector

        extra = (RecorderCollector(os.environ["SBQUEUE_HISTORY"]),)
    if queues:
        warn_missing_queues(client, args.prefix, queues)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server, _thread = serve(collector, args.port, args.address, extra)
        log.info("serving http://%s:%d/metrics for Redis at %s, prefix %r, queues: %s", args.address,
                 server.server_port, mask_url(url), args.prefix, ", ".join(queues) if queues else "all")  # fmt: skip
        while not stop.wait(1.0):
            pass
        log.info("signal received: stopping")
        server.shutdown()
        server.server_close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.close()
    return 0
