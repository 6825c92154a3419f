"""Fuzz counts: every property of ``test_fuzz.py`` records examples tried and rejected; the terminal summary
prints them (and ``SBQUEUE_FUZZ_REPORT=<path>`` writes them as JSON) for the reliability note."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from typing import Any

import pytest

#: property -> Counter(tried=..., rejected=..., accepted=...)
FUZZ_COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)


def count(prop: str, outcome: str) -> None:
    """Record one example of ``prop``: ``outcome`` is ``"rejected"`` (a documented error) or ``"accepted"``."""
    FUZZ_COUNTS[prop]["tried"] += 1
    FUZZ_COUNTS[prop][outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FUZZ_COUNTS:
        return
    tried = sum(c["tried"] for c in FUZZ_COUNTS.values())
    rejected = sum(c["rejected"] for c in FUZZ_COUNTS.values())
    terminalreporter.section("sbqueue fuzz counts")
    for prop, c in sorted(FUZZ_COUNTS.items()):
        terminalreporter.write_line(f"{prop:<40} tried {c['tried']:>5}  rejected {c['rejected']:>5}  "
                                    f"accepted {c['accepted']:>5}")  # fmt: skip
    terminalreporter.write_line(f"{'TOTAL':<40} tried {tried:>5}  rejected {rejected:>5}  "
                                f"accepted {tried - rejected:>5}  ({len(FUZZ_COUNTS)} properties)")  # fmt: skip
    path = os.environ.get("SBQUEUE_FUZZ_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({p: dict(c) for p, c in sorted(FUZZ_COUNTS.items())}, fh, indent=2)


@pytest.fixture
def fuzz_count() -> Any:
    return count
