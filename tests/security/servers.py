"""Private ``redis-server`` processes for the security tests: TLS (self-signed CA made here) and/or a password.

Each server runs on a free loopback port with no persistence and is the test's own to configure and stop
(the shared test Redis is never reconfigured). TLS servers need a ``redis-server`` built with TLS; Debian's
``/usr/bin/redis-server`` (7.0) is. :func:`tls_binary` finds one or returns None (tests then skip).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from sbqueue import embedded
from sbqueue.connection.embedded import free_port

#: the TLS-capable server to prefer (Debian's build links OpenSSL); the embedded 6.2 one has no TLS
SYSTEM_REDIS = "/usr/bin/redis-server"


def _has_tls(binary: str) -> bool:
    """True when ``binary`` was built with TLS: given a TLS port but no certificate, it complains about the
    certificate (and exits before listening); a build without TLS rejects the option itself."""
    try:
        res = subprocess.run([binary, "--port", "0", "--tls-port", str(free_port()), "--loglevel", "warning"],
                             capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    out = res.stdout + res.stderr
    return "Bad directive" not in out and "tls" in out.lower()


def tls_binary() -> str | None:
    """A redis-server with TLS support (``SBQUEUE_TLS_REDIS_SERVER``, /usr/bin/redis-server, PATH), or None."""
    for candidate in (os.environ.get("SBQUEUE_TLS_REDIS_SERVER"), SYSTEM_REDIS, shutil.which("redis-server")):
        if candidate and os.access(candidate, os.X_OK) and _has_tls(candidate):
            return candidate
    return None


def any_binary() -> str:
    """A redis-server for plain (password/ACL) servers: the TLS one if present, else sbqueue's embedded one."""
    return tls_binary() or embedded.bundled_binary() or embedded.find_binary()


# --- certificates ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA certificate clients trust (ssl_ca_certs)
    cert: Path  # the server certificate (CN/SAN 127.0.0.1, localhost), signed by the CA
    key: Path  # the server key


def make_certs(directory: Path) -> Certs:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, valid for one day (``cryptography``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sbqueue tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("sbqueue test CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    certs = Certs(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))  # fmt: skip
    certs.key.chmod(0o600)
    return certs


# --- servers ---------------------------------------------------------------------------------------------
class PrivateRedis:
    """A ``redis-server`` child on a free loopback port: TLS-only when ``certs`` is given, ``requirepass`` when
    ``password`` is. :attr:`url` is what a client uses (``rediss://…?ssl_ca_certs=…`` for TLS);
    :meth:`admin` is a superuser client."""

    def __init__(self, home: Path, *, binary: str | None = None, certs: Certs | None = None,
                 password: str | None = None, unixsocket: bool = False) -> None:  # fmt: skip
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.binary = binary or (tls_binary() if certs else any_binary())
        if self.binary is None:
            raise RuntimeError("no redis-server with TLS support found")
        self.certs = certs
        self.password = password
        #: a unix socket beside the TCP port, when asked for (``unix_socket_path=`` clients)
        self.socket: Path | None = home / "redis.sock" if unixsocket else None
        self.port = free_port()
        self.log = home / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        args = [self.binary, "--bind", "127.0.0.1", "--dir", str(self.home), "--logfile", str(self.log),
                "--daemonize", "no", "--save", "", "--appendonly", "no", "--protected-mode", "no"]  # fmt: skip
        if self.certs:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.certs.cert),
                     "--tls-key-file", str(self.certs.key), "--tls-ca-cert-file", str(self.certs.ca),
                     "--tls-auth-clients", "no"]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        if self.socket:
            args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        return args

    def url_for(self, user: str | None = None, password: str | None = None, *, db: int = 0, **query: str) -> str:
        """A URL of this server with these credentials (percent-encoded) and extra query arguments."""
        auth = ""
        if password is not None:
            auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
        elif user:
            auth = f"{quote(user, safe='')}@"
        scheme = "rediss" if self.certs else "redis"
        if self.certs:
            query = {"ssl_ca_certs": str(self.certs.ca), **query}
        qs = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}" + (f"?{qs}" if qs else "")

    @property
    def url(self) -> str:
        """The URL with the superuser's (default user's) password, if any."""
        return self.url_for(None if self.password is None else "default", self.password)

    def admin(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, **kwargs)

    def start(self, timeout: float = 15.0) -> PrivateRedis:
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.closing(self.admin(socket_connect_timeout=1, socket_timeout=2)) as client:
                try:
                    if client.ping():
                        return self
                except (redis.RedisError, OSError):
                    pass
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"private redis-server on port {self.port} did not start; log tail:\n{tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # no persistence configured: SIGTERM exits at once
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def private_redis(home: Path, **kwargs: Any) -> Iterator[PrivateRedis]:
    """Start a :class:`PrivateRedis`, stop it afterwards (whatever happens)."""
    server = PrivateRedis(home, **kwargs)
    try:
        yield server.start()
    finally:
        server.stop()
