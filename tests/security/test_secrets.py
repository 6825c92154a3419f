"""Passwords never appear: not in logs (caplog, CLI stderr), reprs, exception messages, notebook outputs and HTML
reports, nor exporter metrics. And no pickle/eval of job data anywhere in sbqueue (job data is JSON).

Every check greps for :data:`CORE`, a random token inside the password: whatever encoding a leak used
(raw, percent-encoded, ``+`` for space), the token would show.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import subprocess
import sys
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import sbqueue
from sbqueue import clients, connection, reports, scenarios
from sbqueue.inspection import Inspector
from tests.conftest import delete_prefix
from tests.processors import wait_for

from .servers import PrivateRedis, free_port, private_redis

ROOT = Path(__file__).resolve().parents[2]
CORE = secrets.token_hex(8)
PASSWORD = f"pw {CORE}/@:%?#"  # every character a URL must encode, and a space


def leaks(text: str) -> bool:
    return CORE in text


def url_for(server: PrivateRedis, password: str = PASSWORD, user: str = "default", db: int = 0) -> str:
    return f"redis://{user}:{quote(password, safe='')}@127.0.0.1:{server.port}/{db}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path_factory.mktemp("secret-redis"), password=PASSWORD) as srv:
        yield srv


@pytest.fixture
def url(server: PrivateRedis) -> Iterator[str]:
    yield url_for(server)


@pytest.fixture
def pfx(server: PrivateRedis) -> Iterator[str]:
    name = f"sec{uuid.uuid4().hex[:8]}"
    yield name
    admin = server.admin()
    delete_prefix(admin, name)
    admin.close()


def chain_text(exc: BaseException) -> str:
    """The exception, its traceback, and every exception it chains to (even suppressed context)."""
    parts = ["".join(traceback.format_exception(exc))]
    seen = exc.__context__ or exc.__cause__
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen!s} {seen!r}")
        seen = seen.__context__ or seen.__cause__
    return "\n".join(parts)


# --- reprs, logs, exceptions ----------------------------------------------------------------------------------
def test_reprs_and_logs_never_show_the_password(url: str, pfx: str, server: PrivateRedis,
                                                caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    client = sbqueue.connect(url)
    q = sbqueue.Queue("s", url, prefix=pfx)
    events = sbqueue.QueueEvents("s", url, prefix=pfx, block_ms=100)
    errors: list[BaseException] = []

    def fail(job: sbqueue.Job) -> None:
        raise RuntimeError(f"processor failed on job {job.id}")

    worker = sbqueue.Worker("s", fail, url, prefix=pfx, drain_delay=0.3)
    worker.on("error", errors.append)
    insp = Inspector(url, pfx, progress=False)
    try:
        job = q.add("j", {"k": 1})
        worker.start()
        wait_for(lambda: q.get_job_counts("failed")["failed"] == 1, 10, what="the job to fail")
        frames = [insp.queues(), insp.jobs("s"), insp.clients(), insp.info(), insp.config_audit(), insp.workers()]
        objects = [client, q, q.client, events, worker, worker.queue, insp, insp.client, insp.queue("s"), job,
                   q.get_job(job.id), q.inspector, clients.sync_twin(client)]  # fmt: skip

        async def async_reprs() -> list[str]:
            aq = sbqueue.AsyncQueue("s", url, prefix=pfx)
            twin = clients.async_twin(client)
            out = [repr(aq), repr(aq.client), repr(twin), connection.mask_url(connection.url_of(twin))]
            await twin.aclose(close_connection_pool=True)
            await aq.close()
            return out

        texts = [repr(o) for o in objects] + [str(o) for o in objects] + asyncio.run(async_reprs())
        texts += [df.to_string() for df in frames]
        texts += [connection.mask_url(connection.url_of(o)) for o in (client, q.client, insp.client)]
    finally:
        worker.close(timeout=5)
        events.close()
        insp.close()
    for text in texts:
        assert not leaks(text), text
    assert "***" in repr(insp)
    assert not errors
    assert not leaks(caplog.text)


def test_worker_losing_redis_logs_masked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with private_redis(tmp_path / "dies", password=PASSWORD) as dying:
        dying_url = url_for(dying)
        q = sbqueue.Queue("gone", dying_url, prefix="gone")
        worker = sbqueue.Worker("gone", lambda job: None, dying_url, prefix="gone", drain_delay=0.2,
                                stalled_interval=200)  # fmt: skip
        errors: list[BaseException] = []
        worker.on("error", errors.append)
        worker.start()
        q.add("x")
        wait_for(lambda: worker.processed == 1, 5, what="one job")
        dying.stop()
        wait_for(lambda: len(errors) >= 2, 10, what="the worker to notice")
        worker.close(timeout=2)
    assert "unavailable" in caplog.text or errors
    for exc in errors:
        assert not leaks(chain_text(exc))
    assert not leaks(caplog.text)


def test_connection_errors_are_masked(server: PrivateRedis) -> None:
    cases = [
        url_for(server, password=f"wrong {CORE}"),  # wrong password
        f"redis://default:{quote(PASSWORD, safe='')}@127.0.0.1:{free_port()}/0",  # nobody listens there
        f"redis://default:{quote(PASSWORD, safe='')}@127.0.0.1:99999/0",  # invalid port
        f"http://default:{quote(PASSWORD, safe='')}@127.0.0.1/0",  # wrong scheme
        f"redis://default:{PASSWORD}@127.0.0.1:{server.port}/0",  # not percent-encoded at all
        f"redis://default:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/0?db=nope",  # bad query argument
        f"redis://default:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/0?frobnicate=1",
    ]
    for bad in cases:
        with pytest.raises(sbqueue.SbqueueError) as info:
            sbqueue.connect(bad, socket_connect_timeout=1)
        assert isinstance(info.value, (sbqueue.ConnectionFailedError, sbqueue.ConfigurationError)), bad
        assert not leaks(chain_text(info.value)), (bad, chain_text(info.value))
        for make in (lambda u: sbqueue.Queue("q", u), lambda u: Inspector(u),
                     lambda u: sbqueue.Worker("q", print, u), lambda u: sbqueue.QueueEvents("q", u)):  # fmt: skip
            with pytest.raises(sbqueue.SbqueueError) as info:
                make(bad)
            assert not leaks(chain_text(info.value)), (bad, chain_text(info.value))
    with pytest.raises(sbqueue.RedisVersionError) as version:
        connection.check_version("5.0.0", url_for(server))
    assert not leaks(str(version.value))


def test_exporter_metrics_and_logs(url: str, pfx: str, server: PrivateRedis,
                                   caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from prometheus_client import CollectorRegistry, generate_latest

    from sbqueue.ops.exporter import QueueCollector, connect_exporter

    caplog.set_level(logging.DEBUG)
    sbqueue.Queue("m", url, prefix=pfx).add("j")
    texts = []
    for target in (url, url_for(server, password=f"bad {CORE}"), url.replace(str(server.port), str(free_port()))):
        client = connect_exporter(target)
        registry = CollectorRegistry()
        collector = QueueCollector(client, pfx)
        registry.register(collector)
        texts.append(generate_latest(registry).decode())
        texts.append(repr(collector))
        client.close()
    assert 'bullmq_queue_waiting{queue="m"} 1.0' in texts[0] and "redis_up 0.0" in texts[2]
    assert "redis_up 0.0" in texts[4]
    assert not any(leaks(t) for t in texts)
    assert "unavailable" in caplog.text and not leaks(caplog.text)


# --- command line ----------------------------------------------------------------------------------------------
def _cli(*args: str, timeout: float = 30, stop_when: str | Callable[[], bool] | None = None) -> tuple[int, str, str]:
    """Run the CLI; with ``stop_when`` (a text on stderr, or a condition), SIGTERM it once that holds — however
    loaded the machine is, never after a fixed sleep."""
    proc = subprocess.Popen([sys.executable, "-m", "sbqueue", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: list[str] = []
    if isinstance(stop_when, str):
        assert proc.stderr is not None
        deadline = time.monotonic() + timeout
        for line in proc.stderr:  # the worker logs line by line: read until the text shows
            lines.append(line)
            if stop_when in line or time.monotonic() > deadline:
                break
    elif stop_when is not None:
        wait_for(stop_when, timeout, interval=0.1, what="the CLI to do its work")
    if stop_when is not None:
        proc.terminate()
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, "".join(lines) + err


def test_cli_output_is_masked(url: str, pfx: str, server: PrivateRedis) -> None:
    wrong = url_for(server, password=f"wrong {CORE}")
    unreachable = url.replace(str(server.port), str(free_port()))
    # a worker with bad credentials or no server waits (with backoff) and says so, masked
    for target in (wrong, unreachable):
        code, out, err = _cli("worker", "q", "tests.processors:echo", "--url", target, "--prefix", pfx,
                              stop_when="retrying")  # fmt: skip
        assert code == 0 and "retrying" in err, err
        assert not leaks(out + err), err
    # one-line errors: exit code 2, "sbqueue: error: ...", masked
    for args in (("worker", "q", "no.such.module:fn", "--url", url),
                 ("worker", "a:b", "tests.processors:echo", "--url", url),
                 ("demo", "--url", wrong, "--jobs", "1"),
                 ("exporter", "--url", f"http://u:{quote(PASSWORD, safe='')}@h", "--port", "0")):  # fmt: skip
        code, out, err = _cli(*args)
        assert code == 2, (args, err)
        assert err.startswith("sbqueue: error: ") and err.count("\n") == 1, err
        assert not leaks(out + err), err
    # a working worker and exporter log the masked URL
    q = sbqueue.Queue("q", url, prefix=pfx)
    q.add("x", {"a": 1})
    code, out, err = _cli("worker", "q", "tests.processors:echo", "--url", url, "--prefix", pfx,
                          stop_when=lambda: q.get_job_counts("completed")["completed"] == 1)  # fmt: skip
    assert code == 0 and "default:***@127.0.0.1" in err and not leaks(out + err), err
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sbqueue", "exporter", "--url", url, "--prefix", pfx, "--port",
                             str(port), "--address", "127.0.0.1"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        def scrape() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    return str(resp.read().decode())
            except OSError:
                return ""

        body = wait_for(scrape, 20, interval=0.1, what="the exporter to serve")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert 'bullmq_queue_completed{queue="q"} 1.0' in body and not leaks(body)
    assert "default:***@127.0.0.1" in err and not leaks(out + err), err


# --- notebooks and reports -------------------------------------------------------------------------------------
@pytest.mark.notebook
def test_runbook_outputs_and_reports(tmp_path: Path, url: str, pfx: str, server: PrivateRedis,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    admin = server.admin()
    scenarios.paused(admin, pfx, "held", jobs=3)
    admin.close()
    # 1. the password in SBQUEUE_REDIS_URL (how the demo and CI run runbooks)
    monkeypatch.setenv("SBQUEUE_REDIS_URL", url)
    nb = reports.run("stuck-jobs", {"prefix": pfx, "queue": "held"}, output=tmp_path / "env.ipynb",
                     html_path=tmp_path / "env.html")  # fmt: skip
    assert "queue 'held': paused" in reports.verdict_of(nb)
    # 2. the password in the redis_url parameter: papermill would write it into the notebook, so it travels
    #    through the kernel's environment instead
    monkeypatch.setenv("SBQUEUE_REDIS_URL", "redis://127.0.0.1:1/0")  # wrong on purpose: the parameter must win
    nb2 = reports.run("stuck-jobs", {"redis_url": url, "prefix": pfx, "queue": "held"},
                      output=tmp_path / "param.ipynb", html_path=tmp_path / "param.html")  # fmt: skip
    assert "queue 'held': paused" in reports.verdict_of(nb2)
    assert os.environ["SBQUEUE_REDIS_URL"] == "redis://127.0.0.1:1/0"  # restored
    # 3. a wrong password: the runbook fails; its error, notebook and HTML are masked too
    monkeypatch.setenv("SBQUEUE_REDIS_URL", url_for(server, password=f"wrong {CORE}"))
    with pytest.raises(sbqueue.ConfigurationError) as info:
        reports.run("stuck-jobs", {"prefix": pfx, "queue": "held"}, output=tmp_path / "bad.ipynb",
                    html_path=tmp_path / "bad.html")  # fmt: skip
    assert "ConnectionFailedError" in str(info.value) and not leaks(chain_text(info.value))
    for name in ("env.ipynb", "env.html", "param.ipynb", "param.html", "bad.ipynb", "bad.html"):
        text = (tmp_path / name).read_text()
        assert not leaks(text), name
        assert "***@127.0.0.1" in text or name.startswith("bad"), name


# --- no pickle, no eval ----------------------------------------------------------------------------------------
#: the one module that pickles: the private pipe between a worker and the child processes it spawned (the same
#: user, the same code; multiprocessing's Connection pickles every message anyway). Nothing read from Redis
#: goes through it unpickled: a job's data and options are decoded from JSON before a child sees them.
PROCESS_PIPE = "sbqueue/engine/worker/process_wire.py"


def test_no_pickle_or_eval_of_job_data() -> None:
    """Job data is JSON: nothing in sbqueue unpickles or evaluates what it reads from Redis. ``ast.literal_eval``
    (runbook parameter defaults and list-typed ``-p`` values, literals only, in
    sbqueue/workbench/reports/params.py) is the one allowed evaluation; pickling only on the worker's pipe to its
    own children (:data:`PROCESS_PIPE`), which never touches Redis."""
    package = ROOT / "sbqueue"
    forbidden = re.compile(r"\bpickle\b|\bcPickle\b|\bmarshal\.loads?\b|\bshelve\b|(?<![\w.])eval\(|(?<![\w.])exec\(|"
                           r"\byaml\.load\(|\byaml\.unsafe_load\b|__import__\(")  # fmt: skip
    found = []
    for path in sorted(package.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if forbidden.search(code) and not (path.relative_to(ROOT).as_posix() == PROCESS_PIPE
                                               and re.search(r"\bpickle\b", code) and "eval(" not in code):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    literal = [p for p in package.rglob("*.py") if "literal_eval" in p.read_text(encoding="utf-8")]
    assert [p.relative_to(ROOT).as_posix() for p in literal] == ["sbqueue/workbench/reports/params.py"]
    assert not found, "\n".join(found)
    pipe = (ROOT / PROCESS_PIPE).read_text(encoding="utf-8")
    assert "import redis" not in pipe and "from sbqueue.connection" not in pipe  # the pipe module never reads Redis
    lua = "\n".join(p.read_text() for p in package.rglob("*.lua"))
    assert "loadstring" not in lua and "cmsgpack" not in lua  # scripts never evaluate job data either
