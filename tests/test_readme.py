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
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README quickstart", "exec"), {"__name__": "readme"})  # our own README
    lines = out.getvalue().splitlines()
    assert lines[0] == "{'to': 'ada@example.com'} waiting"
    counts = ast.literal_eval(lines[1])
    assert counts["completed"] == 1 and counts["delayed"] == 1
    assert lines[-1] == "['1']"
    assert sbqueue.Queue("emails", r, prefix=prefix).get_job_counts("completed") == {"completed": 0}
