"""Python side of the interop bridge: run ``driver.js`` (real Node BullMQ) and read back its JSON.

``run()`` executes one action and returns its result; ``spawn()`` starts a long-running action (a worker, a
QueueEvents reader) in the background and returns a :class:`NodeProcess` handle. The driver prints exactly one
JSON result line on stdout (long runs may print a ``{"ready": ...}`` line before it); everything else goes to
stderr, which is attached to the exception when an action fails. See ``README.md`` for the action contract.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import Any

#: ``tests/interop`` — the driver, package.json and node_modules live here
HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.js"
#: the exact BullMQ version the lockfile pins
BULLMQ_VERSION = "6.7.6"
#: request bodies larger than this go through stdin (one argv string is capped at 128 KiB on Linux)
MAX_ARGV_REQUEST = 64 * 1024

_MISSING = "Node.js/npm and tests/interop/node_modules are required: run make node"


class NodeDriverError(RuntimeError):
    """The driver exited non-zero or printed no result; carries the request, stdout and stderr."""


def node_available() -> None:
    """Raise ``RuntimeError`` (never skip) unless ``node`` and the pinned ``bullmq`` are installed."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(f"{_MISSING} (no `node` on PATH)")
    if shutil.which("npm") is None:
        raise RuntimeError(f"{_MISSING} (no `npm` on PATH)")
    pkg = HERE / "node_modules" / "bullmq" / "package.json"
    if not pkg.is_file() or not (HERE / "node_modules" / "ioredis" / "package.json").is_file():
        raise RuntimeError(f"{_MISSING} (no {pkg.parent.relative_to(HERE.parent.parent)})")
    version = json.loads(pkg.read_text(encoding="utf-8")).get("version")
    if version != BULLMQ_VERSION:
        raise RuntimeError(f"{_MISSING} (installed bullmq {version}, the lockfile pins {BULLMQ_VERSION})")


def _request(url: str, prefix: str, queue_name: str, action: str, params: dict[str, Any]) -> str:
    body = {"url": url, "prefix": prefix, "queue": queue_name, "action": action, **params}
    return json.dumps(body, separators=(",", ":"))


def _command(request: str) -> tuple[list[str], str | None]:
    """The argv for ``request`` and the stdin text to send (``None`` when the request fits in argv)."""
    node = shutil.which("node") or "node"
    if len(request) <= MAX_ARGV_REQUEST:
        return [node, str(DRIVER), request], None
    return [node, str(DRIVER), "-"], request


def _last_json_line(stdout: str) -> dict[str, Any] | None:
    """The last stdout line that parses as a JSON object (the driver's result), or ``None``."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _result(action: str, returncode: int | None, stdout: str, stderr: str) -> dict[str, Any]:
    """Turn a finished driver run into its result dict, or raise :class:`NodeDriverError`."""
    result = _last_json_line(stdout)
    if returncode == 0 and result is not None and "error" not in result:
        return result
    reason = result.get("error") if result else "no JSON result on stdout"
    raise NodeDriverError(
        f"node driver action {action!r} failed (exit {returncode}): {reason}\n"
        f"--- stdout ---\n{_tail(stdout)}\n--- stderr ---\n{_tail(stderr)}"
    )


def run(url: str, prefix: str, queue: str, action: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
    """Run one driver ``action`` against ``prefix:queue`` and return its JSON result.

    ``params`` are passed through verbatim (BullMQ's camelCase names, e.g. ``idleMs=500``). Raises
    :class:`NodeDriverError` (a ``RuntimeError``) with the driver's stderr when the action fails, and
    ``subprocess.TimeoutExpired`` when it does not finish within ``timeout`` seconds.
    """
    request = _request(url, prefix, queue, action, params)
    argv, stdin = _command(request)
    proc = subprocess.run(
        argv,
        cwd=HERE,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return _result(action, proc.returncode, proc.stdout, proc.stderr)


class NodeProcess:
    """A driver action running in the background (see :func:`spawn`).

    stdout and stderr are drained by threads so a large result never blocks the Node process. Use it as a
    context manager (or call :meth:`close`) so the process never outlives the test.
    """

    def __init__(self, action: str, argv: list[str], stdin: str | None) -> None:
        self.action = action
        self._proc = subprocess.Popen(
            argv,
            cwd=HERE,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._lines: Queue[str | None] = Queue()
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if stdin is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(stdin)
            self._proc.stdin.close()

    @property
    def pid(self) -> int:
        """The Node process id."""
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (``-9`` after :meth:`kill9`), or ``None`` while running."""
        return self._proc.poll()

    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        """Everything the driver wrote to stderr so far."""
        return "".join(self._stderr)

    def wait_ready(self, timeout: float = 20) -> dict[str, Any]:
        """Block until the driver prints its ``{"ready": true, ...}`` line and return it.

        For ``work`` with ``hang`` this means ``readyAfter`` jobs are active (their ids are in ``active``);
        otherwise the worker / QueueEvents reader is connected and running.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"node driver {self.action!r} not ready after {timeout} s\n{self.stderr}")
            try:
                line = self._lines.get(timeout=remaining)
            except Empty:
                continue
            if line is None:
                self._proc.wait(timeout=5)
                raise NodeDriverError(
                    f"node driver {self.action!r} exited ({self._proc.returncode}) before it was ready\n"
                    f"--- stdout ---\n{_tail(''.join(self._stdout))}\n--- stderr ---\n{_tail(self.stderr)}"
                )
            value = _last_json_line(line)
            if value is not None and value.get("ready"):
                return value

    def kill9(self) -> None:
        """SIGKILL the Node process (no cleanup on its side: locks and active jobs stay in Redis)."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(timeout=10)

    def result(self, timeout: float = 60) -> dict[str, Any]:
        """Wait for the action to finish and return its JSON result (raises like :func:`run`)."""
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise
        for thread in self._threads:
            thread.join(timeout=10)
        return _result(self.action, self._proc.returncode, "".join(self._stdout), self.stderr)

    def close(self) -> None:
        """Kill the process if it is still running and release its pipes."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spawn(url: str, prefix: str, queue: str, action: str, **params: Any) -> NodeProcess:
    """Start a driver ``action`` in the background (e.g. ``work`` with ``hang=True``, or ``events``)."""
    request = _request(url, prefix, queue, action, params)
    argv, stdin = _command(request)
    return NodeProcess(action, argv, stdin)


class NodeDriver:
    """``run``/``spawn`` bound to one Redis URL (what the ``node`` fixture returns)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, prefix: str, queue: str, action: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """:func:`run` on this driver's Redis."""
        return run(self.url, prefix, queue, action, timeout=timeout, **params)

    def spawn(self, prefix: str, queue: str, action: str, **params: Any) -> NodeProcess:
        """:func:`spawn` on this driver's Redis."""
        return spawn(self.url, prefix, queue, action, **params)
