"""Fuzz (hypothesis) the public entry points that take user input, beyond tests/test_validation.py's job options:
URLs, CLI arguments, runbook parameters, Worker/QueueEvents/Inspector options, queue names and prefixes, and job
data (non-JSON, NaN, huge, deeply nested).

Each example either works or raises a documented :class:`sbqueue.SbqueueError` subclass — never another
exception, never a traceback from the CLI — and Redis has no new key after a rejection. Passwords in fuzzed URLs
never appear in a message. Counts (tried / rejected) are printed in the terminal summary (see conftest.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sbqueue
from sbqueue import cli, connection, reports, runbook
from sbqueue.engine.worker import Worker
from sbqueue.inspection import Inspector
from tests.conftest import snapshot

from .conftest import count
from .servers import free_port

#: at most 50 examples per property (the file runs in well under 30 s); SBQUEUE_HYPOTHESIS_EXAMPLES for a deep run
PROPERTY = settings(
    max_examples=min(int(os.environ.get("SBQUEUE_HYPOTHESIS_EXAMPLES", "50")), 10_000),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

SECRET_CHARS = "XYZ"  # letters only fuzzed passwords use: any of them in a message is a leak
CLOSED_PORT = free_port()  # nothing listens here (a fresh free port)


def outcome(prop: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; a documented sbqueue error counts as a rejection (returned), anything else fails."""
    try:
        result = call()
    except sbqueue.SbqueueError as exc:
        count(prop, "rejected")
        return exc
    count(prop, "accepted")
    return result


class _Unchanged:
    """Asserts that nothing under the test prefix (and no key anywhere) appeared or changed."""

    def __init__(self, r: redis.Redis, prefix: str) -> None:
        self.r, self.prefix = r, prefix

    def __enter__(self) -> _Unchanged:
        self.keys, self.dbsize = snapshot(self.r, self.prefix), self.r.dbsize()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert snapshot(self.r, self.prefix) == self.keys
            # other tests' keys with a TTL (locks, limiters, dedup windows) may expire meanwhile: the count
            # can drop, but a key created anywhere would raise it
            assert self.r.dbsize() <= self.dbsize, "a rejected call created a key"


@pytest.fixture
def unchanged(r: redis.Redis, prefix: str) -> Callable[[], _Unchanged]:
    return lambda: _Unchanged(r, prefix)


# --- URLs ----------------------------------------------------------------------------------------------------
secrets_st = st.text(alphabet=SECRET_CHARS + "@:/?#%& +=[]!$'()*,;~", min_size=1, max_size=12).filter(
    lambda s: any(c in SECRET_CHARS for c in s)
)
users = st.text(alphabet="abcdefghijklmnop-_.", max_size=8)
hosts = st.sampled_from(["127.0.0.1", "", "[::1]", "[::1", "127.0.0.1:", "[]", "[fe80::1%eth0]", "ä@",
                         f"127.0.0.1:{CLOSED_PORT},127.0.0.1", "127.0.0.1,"])
# never the default port (a real Redis may listen there), never a name to resolve (no DNS in tests)
ports = st.sampled_from([f":{CLOSED_PORT}", ":0", ":99999", ":abc", ":-1", ":6379:1"])
paths = st.sampled_from(["", "/0", "/15", "/x", "//", "/0/1", "/tmp/sbq-nosuch.sock"])
queries = st.sampled_from(["", "?db=1", "?db=x", "?foo=bar", "?socket_timeout=abc", "?cluster=maybe", "?cluster=0",
                           "?password=XYZ", "?ssl_cert_reqs=required", "?protocol=9", "?ssl_password=XY&db=0"])
