"""The Lua scripts against the one place that knows their arguments (``sbqueue._core.scripts.SPECS``).

Every script file has a header documenting KEYS, ARGV, returns and events; the ARGV names must match
SPECS; every negative code a script can return must map to an exception through
``sbqueue.errors.SCRIPT_ERRORS`` or be handled explicitly by its caller; every script compiles on the
test Redis.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import redis

import sbqueue
from sbqueue._core.finish import FetchRequest, Finish, FinishFlag, FinishKind, finish_and_fetch_argv
from sbqueue._core.keys import QUEUE_KEYS, QueueKeys
from sbqueue._core.scripts import FINISH_FIELDS, SPECS, header_argv, prelude, script_names, source
from sbqueue.engine.scripting import ScriptRunner, scripts_for
from sbqueue.errors import SCRIPT_ERRORS, ScriptError, error_from_code

ROOT = Path(__file__).resolve().parents[1]
LUA = resources.files("sbqueue").joinpath("engine", "lua")
#: negative codes a caller handles itself instead of through SCRIPT_ERRORS: code -> (caller, how)
HANDLED_EXPLICITLY = {-12: ("obliterate", "JobStateError: the queue has active jobs")}

_NEGATIVE = re.compile(r"(?:return|code\s*=)\s*-(\d+)\b")


def _body(name: str) -> str:
    return LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _header(name: str) -> str:
    match = re.search(r"--\[\[(.*?)\]\]", _body(name), re.S)
    assert match, f"{name}.lua has no --[[ header ]]"
    return match.group(1)


def _codes(text: str) -> set[int]:
    return {-int(n) for n in _NEGATIVE.findall(text)}


def test_every_script_file_has_a_spec_and_every_spec_a_file() -> None:
    names = script_names()
    assert names and set(names) == set(SPECS)


@pytest.mark.parametrize("name", script_names())
def test_header_documents_keys_argv_returns_and_events(name: str) -> None:
    header = _header(name)
    assert header.strip().startswith(f"{name} —"), f"{name}.lua header must start with its name"
    assert re.search(r"^\s*KEYS: queue\b", header, re.M)
    assert re.search(r"^\s*Returns:", header, re.M)
    assert re.search(r"^\s*Events:", header, re.M)
    numbers = [int(n) for n in re.findall(r"^\s*ARGV\[(\d+)\]", header, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), f"{name}: ARGV numbering {numbers}"
    assert header_argv(name) == list(SPECS[name].argv)


@pytest.mark.parametrize("name", script_names())
def test_every_returned_negative_code_is_documented_and_mapped(name: str) -> None:
    body = _body(name)
    codes = _codes(body)
    header = _header(name)
    for code in codes:
        assert str(code) in header, f"{name}.lua returns {code} but its header does not say so"
        assert code in SCRIPT_ERRORS or code in HANDLED_EXPLICITLY, f"{name}.lua code {code} is not mapped"


def test_includes_return_no_negative_codes_of_their_own() -> None:
    for path in LUA.joinpath("includes").iterdir():
        assert not _codes(path.read_text(encoding="utf-8")), path.name


def test_explicitly_handled_codes_are_handled_by_their_caller() -> None:
    # the queue's methods live in the mixins of sbqueue/engine/_async (admin.py runs obliterate)
    queue_src = "".join(p.read_text() for p in (ROOT / "sbqueue" / "engine" / "_async").glob("*.py"))
    for code, (script, _how) in HANDLED_EXPLICITLY.items():
        assert code in _codes(_body(script))
        assert f"== {code}" in queue_src, f"no queue method in sbqueue/engine/_async checks code {code} of {script}"


@pytest.mark.parametrize("code", sorted(SCRIPT_ERRORS))
def test_error_from_code_builds_the_mapped_exception(code: int) -> None:
    cls, _template = SCRIPT_ERRORS[code]
    err = error_from_code(code, job_id="7", command="remove")
    assert type(err) is cls and isinstance(err, sbqueue.SbqueueError)
    assert err.code == code and err.job_id == "7" and "7" in str(err)


def test_unknown_code_is_a_script_error() -> None:
    err = error_from_code(-99, job_id="x", command="thing")
    assert isinstance(err, ScriptError) and err.code == -99 and "-99" in str(err)


def test_finish_group_fields_match_the_header() -> None:
    header = _header("finish_and_fetch")
    documented = re.search(r"each of (\d+) values:\s*\n\s*([\w, ]+)\n", header)
    assert documented, "finish_and_fetch header must list the finish group fields"
    assert int(documented.group(1)) == len(FINISH_FIELDS)
    assert [f.strip() for f in documented.group(2).split(",")] == list(FINISH_FIELDS)


def test_finish_record_encodes_in_the_header_order() -> None:
    # every field distinct, so a swapped pair shows
    finish = Finish("id-1", "tok-2", FinishKind.DELAY, "reason-3", '["stack-4"]', 5, (6, 7, 8),
                    frozenset({FinishFlag.SKIP_ATTEMPT}))  # fmt: skip
    assert dict(zip(FINISH_FIELDS, finish.argv(), strict=True)) == {
        "id": "id-1", "token": "tok-2", "kind": "delay", "value": "reason-3", "stacktrace": '["stack-4"]',
        "due": 5, "keep_count": 6, "keep_age_s": 7, "keep_limit": 8, "flags": "s",
    }  # fmt: skip
    plain = Finish("j", "0", FinishKind.COMPLETED).argv()  # the defaults: keep all, no flags
    assert len(plain) == len(FINISH_FIELDS) and plain[-4:] == [-1, 0, 1000, ""]
    assert all(type(v) in (str, int) for v in finish.argv()), "plain str/int only (no enum members on the wire)"


def test_finish_and_fetch_argv_follows_the_spec() -> None:
    request = FetchRequest(*range(100, 100 + len(FetchRequest._fields)))
    assert list(FetchRequest._fields) == list(SPECS["finish_and_fetch"].argv[:-1])  # all but n_finish
    assert SPECS["finish_and_fetch"].argv[-1] == "n_finish"
    finishes = [Finish("a", "t", FinishKind.COMPLETED, '"ok"'), Finish("b", "u", FinishKind.REQUEUE)]
    argv = finish_and_fetch_argv(request, finishes)
    fixed = len(FetchRequest._fields)
    assert argv[:fixed] == list(request) and argv[fixed] == 2
    assert argv[fixed + 1 :] == finishes[0].argv() + finishes[1].argv()


def test_finish_kinds_and_flags_are_the_documented_ones() -> None:
    header = _header("finish_and_fetch")
    kinds = re.search(r"^\s*kind: (.*?)^\s*value:", header, re.M | re.S)
    assert kinds, "finish_and_fetch header must document the kinds"
    assert set(re.findall(r'"(\w+)"', kinds.group(1))) == {k.value for k in FinishKind}
    flags = re.search(r"^\s*flags: (.*?)^\s*Returns:", header, re.M | re.S)
    assert flags, "finish_and_fetch header must document the flags"
    assert set(re.findall(r'"(\w)" =', flags.group(1))) == {f.value for f in FinishFlag}


def test_prelude_follows_queue_keys_and_scripts_use_only_known_keys() -> None:
    text = prelude()
    for i, name in enumerate(QUEUE_KEYS, 1):
        assert f'["{name}"] = KEYS[{i}]' in text
    for name in [*script_names(), *(f"includes/{p.name[:-4]}" for p in LUA.joinpath("includes").iterdir())]:
        used = set(re.findall(r'K\["([\w:-]+)"\]', LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")))
        assert used <= set(QUEUE_KEYS), (name, used - set(QUEUE_KEYS))
        for inc in re.findall(r"^--@include (\w+)", LUA.joinpath(f"{name}.lua").read_text(), re.M):
            assert LUA.joinpath("includes", f"{inc}.lua").is_file(), (name, inc)


@pytest.mark.parametrize("name", script_names())
def test_script_compiles_on_redis(r: redis.Redis, name: str) -> None:
    sha = r.script_load(source(name))
    assert r.script_exists(sha) == [True]
    assert "--@include" not in source(name)


def test_runner_registers_once_per_client_and_checks_argument_counts(r: redis.Redis, prefix: str) -> None:
    assert scripts_for(r) is scripts_for(r)
    run = ScriptRunner(r, QueueKeys(prefix, "q"))
    with pytest.raises(TypeError, match="remove_job"):
        run("remove_job", [])
    assert run("remove_job", ["nope"]) == -1


def test_generated_sync_flavour_is_up_to_date() -> None:
    check = subprocess.run([sys.executable, "tools/unasync.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_direct_path_reloads_a_script_the_server_does_not_know(r: redis.Redis, prefix: str) -> None:
    """The lean sync path answers NOSCRIPT by loading the script and running it once more (exactly once)."""
    import uuid

    from sbqueue._core.scripts import source
    from sbqueue.engine.scripting import ScriptRunner

    q = sbqueue.Queue("noscript", r, prefix=prefix)
    runner = ScriptRunner(r, q.keys)
    fresh = r.register_script(source("add_job") + f"\n-- {uuid.uuid4().hex}\n")  # a sha no server has seen
    assert r.script_exists(fresh.sha) == [False]
    runner._scripts = {**runner._scripts, "add_job": fresh}
    job_id, status = runner("add_job", ["", "n", "{}", "{}", 1, 0, 0, "0", "", 0, "", ""])
    assert status == 1 and r.script_exists(fresh.sha) == [True]
    assert r.lrange(f"{prefix}:noscript:wait", 0, -1) == [job_id]  # added once, not twice


def test_async_direct_path_reloads_a_script_the_server_does_not_know(redis_url: str, prefix: str) -> None:
    """The asyncio twin of the lean path: NOSCRIPT → load → run exactly once."""
    import asyncio
    import uuid

    import redis.asyncio as aredis

    async def go() -> None:
        client = aredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            runner = ScriptRunner(client, QueueKeys(prefix, "anoscript"))
            fresh = client.register_script(source("add_job") + f"\n-- {uuid.uuid4().hex}\n")
            runner._scripts = {**runner._scripts, "add_job": fresh}
            job_id, status = await runner("add_job", ["", "n", "{}", "{}", 1, 0, 0, "0", "", 0, "", ""])
            assert status == 1
            assert await client.lrange(f"{prefix}:anoscript:wait", 0, -1) == [job_id]
        finally:
            await client.aclose()

    asyncio.run(go())


def test_async_direct_path_never_reuses_a_connection_whose_reply_is_pending(redis_url: str, prefix: str) -> None:
    """A call cancelled after sending must not leave its reply for the next caller of that connection."""
    import asyncio

    import redis.asyncio as aredis

    async def go() -> None:
        client = aredis.Redis.from_url(redis_url, decode_responses=True, max_connections=1)
        try:
            runner = ScriptRunner(client, QueueKeys(prefix, "cancel"))
            call = asyncio.ensure_future(runner("add_job", ["", "n", "{}", "{}", 1, 0, 0, "0", "", 0, "", ""]))
            for _ in range(3):  # let it send, but not read the reply
                await asyncio.sleep(0)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # the one pooled connection was dropped, not returned with ["1", 1] unread
            assert await runner("remove_job", ["no-such-job"]) == -1
        finally:
            await client.aclose()

    asyncio.run(go())


def test_script_errors_keep_the_direct_connection_usable(r: redis.Redis, prefix: str) -> None:
    """A reply that is an error was read in full: the next call on that connection gets its own reply."""
    keys = QueueKeys(prefix, "werr")
    r.set(keys.key("wait"), "not a list")  # LPUSH on it answers WRONGTYPE
    runner = ScriptRunner(r, keys)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        runner("add_job", ["", "n", "{}", "{}", 1, 0, 0, "0", "", 0, "", ""])
    r.delete(keys.key("wait"))
    assert runner("remove_job", ["no-such-job"]) == -1


def test_spin_wait_backs_off_when_replies_are_slower_than_its_budget(
    r: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The busy-wait for replies stops (for a while) once it keeps timing out, e.g. on a remote Redis."""
    from sbqueue.engine import scripting as _scripting

    runner = ScriptRunner(r, QueueKeys(prefix, "spin"))
    monkeypatch.setattr(_scripting, "SPIN_S", 1e-9)  # every reply is "slower" than the budget
    # one miss is enough here: on a loaded machine many replies are readable at once, and each resets the count
    monkeypatch.setattr(_scripting, "_MISSES_BEFORE_BACKOFF", 1)
    for _ in range(500):
        assert runner("remove_job", ["x"]) == -1
        if runner._skip:
            break
    assert runner._skip == _scripting._BACKOFF_CALLS
    assert runner("remove_job", ["x"]) == -1
    assert runner._skip == _scripting._BACKOFF_CALLS - 1
    monkeypatch.setattr(_scripting, "SPIN_S", 0.5)  # generous: replies arrive inside it, misses reset
    runner._skip = 0
    runner._misses = 3
    assert runner("remove_job", ["x"]) == -1
    assert runner._misses == 0 and runner._skip == 0


