"""A private 3-master Redis Cluster (no replicas) on free loopback ports, for the cluster tests.

Started once per session with the system ``redis-server`` and ``redis-cli --cluster create``, torn down
at the end (processes killed, data directory removed). Missing binaries FAIL the tests: cluster support
is part of the suite, not an optional extra. Never touches any other Redis server.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

MASTERS = 3
START_TIMEOUT = 30.0


@dataclasses.dataclass
class Cluster:
    """A running test cluster: ``ports`` of its masters; ``url`` reaches the first one."""

    ports: list[int]
    directory: Path
    processes: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node_url(self, i: int) -> str:
        return f"redis://127.0.0.1:{self.ports[i]}"

    def node(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client on one node; the caller closes it."""
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        pytest.fail(f"{name} is required for the Redis Cluster tests (apt-get install redis-server redis-tools)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """``n`` ports free on loopback whose cluster bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536 and port not in ports and _port_free(port) and _port_free(port + 10000):
            ports.append(port)
    return ports


def _wait(predicate: Callable[[], object], what: str, deadline: float) -> None:
    last: object = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    pytest.fail(f"test cluster: timed out waiting for {what} (last error: {last})")


def _start(cluster: Cluster, server: str, cli: str) -> None:
    directory = cluster.directory
    ports = cluster.ports = _free_ports(MASTERS)
    for port in ports:
        cmd = [server, "--cluster-enabled", "yes", "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
               "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "no",
               "--save", "", "--cluster-node-timeout", "5000",
               "--logfile", str(directory / f"redis-{port}.log")]  # fmt: skip
        cluster.processes.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + START_TIMEOUT
    for port in ports:
        client = cluster.node(port)
        try:
            _wait(client.ping, f"redis-server on port {port}", deadline)
        finally:
            client.close()
    create = subprocess.run(
        [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True, text=True, timeout=START_TIMEOUT,
    )  # fmt: skip
    if create.returncode != 0:
        pytest.fail(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
    for port in ports:
        client = cluster.node(port)
        try:
            _wait(lambda c=client: _state_ok(c), f"cluster_state:ok on port {port}", deadline)
            # every node knows every master (redis-py may ask any of them for the slot map)
            _wait(lambda c=client: len(c.execute_command("CLUSTER", "SLOTS")) == MASTERS,
                  f"the slot map on port {port}", deadline)  # fmt: skip
        finally:
            client.close()


def _state_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    return info.get("cluster_state") == "ok" if isinstance(info, dict) else "cluster_state:ok" in str(info)


def _stop(cluster: Cluster) -> None:
    for proc in cluster.processes:
        if proc.poll() is None:
            proc.kill()
    for proc in cluster.processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A running 3-master cluster of our own (session-scoped; killed and deleted afterwards)."""
    server, cli = _binary("redis-server"), _binary("redis-cli")
    directory = Path(tempfile.mkdtemp(prefix="sbqueue-cluster-"))
    cluster = Cluster([], directory, [])
    try:
        _start(cluster, server, cli)
        yield cluster
    finally:
        _stop(cluster)  # also after a failed start: no orphan servers
        shutil.rmtree(directory, ignore_errors=True)
