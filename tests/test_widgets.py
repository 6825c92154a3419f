"""The widgets, driven headless through their buttons and inputs against the real test Redis.

Every destructive or bulk action is checked twice: nothing under the test's prefix changes before
Confirm (a full keyspace snapshot is compared), and after Confirm the effect is there in Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue.workbench.widgets import CleanPanel, FailureTriage, JobBrowser, QueueDashboard, _data, find_buttons
from tests.conftest import snapshot

QUEUE = "wq"


@pytest.fixture(autouse=True, params=["inspector", "queue-getters"])
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test twice: views read through the Inspector, and through Queue getters only."""
    if request.param == "queue-getters":
        monkeypatch.setattr(_data, "inspector", lambda *_a, **_k: None)
    else:
        assert _data.inspector(request.getfixturevalue("r")) is not None, "sbqueue.inspection.Inspector missing"
    return str(request.param)


def click(panel: Any, label: str) -> None:
    """Click the one visible button labelled ``label`` (as a person would)."""
    buttons = find_buttons(panel, label)
    assert len(buttons) == 1, f"expected one visible {label!r} button, found {len(buttons)}"
    assert not buttons[0].disabled, f"{label!r} is disabled"
    buttons[0].click()


def fail_or_complete(job: sbqueue.Job) -> Any:
    """Processor: fail with the job's ``error`` (if any), else return ok."""
    error = (job.data or {}).get("error")
    if error:
        raise RuntimeError(error)
    return {"ok": True}


def run_worker(r: redis.Redis, prefix: str, q: sbqueue.Queue, failed: int, completed: int) -> None:
    """Process the queue with a real Worker until these counts are reached."""
    worker = sbqueue.Worker(QUEUE, fail_or_complete, r, prefix, concurrency=8).start()
    try:
        deadline = time.monotonic() + 15
        while q.get_job_counts("failed", "completed") != {"failed": failed, "completed": completed}:
            assert time.monotonic() < deadline, f"worker did not settle: {q.get_job_counts()}"
            time.sleep(0.01)
    finally:
        worker.close()


@pytest.fixture
def q(r: redis.Redis, prefix: str) -> Iterator[sbqueue.Queue]:
    """A queue with 6 failed jobs (4 'boom <n>' + 2 'timeout'), 3 completed and 2 delayed ones."""
    queue = sbqueue.Queue(QUEUE, r, prefix)
    for i in range(4):
        queue.add("send", {"i": i, "error": f"boom {i}"})
    for i in range(2):
        queue.add("bill", {"i": i, "error": "timeout after 30 s"})
    for i in range(3):
        queue.add("send", {"i": i})
    run_worker(r, prefix, queue, failed=6, completed=3)
    for i in range(2):
        queue.add("later", {"i": i}, delay=3_600_000)
    yield queue


def state_of(q: sbqueue.Queue, ids: list[str]) -> set[str]:
    return {q.get_job_state(i) for i in ids}


# --- JobBrowser ---------------------------------------------------------------------------------------
def test_jobbrowser_lists_failed_jobs_and_filters(q: sbqueue.Queue) -> None:
    browser = JobBrowser(q, state="failed", page_size=4)
    assert len(browser.jobs) == 6
    assert len(browser.checkboxes) == 4  # one page
    assert "failed <b>6</b>" in browser.header.value
    click(browser, "Next")
    assert len(browser.checkboxes) == 2
    browser.name_filter.value = "bill"
    assert set(browser.jobs["name"]) == {"bill"} and len(browser.jobs) == 2
    browser.name_filter.value = ""
    browser.error_filter.value = "/boom [0-1]$/"
    assert sorted(browser.jobs["failed_reason"]) == ["boom 0", "boom 1"]
    browser.error_filter.value = "TIMEOUT"
    assert len(browser.jobs) == 2
    browser.error_filter.value = ""
    browser.window.value = 900.0
    assert len(browser.jobs) == 6  # all failed just now
    browser.state.value = "delayed"
    assert browser.status.value == ""
    assert len(browser.jobs) == 2 and set(browser.jobs["name"]) == {"later"}
    assert not browser.promote_button.disabled and browser.retry_button.disabled