def test_a_malformed_spin_budget_is_a_clear_error_at_import() -> None:
    env = {**__import__("os").environ, "SBQUEUE_SPIN_US": "fast"}
    res = subprocess.run([sys.executable, "-c", "import sbqueue"], env=env, capture_output=True, text=True)
    assert res.returncode != 0
    assert "SBQUEUE_SPIN_US must be a number of microseconds, got 'fast'" in res.stderr


ADD = ["", "n", "{}", "{}", 1, 0, 0, "0", "", 0, "", ""]  # add_job's ARGV: a plain job


def test_batch_sends_calls_at_once_and_reloads_an_unknown_script_for_all_of_them(r: redis.Redis, prefix: str) -> None:
    """``batch``: one round trip, replies in order, ``then`` last; NOSCRIPT → load → each call runs exactly once."""
    import uuid

    keys = QueueKeys(prefix, "bnoscript")
    runner = ScriptRunner(r, keys)
    assert runner.lean
    fresh = r.register_script(source("add_job") + f"\n-- {uuid.uuid4().hex}\n")
    runner._scripts = {**runner._scripts, "add_job": fresh}
    replies = runner.batch("add_job", [ADD, ADD, ADD], ("WAIT", 0, 0))
    assert [status for _, status in replies[:3]] == [1, 1, 1] and replies[3] == 0  # WAIT: no replica
    assert r.lrange(keys.key("wait"), 0, -1) == [replies[2][0], replies[1][0], replies[0][0]]  # once each, in order
    with pytest.raises(TypeError, match="add_job"):
        runner.batch("add_job", [ADD, ADD[:3]])