schemes = st.sampled_from(["redis://", "rediss://", "unix://", "http://", "", "redis:/", "REDIS://", "redis+sentinel://",
                           "rediss+sentinel://"])


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str]:
    """``(url, password)``: a URL with a fuzzed password, raw or percent-encoded, in a fuzzed URL shape."""
    password = draw(secrets_st)
    shown = password if draw(st.booleans()) else quote(password, safe="")
    user = draw(users)
    # a bare "secret@" is masked whole; raw, a ':' in it would make its start a (visible) user name
    auth = draw(st.sampled_from([f"{user}:{shown}@", f":{shown}@", f"{quote(password, safe='')}@",
                                 f"{user}:{shown}@@"]))
    url = draw(schemes) + auth + draw(hosts) + draw(ports) + draw(paths) + draw(queries)
    return url, password


def no_secret(text: str) -> None:
    assert not any(c in text for c in SECRET_CHARS), text


@PROPERTY
@given(case=urls())
def test_mask_url_never_leaks(case: tuple[str, str]) -> None:
    url, _password = case
    masked = connection.mask_url(url)
    no_secret(masked)
    assert connection.mask_url(masked) == masked or "***" in masked
    count("mask_url", "accepted")


@PROPERTY
@given(text=st.text(max_size=60))
def test_mask_and_validate_never_crash_on_any_text(text: str) -> None:
    connection.mask_url(text)
    outcome("validate_url(any text)", lambda: connection.validate_url(text))


@PROPERTY
@given(case=urls())
def test_connect_rejects_cleanly_and_masks(case: tuple[str, str]) -> None:
    url, _password = case
    err = outcome("connect(url)", lambda: sbqueue.connect(url, socket_connect_timeout=0.3, socket_timeout=0.3))
    assert isinstance(err, (sbqueue.ConfigurationError, sbqueue.ConnectionFailedError)), err  # nothing listens
    no_secret(str(err))
    no_secret(repr(err))


# --- CLI -----------------------------------------------------------------------------------------------------
class _Served(Exception):
    """Raised instead of executing a notebook: the arguments were accepted."""


cli_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00-" + SECRET_CHARS),
                   max_size=12)
numbers = st.sampled_from(["0", "1", "-1", "10", "abc", "1e3", "", "99999999999999999999", "nan", "2.5", " 7 "])


@st.composite
def cli_args(draw: st.DrawFn, redis_url: str, prefix: str) -> list[str]:
    """argv for ``sbqueue.cli.app.main``: a subcommand, its options with fuzzed values, and stray tokens."""
    command = draw(st.sampled_from(["worker", "exporter", "report", "demo", "server", "", "bogus"]))
    good_url = st.just(redis_url)
    bad_url = st.sampled_from(["http://x", "redis://", "redis://h:99999", "unix://", "redis://:XYZ@[::1",
                               "redis://127.0.0.1:1/0?db=x", "nonsense", f"redis://u:XY@h:{CLOSED_PORT}?foo=1"])
    options: dict[str, st.SearchStrategy[str]] = {  # type: ignore[assignment]
        "worker": {"--concurrency": numbers, "--url": good_url | bad_url, "--prefix": st.just(prefix) | cli_text,
                   "--name": cli_text, "--lock-duration": numbers, "--stalled-interval": numbers,
                   "--max-stalled-count": numbers, "--shutdown-timeout": numbers,
                   "--log-level": st.sampled_from(["INFO", "debug", "LOUD", "", "5"])},
        "exporter": {"--url": good_url | bad_url, "--prefix": st.just(prefix) | cli_text,
                     "--queues": st.sampled_from(["all", "a,b", ",", "", "a:b", " "]) | cli_text,
                     "--port": st.sampled_from(["0", "-1", "70000", "x"]),
                     "--address": st.sampled_from(["127.0.0.1", "256.0.0.1", "not an address"]),
                     "--discovery-interval": numbers, "--log-level": st.sampled_from(["INFO", "LOUD"])},
        "report": {"--html": st.sampled_from(["out/r.html", "r.html"]),
                   "--output": st.sampled_from(["out/r.ipynb", "r.ipynb"])},
        "demo": {"--jobs": numbers, "--url": bad_url},
    }.get(command, {})
    argv = [command] if command else []
    if command == "worker":
        argv += [draw(st.sampled_from(["q", "a:b", "", "ok-queue"]) | cli_text),
                 draw(st.sampled_from(["tests.processors:echo", "tests.processors:nope", "nomodule:fn", "x", ":"]))]
    elif command == "report":
        argv.append(draw(st.sampled_from(["stuck-jobs", "failed-jobs", "nope", "../runbooks/stuck-jobs"]) | cli_text))
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(["queue", "prefix", "dry_run", "mode", "bogus"]) | cli_text)
            value = draw(st.sampled_from(["True", "'q'", "{[1]: 2}", "-" * 3000 + "1", "(" * 250, "x"]) | cli_text)
            argv += ["-p", name, value]
    elif command == "server":
        argv.append(draw(cli_text.filter(lambda a: a not in ("start", "stop", "status", "url"))))
    for option in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)) if options else []:
        argv += [option, draw(options[option])]
    argv += draw(st.lists(st.sampled_from(["--bogus", "-x", "--help=no", "extra"]) | cli_text, max_size=2))
    if command == "demo":
        argv += ["--url", draw(bad_url)]  # the demo never runs for real here: the last --url wins
    return argv