def test_jobbrowser_retry_acts_only_after_confirm(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    browser = JobBrowser(q, state="failed")
    ids = browser.jobs["id"].tolist()[:3]
    browser.select(ids)
    assert browser.selected_ids == ids
    before = snapshot(r, prefix)
    click(browser, "Retry")
    assert browser.confirm_bar.pending
    summary = browser.confirm_bar.summary.value
    assert "Retry 3 job(s)" in summary and all(i in summary for i in ids)
    assert snapshot(r, prefix) == before, "Retry changed Redis before Confirm"
    click(browser, "Confirm")
    assert state_of(q, ids) == {"waiting"}
    assert q.get_job_counts("failed", "waiting") == {"failed": 3, "waiting": 3}
    assert "Retried 3 of 3" in browser.status.value
    assert not set(ids) & set(browser.jobs["id"]), "the view was not refreshed"
    assert not browser.confirm_bar.pending and find_buttons(browser, "Confirm") == []


def test_jobbrowser_select_all_remove_and_cancel(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    browser = JobBrowser(q, state="failed", page_size=5)
    browser.select_all.value = True
    assert len(browser.selected_ids) == 5
    before = snapshot(r, prefix)
    click(browser, "Remove")
    click(browser, "Cancel")
    assert snapshot(r, prefix) == before
    assert "Cancelled" in browser.status.value
    click(browser, "Remove")
    browser.checkboxes[browser.selected_ids[0]].value = False  # changing the selection drops the pending action
    assert not browser.confirm_bar.pending and snapshot(r, prefix) == before
    ids = browser.selected_ids
    click(browser, "Remove")
    assert snapshot(r, prefix) == before
    click(browser, "Confirm")
    assert all(q.get_job(i) is None for i in ids)
    assert q.get_job_counts("failed")["failed"] == 2
    assert "Removed 4 of 4" in browser.status.value


def test_jobbrowser_promote_delayed(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    browser = JobBrowser(QUEUE, state="delayed", connection=r, prefix=prefix)  # by name + connection
    browser.select(None)
    ids = browser.selected_ids
    assert len(ids) == 2
    before = snapshot(r, prefix)
    click(browser, "Promote")
    assert "Promote 2 job(s)" in browser.confirm_bar.summary.value
    assert snapshot(r, prefix) == before
    click(browser, "Confirm")
    assert state_of(q, ids) == {"waiting"}
    assert q.get_job_counts("delayed")["delayed"] == 0
    assert browser.jobs.empty


def test_jobbrowser_guards_and_detail(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    browser = JobBrowser(q)
    before = snapshot(r, prefix)
    click(browser, "Retry")  # nothing selected
    assert "select jobs first" in browser.status.value and not browser.confirm_bar.pending
    job_id = browser.jobs["id"].iloc[0]
    q.add_job_log(job_id, "tried the mail server")
    before = snapshot(r, prefix)
    links = find_buttons(browser, job_id)
    assert len(links) == 1
    links[0].click()
    detail = browser.detail.value
    assert f"Job {job_id}" in detail and ("boom" in detail or "timeout" in detail)
    assert "tried the mail server" in detail and "timeline" in detail and "stack trace" in detail
    assert snapshot(r, prefix) == before  # reading a detail writes nothing
    browser.state.value = "completed"
    assert browser.promote_button.disabled
    with pytest.raises(ValueError, match="state must be one of"):
        JobBrowser(q, state="bogus")
    with pytest.raises(TypeError, match=r"sbqueue\.Queue or a queue name"):
        JobBrowser(42)  # type: ignore[arg-type]


# --- CleanPanel ---------------------------------------------------------------------------------------
def test_cleanpanel_preview_then_confirm(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    panel = CleanPanel(q, state="completed", grace_s=3600)
    before = snapshot(r, prefix)
    click(panel, "Preview")
    assert "No completed jobs" in panel.preview.value  # all finished just now
    panel.grace.value = 0
    panel.limit.value = 2
    click(panel, "Preview")
    assert "2 completed job(s)" in panel.preview.value and "oldest" in panel.preview.value
    assert snapshot(r, prefix) == before
    click(panel, "Clean")
    assert panel.confirm_bar.pending and "2 completed job(s)" in panel.confirm_bar.summary.value
    assert snapshot(r, prefix) == before, "Clean changed Redis before Confirm"
    click(panel, "Confirm")
    assert q.get_job_counts("completed")["completed"] == 1
    assert "Cleaned 2 completed job(s)" in panel.status.value
    panel.limit.value = 1000
    panel.state.value = "failed"
    click(panel, "Clean")
    panel.grace.value = 5  # a settings change drops the pending clean
    assert not panel.confirm_bar.pending
    panel.grace.value = 0
    click(panel, "Clean")
    click(panel, "Confirm")
    assert q.get_job_counts("failed", "completed") == {"failed": 0, "completed": 1}
    assert "completed <b>1</b>" in panel.header.value  # refreshed


def test_cleanpanel_nothing_to_clean_asks_nothing(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    panel = CleanPanel(q, state="waiting", grace_s=0)
    before = snapshot(r, prefix)
    click(panel, "Clean")
    assert not panel.confirm_bar.pending and "nothing to clean" in panel.status.value
    assert snapshot(r, prefix) == before


# --- FailureTriage ------------------------------------------------------------------------------------
def test_failuretriage_retry_and_remove_a_group(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    triage = FailureTriage(q)
    assert len(triage.groups) == 2
    assert list(triage.groups["count"]) == [4, 2]  # 'boom <n>' first: biggest group
    boom = triage.selected_ids
    assert len(boom) == 4
    before = snapshot(r, prefix)
    click(triage, "Retry")
    assert "Retry 4 failed job(s)" in triage.confirm_bar.summary.value
    assert snapshot(r, prefix) == before
    click(triage, "Confirm")
    assert state_of(q, boom) == {"waiting"}
    assert "Retried 4 of 4" in triage.status.value
    assert len(triage.groups) == 1 and triage.groups["count"].iloc[0] == 2  # refreshed
    timeouts = triage.selected_ids
    before = snapshot(r, prefix)
    click(triage, "Remove")
    assert snapshot(r, prefix) == before
    click(triage, "Confirm")
    assert all(q.get_job(i) is None for i in timeouts)
    assert q.get_job_counts("failed")["failed"] == 0
    assert triage.groups.empty and triage.retry_button.disabled


# --- QueueDashboard -----------------------------------------------------------------------------------
def test_dashboard_counts_pause_resume_refresh(r: redis.Redis, prefix: str, q: sbqueue.Queue) -> None:
    sbqueue.Queue("other", r, prefix).add("x", {})
    dash = QueueDashboard(r, prefix)
    try:
        rows = dash.frame.set_index("queue")
        assert list(rows.index) == ["other", QUEUE]
        assert rows.loc[QUEUE, "failed"] == 6 and rows.loc[QUEUE, "delayed"] == 2
        assert rows.loc["other", "waiting"] == 1
        dash.toggles[QUEUE].value = True
        assert q.is_paused() and "Paused" in dash.status.value
        assert dash.toggles[QUEUE].value and dash.toggles[QUEUE].description == "paused"
        assert not sbqueue.Queue("other", r, prefix).is_paused()
        dash.toggles[QUEUE].value = False
        assert not q.is_paused()
        n = dash.refreshes
        click(dash, "Refresh")
        assert dash.refreshes == n + 1
        q.add("new", {})
        dash.interval.value = 0.2
        dash.auto_refresh.value = True
        deadline = time.monotonic() + 5
        while dash.frame.set_index("queue").loc[QUEUE, "waiting"] != 1:
            assert time.monotonic() < deadline, "auto-refresh did not pick up the new job"
            time.sleep(0.05)
        dash.auto_refresh.value = False
        assert dash._thread is None
    finally:
        dash.close()
