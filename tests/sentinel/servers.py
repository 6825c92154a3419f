"""A private Redis Sentinel deployment for the Sentinel tests: 1 master, 1 replica, 3 sentinels.

Every process is a ``redis-server`` (sentinels: ``redis-server <conf> --sentinel``) on a free loopback port
with no persistence, started by :class:`SentinelGroup` and killed at the end. The binary is Debian's
``/usr/bin/redis-server`` when present, else the one sbqueue's embedded server uses. Nothing here touches
any other Redis server. Run it by hand::

    python -m tests.sentinel.servers        # starts the group, prints its URL, waits for Ctrl-C
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from sbqueue import embedded
from sbqueue.connection.embedded import free_port

SERVICE = "sbq-master"
SYSTEM_REDIS = "/usr/bin/redis-server"
DOWN_AFTER_MS = 1_000  # sentinels call a silent master down after this long
FAILOVER_TIMEOUT_MS = 5_000
START_TIMEOUT = 30.0


def binary() -> str:
    """Debian's redis-server if present, else the embedded server's binary."""
    if Path(SYSTEM_REDIS).exists():
        return SYSTEM_REDIS
    return embedded.bundled_binary() or embedded.find_binary()


def _wait(predicate: Callable[[], object], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"sentinel group: timed out waiting for {what} (last error: {last})")


class SentinelGroup:
    """Two data servers (one master, one replica) and three sentinels monitoring them as :data:`SERVICE`."""

    def __init__(self, directory: Path | None = None, *, password: str | None = None) -> None:
        self.binary = binary()
        self.directory = directory or Path(tempfile.mkdtemp(prefix="sbqueue-sentinel-"))
        self.password = password
        self.data_ports = [free_port(), free_port()]
        while self.data_ports[1] == self.data_ports[0]:
            self.data_ports[1] = free_port()
        self.sentinel_ports: list[int] = []
        while len(self.sentinel_ports) < 3:
            port = free_port()
            if port not in self.data_ports and port not in self.sentinel_ports:
                self.sentinel_ports.append(port)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # --- addresses --------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the service."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/0"

    def node(self, port: int, **kwargs: Any) -> redis.Redis:
        """A plain client on one data server (the caller closes it)."""
        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis(port=port, password=self.password, decode_responses=True, **kwargs)

    def sentinel(self, i: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[i], decode_responses=True, socket_timeout=5)

    def master_port(self) -> int:
        """The master's port as the sentinels say (a majority agreeing)."""
        votes: dict[int, int] = {}
        for i in range(3):
            with contextlib.suppress(redis.RedisError, OSError), contextlib.closing(self.sentinel(i)) as s:
                _host, port = s.sentinel_get_master_addr_by_name(SERVICE)
                votes[int(port)] = votes.get(int(port), 0) + 1
        best = max(votes, key=lambda p: votes[p]) if votes else 0
        if votes.get(best, 0) < 2:
            raise RuntimeError(f"sentinels do not agree on a master: {votes}")
        return best

    def replica_port(self) -> int:
        master = self.master_port()
        return next(p for p in self.data_ports if p != master)

    # --- processes --------------------------------------------------------------------------------------
    def _data_args(self, port: int, replica_of: int | None) -> list[str]:
        args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb",
                "--logfile", str(self.directory / f"redis-{port}.log"), "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0"]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        return args

    def _sentinel_conf(self, port: int, master: int) -> Path:
        conf = self.directory / f"sentinel-{port}.conf"
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {self.directory}",
                 f"logfile {self.directory / f'sentinel-{port}.log'}",
                 f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2",
                 f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                 f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                 f"sentinel parallel-syncs {SERVICE} 1"]  # fmt: skip
        if self.password:
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _spawn(self, port: int, args: list[str]) -> None:
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True)  # fmt: skip

    def start(self) -> SentinelGroup:
        master, replica = self.data_ports
        self._spawn(master, self._data_args(master, None))
        self._spawn(replica, self._data_args(replica, master))
        for port in self.data_ports:
            with contextlib.closing(self.node(port)) as c:
                _wait(c.ping, f"redis-server on {port}", START_TIMEOUT)
        self.wait_replicated(START_TIMEOUT)
        for port in self.sentinel_ports:
            self._spawn(port, [self.binary, str(self._sentinel_conf(port, master)), "--sentinel"])
        for i in range(3):
            with contextlib.closing(self.sentinel(i)) as s:
                # every sentinel knows the replica and the other two sentinels: a failover can be agreed on
                _wait(lambda s=s: int(s.sentinel_master(SERVICE).get("num-other-sentinels", 0)) == 2
                      and int(s.sentinel_master(SERVICE).get("num-slaves", 0)) >= 1,
                      f"sentinel {i} discovering the group", START_TIMEOUT)  # fmt: skip
        return self

    def wait_replicated(self, timeout: float = 15.0) -> None:
        """Until the current replica is in sync with the current master."""
        master = self.data_ports[0] if not self.sentinel_ports or not self.procs.get(self.sentinel_ports[0]) \
            else self.master_port()  # fmt: skip
        with contextlib.closing(self.node(master)) as c:
            _wait(lambda: any(v.get("state") == "online" for k, v in c.info("replication").items()
                              if k.startswith("slave") and isinstance(v, dict)),
                  f"the replica of {master} in sync", timeout)  # fmt: skip

    def wait_steady(self, timeout: float = 30.0, hold: float = 1.0) -> None:
        """Until the group is steady: the sentinels agree on the master, its replica is in sync and stays so for
        ``hold`` s, and every sentinel sees that replica as up (after a failover the sentinels may still be
        reconfiguring the old master, whose resync would make a run's first adds wait for a replica)."""
        deadline = time.monotonic() + timeout
        steady_since: float | None = None
        while time.monotonic() < deadline:
            try:
                master = self.master_port()
                with contextlib.closing(self.node(master)) as c:
                    info = c.info("replication")
                online = any(v.get("state") == "online" for k, v in info.items()
                             if k.startswith("slave") and isinstance(v, dict))  # fmt: skip
                seen = True
                for i in range(len(self.sentinel_ports)):
                    with contextlib.closing(self.sentinel(i)) as s:
                        replicas = s.sentinel_slaves(SERVICE)
                    seen = seen and any("s_down" not in str(r.get("flags", "")) for r in replicas)
            except (redis.RedisError, RuntimeError, OSError):
                online = seen = False
            if online and seen:
                steady_since = steady_since or time.monotonic()
                if time.monotonic() - steady_since >= hold:
                    return
            else:
                steady_since = None
            time.sleep(0.1)
        raise RuntimeError(f"the sentinel group did not become steady within {timeout:.0f} s")

    def failover(self, timeout: float = 20.0) -> tuple[int, int]:
        """``SENTINEL FAILOVER``: returns (old master, new master) once the sentinels agree on the new one."""
        old = self.master_port()
        with contextlib.closing(self.sentinel(0)) as s:
            _wait(lambda: s.sentinel_failover(SERVICE), "SENTINEL FAILOVER accepted", timeout)
        new = _wait(lambda: (p := self.master_port()) != old and p, "the new master", timeout)
        with contextlib.closing(self.node(new)) as c:
            _wait(lambda: c.info("replication").get("role") == "master", "the new master's role", timeout)
        return old, int(new)

    def kill_master(self, timeout: float = 30.0) -> tuple[int, int]:
        """kill -9 of the master; returns (old master, new master) once the sentinels promoted the replica."""
        old = self.master_port()
        proc = self.procs.pop(old)
        proc.kill()
        proc.wait(10)
        new = _wait(lambda: (p := self.master_port()) != old and p, "the replica's promotion", timeout)
        return old, int(new)

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Bring a killed data server back (as a replica of the current master, as the sentinels will want)."""
        self._spawn(port, self._data_args(port, self.master_port()))
        with contextlib.closing(self.node(port)) as c:
            _wait(c.ping, f"redis-server on {port}", timeout)
        self.wait_replicated(timeout)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - manual use
    group = SentinelGroup().start()
    print(group.url, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        group.close()