@pytest.fixture
def cli_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Accepted invocations stop before doing real work: the worker returns at once, the exporter serves one
    wait, the report skips papermill. Logging starts unconfigured, as in a fresh process."""
    import papermill

    from sbqueue.cli import exporter as exporter_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Worker, "run", lambda self: None)

    class _OneWait(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            super().wait(0.05)  # the HTTP server thread is serving by then
            return True

    monkeypatch.setattr(exporter_cli.threading, "Event", _OneWait)

    def no_papermill(*args: Any, **kwargs: Any) -> None:
        raise _Served

    monkeypatch.setattr(papermill, "execute_notebook", no_papermill)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    yield


@PROPERTY
@given(data=st.data())
def test_cli_arguments(data: st.DataObject, redis_url: str, prefix: str, r: redis.Redis, cli_sandbox: None,
                       capsys: pytest.CaptureFixture[str], unchanged: Callable[[], _Unchanged]) -> None:  # fmt: skip
    argv = data.draw(cli_args(redis_url, prefix))
    logging.getLogger().handlers = []  # basicConfig runs as in a fresh process, every example
    capsys.readouterr()
    code: int | str | None
    with unchanged():
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: usage + "error:" (2), or --help/--version (0)
            code = exc.code
        except _Served:
            code = 0
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    for line in err.splitlines():  # sbqueue's own lines (argparse's usage text may quote any argument)
        if line.startswith("sbqueue: error:") or line[:4].isdigit():
            no_secret(line)
    if code == 2 and not err.startswith("usage:"):
        lines = [line for line in err.splitlines() if not line[:4].isdigit()]  # log lines start with a date
        assert len(lines) == 1 and lines[0].startswith("sbqueue: error: "), (argv, err)
    count("cli.main(argv)", "rejected" if code == 2 else "accepted")


# --- runbooks ------------------------------------------------------------------------------------------------
param_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.lists(
    st.integers(), max_size=2)  # fmt: skip


@PROPERTY
@given(name=st.sampled_from(["stuck-jobs", "failed-jobs", "queue-report", "redis-health"]) | st.text(max_size=15),
       params=st.dictionaries(st.sampled_from(["queue", "prefix", "dry_run", "mode", "action", "window_s"])
                              | st.text(max_size=10) | st.integers(), param_values, max_size=3))  # fmt: skip
def test_reports_run_parameters(name: str, params: dict[Any, Any], monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:  # fmt: skip
    import papermill

    def no_papermill(*args: Any, **kwargs: Any) -> None:
        raise _Served

    monkeypatch.setattr(papermill, "execute_notebook", no_papermill)
    try:
        err = outcome("reports.run(name, params)", lambda: reports.run(name, params, output=tmp_path / "o.ipynb"))
    except _Served:
        count("reports.run(name, params)", "accepted")
        known = reports.parameters(name)
        assert set(params) <= set(known)  # only known parameters reach papermill
        return
    assert isinstance(err, sbqueue.InvalidOptionError), err


modes = st.sampled_from(["requeue", "fail"]) | st.text(max_size=8) | st.integers() | st.none()
actions = st.sampled_from(["retry", "remove"]) | st.text(max_size=8) | st.none() | st.booleans()
anything = st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats() | st.text(max_size=8) | st.lists(
    st.text(max_size=3), max_size=2)  # fmt: skip
bad_values = anything | st.sampled_from([float("nan"), float("inf"), -1, "", b"x", object()])


def _bad_or_good(good: st.SearchStrategy[Any], bad_share: int = 4) -> st.SearchStrategy[Any]:
    """``good`` values most of the time, a bad one in ``1 / bad_share`` draws (so combinations of several
    options still reach the accepting path)."""
    return st.integers(1, bad_share).flatmap(lambda i: bad_values if i == 1 else good)


@pytest.fixture
def failed_queue(r: redis.Redis, prefix: str) -> str:
    """A queue with failed jobs of two signatures (so signature/name filters have something to match)."""
    from tests.queue_flavours import finish_group, run_finish

    q = sbqueue.Queue("fz", r, prefix=prefix)
    for i in range(4):
        q.add("send" if i % 2 else "bill", {"i": i})
    _codes, jobs, _ttl, _next = run_finish(q, fetch=4)
    groups = [finish_group(jid, token, "failed", f"boom {i % 2}", stacktrace="[]")
              for i, (jid, token, _h) in enumerate(jobs)]  # fmt: skip
    run_finish(q, groups)
    return "fz"


RUNBOOK_PROPERTY = settings(PROPERTY, max_examples=min(PROPERTY.max_examples, 25))  # each example reads Redis


def diagnosis(prop: str, call: Callable[[], Any]) -> None:
    """A diagnosis works (and its plan is only applied with confirm=True) or raises InvalidOptionError."""
    found = outcome(prop, call)
    if isinstance(found, runbook.Finding):
        with pytest.raises(sbqueue.InvalidOptionError):
            found.apply()
        assert isinstance(found.verdict(), str)
    else:
        assert isinstance(found, sbqueue.InvalidOptionError), (prop, found)


@RUNBOOK_PROPERTY
@given(mode=_bad_or_good(st.sampled_from(["requeue", "fail"])), force=st.booleans() | anything,
       max_stalled=_bad_or_good(st.integers(0, 5)), queue=_bad_or_good(st.just("fz")))  # fmt: skip
def test_diagnose_stalled(r: redis.Redis, prefix: str, failed_queue: str, unchanged: Callable[[], _Unchanged],
                          mode: Any, force: Any, max_stalled: Any, queue: Any) -> None:  # fmt: skip
    with unchanged():
        diagnosis("runbook.diagnose_stalled", lambda: runbook.diagnose_stalled(
            queue, r, prefix, mode=mode, force=force, max_stalled_count=max_stalled))  # fmt: skip


@RUNBOOK_PROPERTY
@given(action=_bad_or_good(st.sampled_from(["retry", "remove"])),
       signature=_bad_or_good(st.none() | st.sampled_from(["boom", "boom 1", "Error"]) | st.text(max_size=5)),
       name=_bad_or_good(st.none() | st.sampled_from(["send", "bill"])),
       since=_bad_or_good(st.none() | st.timedeltas(max_value=dt.timedelta(days=1)) | st.integers(0, 2**40)),
       batch=_bad_or_good(st.integers(1, 1000)))  # fmt: skip
def test_diagnose_failed(r: redis.Redis, prefix: str, failed_queue: str, unchanged: Callable[[], _Unchanged],
                         action: Any, signature: Any, name: Any, since: Any, batch: Any) -> None:  # fmt: skip
    with unchanged():
        diagnosis("runbook.diagnose_failed", lambda: runbook.diagnose_failed(
            failed_queue, r, prefix, signature=signature, name=name, since=since, action=action, batch=batch))


@RUNBOOK_PROPERTY
@given(queue=_bad_or_good(st.none() | st.just("fz")), max_age=_bad_or_good(st.timedeltas(min_value=dt.timedelta(0))),
       states=_bad_or_good(st.sampled_from([("completed",), ("failed", "completed"), ("bogus",), ()])),
       limit=_bad_or_good(st.integers(0, 10**6)))  # fmt: skip
def test_diagnose_stuck_and_memory(r: redis.Redis, prefix: str, failed_queue: str,
                                   unchanged: Callable[[], _Unchanged], queue: Any, max_age: Any, states: Any,
                                   limit: Any) -> None:  # fmt: skip
    with unchanged():
        diagnosis("runbook.diagnose_stuck", lambda: runbook.diagnose_stuck(queue, r, prefix))
        diagnosis("runbook.diagnose_memory", lambda: runbook.diagnose_memory(
            r, prefix, max_age=max_age, states=states, limit=limit, queue=queue))  # fmt: skip


@RUNBOOK_PROPERTY
@given(window=st.sampled_from([0, 0.01, -1, float("nan"), float("inf"), 1e12, "1", None, True]))
def test_diagnose_health(r: redis.Redis, prefix: str, unchanged: Callable[[], _Unchanged], window: Any) -> None:
    with unchanged():
        diagnosis("runbook.diagnose_health", lambda: runbook.diagnose_health(r, prefix, window_s=window))


# --- worker, events, inspector options, names, prefixes -----------------------------------------------------------
@PROPERTY
@given(opts=st.fixed_dictionaries({}, optional={
    "concurrency": _bad_or_good(st.integers(1, 50)),
    "lock_duration": _bad_or_good(st.integers(1, 60_000)),
    "lock_renew_time": _bad_or_good(st.integers(1, 30_000)),
    "stalled_interval": _bad_or_good(st.integers(1, 60_000)),
    "max_stalled_count": _bad_or_good(st.integers(0, 5)),
    "limiter": _bad_or_good(st.fixed_dictionaries({"max": st.integers(1, 100)},
                                                  optional={"duration": st.integers(1, 10_000)})),
    "remove_on_complete": _bad_or_good(st.booleans() | st.integers(0, 100)),
    "remove_on_fail": _bad_or_good(st.fixed_dictionaries({"age": st.integers(0, 100)})),
    "name": _bad_or_good(st.text(alphabet="abc-_", min_size=1, max_size=5)),
    "backoff_strategy": _bad_or_good(st.just(lambda n, exc, job: 10)),
    "drain_delay": _bad_or_good(st.floats(0.01, 10)),
    "metrics_points": _bad_or_good(st.integers(0, 100)),
    "max_rate_limit_delay": _bad_or_good(st.integers(0, 60_000)),
    "processor": st.just(print) | st.just(None) | st.just("tests.processors:echo"),
    "queue_name": st.just("w") | st.text(max_size=6) | st.integers(),
    "prefix": st.just("<fixture>") | st.text(max_size=6) | st.none(),
}))  # fmt: skip
def test_worker_options(r: redis.Redis, prefix: str, unchanged: Callable[[], _Unchanged], opts: dict[str, Any]) -> None:
    processor = opts.pop("processor", print)
    queue_name = opts.pop("queue_name", "w")
    pfx = opts.pop("prefix", "<fixture>")
    pfx = prefix if pfx == "<fixture>" else pfx
    with unchanged():
        worker = outcome("Worker(...)", lambda: Worker(queue_name, processor, r, pfx, **opts))
    if isinstance(worker, Worker):
        assert not worker.running
        assert worker.drain_delay > 0 and math.isfinite(worker.drain_delay)
        assert worker.backoff_strategy is None or callable(worker.backoff_strategy)
    else:
        assert isinstance(worker, (sbqueue.InvalidOptionError,)), worker


@PROPERTY
@given(name=_bad_or_good(st.sampled_from(["q", "emails", "{tagged}", "ünï", "a b"]) | st.text(min_size=1, max_size=8)),
       pfx=_bad_or_good(st.just("<fixture>") | st.text(min_size=1, max_size=8)),
       last_id=_bad_or_good(st.sampled_from(["$", "0", "0-0", "1-1", "123"]) | st.text(max_size=6)),
       block_ms=_bad_or_good(st.integers(0, 1000), 8))  # fmt: skip
def test_names_prefixes_and_events_options(r: redis.Redis, prefix: str, unchanged: Callable[[], _Unchanged],
                                           name: Any, pfx: Any, last_id: Any, block_ms: Any) -> None:  # fmt: skip
    pfx = prefix if pfx == "<fixture>" else pfx
    with unchanged():
        q = outcome("Queue(name, prefix)", lambda: sbqueue.Queue(name, r, prefix=pfx))
        if isinstance(q, sbqueue.Queue):
            assert sum(q.get_job_counts().values()) == 0 or pfx == prefix
            assert isinstance(q.get_jobs(), list)

        async def make_async() -> Any:
            aq = sbqueue.AsyncQueue(name, r, prefix=pfx)
            await aq.get_job_counts()
            await aq.close()

        outcome("AsyncQueue(name, prefix)", lambda: asyncio.run(make_async()))
        events = outcome("QueueEvents(name, prefix, last_event_id, block_ms)", lambda: sbqueue.QueueEvents(
            name, r, prefix=pfx, last_event_id=last_id, block_ms=block_ms))  # fmt: skip
        if isinstance(events, sbqueue.QueueEvents):
            try:
                assert events.read(block_ms=0) == [] or pfx == prefix
            finally:
                events.close()
        insp = outcome("Inspector(prefix).queue(name)", lambda: Inspector(r, pfx, progress=False).queue(name))
        if not isinstance(insp, sbqueue.SbqueueError):
            insp.jobs()
            insp.summary()


@PROPERTY
@given(states=st.none() | st.sampled_from(["failed", "wait", ["active", "completed"]]) | st.text(max_size=6)
       | st.lists(st.text(max_size=4), max_size=2) | st.integers(),
       limit=_bad_or_good(st.integers(0, 10)), since=anything, count_=_bad_or_good(st.integers(1, 10)),
       window=st.sampled_from([0, 0.01, -1, float("nan"), float("inf"), 1e12, "1", None]),
       match=st.text(max_size=6), n=_bad_or_good(st.integers(0, 10)))  # fmt: skip
def test_inspector_arguments(r: redis.Redis, prefix: str, failed_queue: str, unchanged: Callable[[], _Unchanged],
                             states: Any, limit: Any, since: Any, count_: Any, window: Any, match: Any,
                             n: Any) -> None:  # fmt: skip
    with unchanged(), Inspector(r, prefix, progress=False) as insp:
        outcome("Inspector.jobs(states, limit, since)",
                lambda: insp.jobs(failed_queue, states=states, limit=limit, since=since, until=since))
        outcome("Inspector.failures(limit, since)", lambda: insp.failures(failed_queue, limit=limit, since=since))
        outcome("Inspector.events(since, count)", lambda: insp.events(failed_queue, since=since, count=count_))
        outcome("Inspector.timeline(job_id)", lambda: insp.timeline(failed_queue, match))
        outcome("Inspector.stalled(max_stalled_count)", lambda: insp.stalled(failed_queue, n))
        outcome("Inspector.slowlog(n)", lambda: insp.slowlog(n))
        outcome("Inspector.bigkeys(match, top)", lambda: insp.bigkeys(f"{prefix}:{match}*", top=n, sample=count_))
        outcome("Inspector.alerts(window_s)", lambda: insp.alerts(window))
        outcome("Inspector.info(section)", lambda: insp.info(match or None))


# --- job data ------------------------------------------------------------------------------------------------
def nested(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


job_data = (
    st.sampled_from([float("nan"), float("inf"), {"x": float("-inf")}, {1, 2}, b"raw", object(), {(1,): 2},
                     complex(1, 1), {"ok": [1, 2, {"deep": float("nan")}]}, "\ud800", {"k": "\x00"}])
    | st.tuples(st.integers(100, 3000), st.sampled_from(["list", "dict"])).map(lambda t: nested(*t))
    | st.integers(900, 1100).map(lambda n: "x" * n)  # around a max_job_bytes of 1000
    | st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5) | st.integers(),
                   lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
                   max_leaves=8)
)  # fmt: skip


@PROPERTY
@given(data=job_data, name=st.text(max_size=5) | st.integers() | st.none() | st.just("n" * 10_001),
       where=st.sampled_from(["add", "add_bulk", "scheduler", "update_data", "update_progress"]))  # fmt: skip
def test_job_data(r: redis.Redis, prefix: str, data: Any, name: Any, where: str) -> None:
    q = sbqueue.Queue("jd", r, prefix=prefix, max_job_bytes=1000)
    existing = q.add("existing", {"v": 0}) if where.startswith("update") else None
    calls: dict[str, Callable[[], Any]] = {
        "add": lambda: q.add(name, data),
        "add_bulk": lambda: q.add_bulk([{"name": "ok"}, {"name": name, "data": data}]),
        "scheduler": lambda: q.upsert_job_scheduler("s", every=60_000, name=name, data=data),
        "update_data": lambda: existing.update_data(data),
        "update_progress": lambda: existing.update_progress(data),
    }
    before = snapshot(r, prefix)
    found = outcome(f"job data: {where}", calls[where])
    if isinstance(found, sbqueue.SbqueueError):
        assert isinstance(found, (sbqueue.DataError, sbqueue.InvalidOptionError)), found
        assert snapshot(r, prefix) == before, "a rejected add/update wrote something"
    else:
        q.obliterate(force=True)
    q.close()


@settings(PROPERTY, max_examples=min(PROPERTY.max_examples, 20))
@given(depth=st.integers(500, 5000))
def test_deep_nesting_is_a_data_error_never_a_recursion_error(r: redis.Redis, prefix: str, depth: int) -> None:
    """Data nested deeper than Python's JSON can take: a DataError on add; read back (a peer wrote it) it is a
    parse error, never a RecursionError."""
    q = sbqueue.Queue("deep", r, prefix=prefix)
    before = snapshot(r, prefix)
    found = outcome("deeply nested data", lambda: q.add("d", nested(depth, "list")))
    if isinstance(found, sbqueue.SbqueueError):
        assert isinstance(found, sbqueue.DataError) and snapshot(r, prefix) == before
    text = "[" * depth + "]" * depth  # valid JSON a Node peer could write
    r.delete(f"{prefix}:deep:wait")
    r.hset(f"{prefix}:deep:peer", mapping={"name": "p", "data": text, "opts": text})
    r.rpush(f"{prefix}:deep:wait", "peer")
    job = q.get_job("peer")
    assert job is not None and "opts" in (job.parse_error or "")  # too deep, or a list: never a dict
    (got,) = [j for j in q.get_waiting() if j.id == "peer"]  # (how deep Python parses depends on the call stack)
    assert "opts" in (got.parse_error or "")
    with Inspector(r, prefix, progress=False) as insp:
        (error,) = insp.jobs("deep").query("id == 'peer'").parse_error
    assert "opts" in error
    q.obliterate(force=True)
