"""A real browser: JupyterLab + headless Chromium drive a JobBrowser; Redis shows the jobs were retried.

The test plants failed jobs with a real :class:`sbqueue.Worker`, writes a small notebook (JobBrowser,
FailureTriage, CleanPanel, QueueDashboard), starts ``jupyter lab`` on a free port with
``SBQUEUE_REDIS_URL`` pointing at the test Redis, runs the notebook in Debian's ``chromium`` through
Playwright (no browser download), ticks *select all on page*, clicks **Retry**, checks nothing moved,
clicks **Confirm** and asserts in Redis that every job was retried. Screenshots go to
``reports/screenshots/`` (jobbrowser.png, jobbrowser-confirm.png, triage.png, clean.png, dashboard.png).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import redis

import sbqueue
from sbqueue.connection.embedded import free_port
from tests.conftest import snapshot

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SBQUEUE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "reports" / "screenshots"
QUEUE = "emails"
FAILED = 5
WAIT_MS = 45_000

CELLS = [
    "import os\n\nfrom sbqueue.workbench.widgets import CleanPanel, FailureTriage, JobBrowser, QueueDashboard\n\n"
    'url = os.environ["SBQUEUE_REDIS_URL"]\nprefix = os.environ["SBQUEUE_TEST_PREFIX"]\n'
    'queue = os.environ["SBQUEUE_TEST_QUEUE"]',
    'JobBrowser(queue, state="failed", connection=url, prefix=prefix)',
    "FailureTriage(queue, connection=url, prefix=prefix)",
    'CleanPanel(queue, connection=url, prefix=prefix, state="completed", grace_s=0)',
    "QueueDashboard(url, prefix)",
]


def send(job: sbqueue.Job) -> Any:
    """Processor: the mail server refuses odd jobs, times out on some, delivers the rest."""
    i = int(job.data["i"])
    if i % 3 == 0:
        raise ConnectionError(f"SMTP 421 from mx{i}.example.com: try again later")
    if i % 3 == 1:
        raise TimeoutError(f"no answer after {3000 + i} ms")
    return {"delivered": True}


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbformat.write(nb, str(path))


@pytest.fixture
def lab(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[Callable[[], str]]:
    """``start()`` runs a JupyterLab server (own process group, isolated config/data dirs) and returns the
    notebook's URL; the server and its kernel are stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        root = tmp_path / "root"
        root.mkdir()
        write_notebook(root / "jobbrowser.ipynb")
        settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
        token, port = secrets.token_hex(16), free_port()
        env = {
            **os.environ,
            "SBQUEUE_REDIS_URL": redis_url, "SBQUEUE_TEST_PREFIX": prefix, "SBQUEUE_TEST_QUEUE": QUEUE,
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "IPYTHONDIR": str(tmp_path / "ipython"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }  # fmt: skip
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--IdentityProvider.token={token}",
               f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"]
        if os.geteuid() == 0:  # CI runs as root
            cmd.append("--allow-root")
        log = tmp_path / "jupyter.log"
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=root)  # fmt: skip
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        return f"{base}/lab/tree/jobbrowser.ipynb?token={token}"
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its kernel: the group this test started
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def plant(r: redis.Redis, prefix: str) -> tuple[sbqueue.Queue, list[str]]:
    q = sbqueue.Queue(QUEUE, r, prefix)
    total = FAILED + FAILED // 2
    jobs = [q.add("send", {"i": i, "to": f"user{i}@example.com"}) for i in range(total)]
    failing = [j.id for j in jobs if int(j.data["i"]) % 3 != 2]
    worker = sbqueue.Worker(QUEUE, send, r, prefix, concurrency=4).start()
    try:
        deadline = time.monotonic() + 15
        while q.get_job_counts("failed")["failed"] < len(failing) or q.get_job_counts("waiting")["waiting"]:
            assert time.monotonic() < deadline, f"worker did not settle: {q.get_job_counts()}"
            time.sleep(0.01)
    finally:
        worker.close()
    return q, failing


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def require_tools() -> tuple[Any, Any]:
    """Playwright's ``(sync_playwright, expect)``; fails (never skips) when chromium or playwright is missing."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(f"chromium not found at {CHROMIUM}: install Debian's chromium (`apt-get install -y chromium`; "
                    "`make test` does it through tools/ensure_test_deps.py) or set SBQUEUE_CHROMIUM")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: pip install playwright (part of the dev extra); "
                    "never `playwright install`: the test drives Debian's chromium")
    return sync_playwright, expect


def test_jobbrowser_retry_confirm_in_jupyterlab(r: redis.Redis, prefix: str, lab: Callable[[], str]) -> None:
    sync_playwright, expect = require_tools()
    q, failing = plant(r, prefix)
    assert len(failing) == FAILED
    url = lab()
    SHOTS.mkdir(parents=True, exist_ok=True)

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            page.set_default_timeout(WAIT_MS)
            page.goto(url)
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle").first).to_be_visible()  # kernel up
            page.locator("li.lm-MenuBar-item", has_text="Run").first.click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()  # Run > Run All Cells
            jb = page.locator(".sbqueue-jobbrowser")
            kernel_dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
            expect(jb.or_(kernel_dialog).first).to_be_visible()
            if kernel_dialog.is_visible():  # JupyterLab may still ask once; the default is our python3
                kernel_dialog.get_by_role("button", name="Select", exact=True).click()
            expect(jb).to_be_visible()
            expect(jb.get_by_text(f"of {FAILED} matching")).to_be_visible()
            for cls in ("sbqueue-failuretriage", "sbqueue-cleanpanel", "sbqueue-dashboard"):
                expect(page.locator(f".{cls}")).to_be_visible()
            jb.get_by_role("button", name=failing[-1], exact=True).click()  # the detail view of one job
            expect(jb.get_by_text("stack trace")).to_be_visible()

            clean = page.locator(".sbqueue-cleanpanel")
            clean.get_by_role("button", name="Preview").click()  # read only, like everything before Confirm
            expect(clean.get_by_text("2 completed job(s)")).to_be_visible()
            jb.get_by_label("select all on page").check()
            expect(jb.locator("input[type=checkbox]:checked")).to_have_count(FAILED + 1)
            before = snapshot(r, prefix)
            jb.get_by_role("button", name="Retry").click()
            confirm = jb.get_by_role("button", name="Confirm")
            expect(confirm).to_be_visible()
            expect(jb.get_by_text(f"Retry {FAILED} job(s)")).to_be_visible()
            assert snapshot(r, prefix) == before, "Redis changed before Confirm was clicked"
            jb.screenshot(path=str(SHOTS / "jobbrowser-confirm.png"))
            for cls, name in (("sbqueue-failuretriage", "triage"), ("sbqueue-cleanpanel", "clean"),
                              ("sbqueue-dashboard", "dashboard")):  # fmt: skip
                page.locator(f".{cls}").screenshot(path=str(SHOTS / f"{name}.png"))

            confirm.click()
            expect(jb.get_by_text(f"Retried {FAILED} of {FAILED} job(s).")).to_be_visible()
            deadline = time.monotonic() + 10
            while {q.get_job_state(i) for i in failing} != {"waiting"}:
                assert time.monotonic() < deadline, f"jobs not retried: {q.get_job_counts()}"
                time.sleep(0.05)
            assert q.get_job_counts("failed", "waiting") == {"failed": 0, "waiting": FAILED}
            expect(jb.get_by_text("no failed jobs match")).to_be_visible()  # the view refreshed
            jb.screenshot(path=str(SHOTS / "jobbrowser.png"))
        except BaseException:
            page.screenshot(path=str(SHOTS / "jupyterlab-failure.png"))  # what the browser showed
            raise
        finally:
            browser.close()
