"""`sbqueue lab`: a working folder of runbook and notebook copies (edited copies kept, --prefix written into the
runbooks' parameters cell), a clear error without JupyterLab, and a real JupyterLab server whose environment
carries the Redis URL for its kernels — never printed with its password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import papermill
import pytest

from sbqueue import cli, reports
from sbqueue.cli import lab
from sbqueue.connection.embedded import free_port

pytestmark = pytest.mark.notebook  # starts JupyterLab


def test_prepare_copies_and_keeps_edits(tmp_path: Path) -> None:
    work = tmp_path / "lab"
    lines = lab.prepare(work, None)
    runbooks = sorted(p.stem for p in (work / "runbooks").glob("*.ipynb"))
    assert runbooks == sorted(reports.installed_runbooks())
    assert lines[0].endswith(f"({len(runbooks)} copied, 0 existing kept)")
    assert sorted((work / "notebooks").glob("*.ipynb")), "a clone's tutorial notebooks are copied too"
    edited = work / "runbooks" / "stuck-jobs.ipynb"
    edited.write_text(edited.read_text().replace("## About this runbook", "## About this runbook (our notes)"))
    (work / "runbooks" / "failed-jobs.ipynb").unlink()
    lines = lab.prepare(work, "myapp")
    assert lines[0].endswith(f"(1 copied, {len(runbooks) - 1} existing kept)")
    assert "## About this runbook (our notes)" in edited.read_text()  # an edited copy is never replaced
    assert "prefix 'myapp' set in the parameters cell" in lines[1]
    for path in (work / "runbooks").glob("*.ipynb"):
        found = papermill.inspect_notebook(str(path))
        assert found["prefix"]["default"] == "'myapp'", path.name
        assert found["prefix"]["help"].startswith("key prefix"), "the parameter's comment is kept"
    assert len(lab.prepare(work, "myapp")) == 2, "nothing to change the second time"
    quickstart = json.loads((work / "notebooks" / "01-quickstart.ipynb").read_text())
    assert "nb-quickstart" in "".join(quickstart["cells"][1]["source"]), "tutorials keep their own prefixes"


def test_without_jupyterlab_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    real = lab.importlib.util.find_spec
    monkeypatch.setattr(lab.importlib.util, "find_spec", lambda name, *a: None if name == "jupyterlab" else real(name))
    assert cli.main(["lab", "--dir", str(tmp_path / "lab"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert "JupyterLab" in err and "pip install 'sbqueue[notebook]'" in err
    assert not (tmp_path / "lab").exists()


@pytest.mark.timeout(60)
def test_lab_serves_the_copies_with_the_url_in_the_environment(tmp_path: Path, redis_url: str) -> None:
    # a password in the URL (the test server's default user takes any: nopass) must reach the kernels, never the log
    url = redis_url if "@" in redis_url else redis_url.replace("://", "://default:s3cret-pw@", 1)
    password = urllib.parse.urlsplit(url).password
    assert password
    work, port, token = tmp_path / "work", free_port(), "test-token"
    env = {**{k: v for k, v in os.environ.items() if k not in ("SBQUEUE_REDIS_URL", "REDIS_URL")},
           "JUPYTER_TOKEN": token, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
           "IPYTHONDIR": str(tmp_path / "ipython")}  # fmt: skip
    log = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "sbqueue", "lab", "--no-browser", "--port", str(port), "--dir", str(work),
           "--url", url, "--prefix", "labtest"]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status",
                                                 headers={"Authorization": f"token {token}"})  # fmt: skip
                with urllib.request.urlopen(request, timeout=2) as resp:
                    assert json.load(resp)["kernels"] == 0
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, f"JupyterLab did not start:\n{log.read_text()}"
            time.sleep(0.3)
        # sbqueue lab became the server (exec): its environment is what every kernel inherits
        environ = dict(line.split("=", 1) for line in
                       Path(f"/proc/{proc.pid}/environ").read_text().split("\0") if "=" in line)  # fmt: skip
        assert environ["SBQUEUE_REDIS_URL"] == url
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/api/contents/runbooks?content=1",
                headers={"Authorization": f"token {token}"}), timeout=5) as resp:  # fmt: skip
            served = sorted(item["name"] for item in json.load(resp)["content"])
        assert served == sorted(f"{name}.ipynb" for name in reports.installed_runbooks())
        assert (work / "notebooks" / "01-quickstart.ipynb").exists()
        copied = papermill.inspect_notebook(str(work / "runbooks" / "stuck-jobs.ipynb"))
        assert copied["prefix"]["default"] == "'labtest'"
    finally:
        proc.send_signal(signal.SIGTERM)  # Jupyter's own handler stops the server (and any kernel) cleanly
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    text = log.read_text()
    assert "received signal 15, stopping" in text
    assert "Redis: " in text and "starting JupyterLab" in text
    assert password not in text and ":***@" in text
