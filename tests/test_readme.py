"""The README's quickstart runs as written (on a private queue prefix) and prints what it says."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import redis

import sbqueue

ROOT = Path(__file__).resolve().parent.parent


def quickstart_code() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quickstart") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_quickstart_runs(r: redis.Redis, prefix: str, redis_url: str) -> None:
    code = quickstart_code()
    # same code, on this test's Redis and key prefix
    code = code.replace('sbqueue.Queue("emails")', f'sbqueue.Queue("emails", {redis_url!r}, prefix={prefix!r})')
    code = code.replace('sbqueue.Worker("emails", send, concurrency=10)',
                        f'sbqueue.Worker("emails", send, {redis_url!r}, {prefix!r}, concurrency=10)')  # fmt: skip
    assert prefix in code
    for run in range(2):  # it runs any number of times: ids, counts and output stay truthful
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README quickstart", "exec"), {"__name__": "readme"})  # our own README
        lines = out.getvalue().splitlines()
        assert lines[0] == "{'to': 'ada@example.com'} waiting", run
        counts = ast.literal_eval(lines[1])
        assert counts["completed"] == 1 and counts["delayed"] == 1, (run, counts)
        assert lines[-1] == "True", run
        q = sbqueue.Queue("emails", r, prefix=prefix)
        assert q.get_job_counts("completed", "delayed", "waiting") == {"completed": 0, "delayed": 0, "waiting": 0}


def test_flows_example_runs(r: redis.Redis, prefix: str, redis_url: str) -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Flows (parent/child jobs)") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    code = code.replace("sbqueue.FlowProducer()", f"sbqueue.FlowProducer({redis_url!r}, prefix={prefix!r})")
    code = code.replace('sbqueue.Queue("reports")', f'sbqueue.Queue("reports", {redis_url!r}, prefix={prefix!r})')
    code = re.sub(r'sbqueue\.Worker\(("\w+"), (lambda job: .*?)\)\.start\(\)',
                  lambda m: f"sbqueue.Worker({m.group(1)}, {m.group(2)}, {redis_url!r}, {prefix!r}).start()", code)
    assert code.count(prefix) == 4, code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README flows", "exec"), {"__name__": "readme"})  # our own README
    assert out.getvalue().splitlines() == ["waiting-children 2", "20"]


def test_processing_by_hand_example_runs(r: redis.Redis, prefix: str, redis_url: str) -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Processing jobs by hand") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    code = code.replace('sbqueue.Queue("images")', f'sbqueue.Queue("images", {redis_url!r}, prefix={prefix!r})')
    code = code.replace('sbqueue.Worker("images", None,', f'sbqueue.Worker("images", None, {redis_url!r}, {prefix!r},')
    assert code.count(prefix) == 2, code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README processing by hand", "exec"), {"__name__": "readme", "sbqueue": sbqueue})
    assert out.getvalue().splitlines() == ["completed None"]