def test_batch_reads_every_reply_before_raising_the_first_error(r: redis.Redis, prefix: str) -> None:
    """As a pipeline: the calls around a failing one run, the first error is raised, the connection stays in step."""
    keys = QueueKeys(prefix, "berr")
    runner = ScriptRunner(r, keys)
    bad = [*ADD[:5], "not a number", *ADD[6:]]  # delay: the script fails on it
    with pytest.raises(redis.ResponseError):
        runner.batch("add_job", [ADD, bad, ADD])
    assert r.llen(keys.key("wait")) == 2
    assert runner("remove_job", ["no-such-job"]) == -1 and runner.batch("remove_job", [["x"], ["y"]]) == [-1, -1]


def test_async_batch_reloads_and_keeps_order(redis_url: str, prefix: str) -> None:
    import asyncio
    import uuid

    import redis.asyncio as aredis

    async def go() -> None:
        client = aredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            keys = QueueKeys(prefix, "abatch")
            runner = ScriptRunner(client, keys)
            fresh = client.register_script(source("add_job") + f"\n-- {uuid.uuid4().hex}\n")
            runner._scripts = {**runner._scripts, "add_job": fresh}
            replies = await runner.batch("add_job", [ADD, ADD])
            assert [status for _, status in replies] == [1, 1]
            assert await client.lrange(keys.key("wait"), 0, -1) == [replies[1][0], replies[0][0]]
            with pytest.raises(redis.ResponseError):
                await runner.batch("add_job", [[*ADD[:5], "x", *ADD[6:]]])
            assert await runner.batch("remove_job", [["x"]]) == [-1]  # in step after the error
        finally:
            await client.aclose()

    asyncio.run(go())
