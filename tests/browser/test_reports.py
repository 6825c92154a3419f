"""Rendered incident reports in a real browser: each planted incident's report opens in Debian's chromium.

Runbooks run by papermill (as ``sbqueue report`` / ``make demo`` run them) on planted scenarios — one per runbook
at least, the job-latency one on live workers; each HTML report is opened in headless chromium through
Playwright, screenshotted into ``reports/screenshots/report-*.png`` (and the test's tmp dir), and its visible text
must contain no ``<NA>``, ``NaN``, ``NaT``, ``None``, ``Traceback`` or ``…``, and must open with the banner whose
status word is the planted incident's expected outcome. The ``index.html`` over them shows one row per report
with that status word first, and each row's link opens its report.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from sbqueue import reports, scenarios
from sbqueue.workbench import latency_scenarios
from tests.browser.test_jupyterlab import SHOTS, launch, require_tools
from tests.test_packaging import RUNBOOKS

pytestmark = [pytest.mark.browser, pytest.mark.notebook]

FORBIDDEN = ("<NA>", "NaN", "NaT", "None", "Traceback", "…")

#: (report name, scenario or None, runbook, extra parameters, expected status word; None: whatever the runbook said)
CASES: list[tuple[str, str | None, str, dict[str, Any], str | None]] = [
    ("stuck-paused", "paused", "stuck-jobs", {"dry_run": False, "watch_s": 0.5}, "ACTION NEEDED"),
    ("stuck-missing-queue", None, "stuck-jobs", {"queue": "no-such-queue"}, "NOT FOUND"),
    ("failed-jobs", "failing", "failed-jobs", {"dry_run": False, "watch_s": 0.5}, "ACTION NEEDED"),
    ("stalled-jobs", "stalled", "stalled-jobs", {"force": True}, "ACTION NEEDED"),
    ("memory-cleaned", "memory_bloat", "redis-memory", {"dry_run": False, "max_age_hours": 0.0}, "FIXED"),
    ("redis-health", None, "redis-health", {"window_s": 0.2}, None),
    ("queue-report", None, "queue-report", {}, "REPORT"),
]


def test_reports_read_cleanly_in_chromium(r: redis.Redis, prefix: str, redis_url: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    sync_playwright, _ = require_tools()
    monkeypatch.setenv("SBQUEUE_REDIS_URL", redis_url)  # the kernels find the server; no URL lands in a report
    scenarios.paused(r, prefix, "bystander", jobs=1)  # the missing-queue report lists the queues that do exist
    pages: list[tuple[str, Path, str]] = []
    started = time.monotonic()
    for name, scenario, runbook, params, expected in CASES:
        args: dict[str, Any] = {"prefix": prefix, **params}
        if scenario is not None:
            planted = scenarios.SCENARIOS[scenario](r, prefix, scenario.replace("_", "-"))
            args.setdefault("queue", planted.queue)
        notebook = reports.run(runbook, args, output=tmp_path / f"{name}.ipynb", html_path=tmp_path / f"{name}.html")
        outcome = reports.summary_of(notebook)["outcome"]
        assert outcome == (expected or outcome) and outcome, f"{name}: {reports.verdict_of(notebook)}"
        pages.append((name, tmp_path / f"{name}.html", outcome))
    with latency_scenarios.under_provisioned(r, prefix, "latency-capacity"):  # live producer and worker
        params = {"prefix": prefix, "queue": "latency-capacity", "window_s": 60.0, "max_wait_s": 0.3, "sample_s": 1.0}
        notebook = reports.run("job-latency", params, output=tmp_path / "job-latency.ipynb",
                               html_path=tmp_path / "job-latency.html")  # fmt: skip
    assert reports.summary_of(notebook)["outcome"] == "ACTION NEEDED", reports.verdict_of(notebook)
    pages.append(("job-latency", tmp_path / "job-latency.html", "ACTION NEEDED"))
    assert {runbook for _, _, runbook, _, _ in CASES} | {"job-latency"} == set(RUNBOOKS)  # every runbook reports
    assert time.monotonic() - started < 150, "the report runs got slow"
    index = reports.write_index([{"title": name, "href": html.name, **reports.summary_of(html.with_suffix(".ipynb"))}
                                 for name, html, _ in pages], tmp_path / "index.html")  # fmt: skip
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, html, outcome in pages:
                page.goto(html.resolve().as_uri())
                shot = tmp_path / f"report-{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                shutil.copy(shot, SHOTS / shot.name)
                text = page.evaluate("document.body.innerText")
                for word in FORBIDDEN:
                    assert word not in text, f"{name}: {word!r} in the visible text of {html.name} (see {shot})"
                banner = page.locator(".sbq-banner").first
                assert banner.get_attribute("data-outcome") == outcome, name
                assert banner.locator(".sbq-word").inner_text().strip() == outcome, name
                # the banner comes first: above every evidence section (only the report's title is above it)
                first = ("document.querySelector('.sbq-banner').getBoundingClientRect().top < "
                         "Math.min(...[...document.querySelectorAll('h2')].map(h => h.getBoundingClientRect().top))")
                assert page.evaluate(first), name
                assert page.locator(".sbq-banner").count() == 1, name
            page.goto(index.resolve().as_uri())
            page.screenshot(path=str(SHOTS / "report-index.png"), full_page=True)
            rows = page.locator("table tr").all()[1:]  # after the header row
            assert [row.locator("td").first.inner_text().strip() for row in rows] == [o for _, _, o in pages]
            text = page.evaluate("document.body.innerText")
            assert not [word for word in FORBIDDEN if word in text], text
            page.locator("a", has_text="job-latency").click()  # a row's link opens its report
            page.wait_for_load_state()
            assert page.url.endswith("/job-latency.html")
            assert page.locator(".sbq-banner .sbq-word").inner_text().strip() == "ACTION NEEDED"
        finally:
            browser.close()
