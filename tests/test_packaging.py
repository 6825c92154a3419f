"""Runbooks as package data (found through importlib.resources, never a path next to the checkout), ``sbqueue
runbooks list/copy``, ``sbqueue report`` by name or path, and the packaging files. The built wheel itself is
tested in tests/wheel/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import sbqueue
from sbqueue import cli, reports

ROOT = Path(__file__).resolve().parent.parent


def _generated_runbooks() -> list[str]:
    """The runbooks built from a source in runbooks/src/ (their one source, see tools/build_notebooks.py), by name."""
    return sorted(path.stem for path in (ROOT / "runbooks" / "src").glob("*.py"))


#: every runbook the package must ship
RUNBOOKS = _generated_runbooks()


def test_runbooks_are_package_data() -> None:
    assert {"stuck-jobs", "stalled-jobs", "failed-jobs", "redis-memory", "redis-health", "queue-report"} <= {*RUNBOOKS}
    installed = reports.installed_runbooks()
    assert list(installed) == RUNBOOKS
    assert reports.runbook_dir() == Path(sbqueue.__file__).parent / "workbench" / "runbooks" == reports.RUNBOOK_DIR
    assert all(path.parent == reports.runbook_dir() for path in installed.values())
    assert reports.title_of(installed["stalled-jobs"]) == "Runbook: stalled jobs"
    # one source of truth: the top-level runbooks/ folder only points to the package's
    assert not list((ROOT / "runbooks").glob("*.ipynb"))
    assert "sbqueue/workbench/runbooks" in (ROOT / "runbooks" / "README.md").read_text()


def test_find_runbook_by_name_or_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert reports.find_runbook("stuck-jobs") == reports.runbook_dir() / "stuck-jobs.ipynb"
    assert reports.find_runbook("stuck-jobs.ipynb") == reports.runbook_dir() / "stuck-jobs.ipynb"
    (copy,) = reports.copy_runbooks(tmp_path / "ours", ["stuck-jobs"])
    assert reports.find_runbook(str(copy)) == copy
    assert reports.find_runbook("ours/stuck-jobs.ipynb") == Path("ours/stuck-jobs.ipynb")
    (tmp_path / "stuck-jobs.ipynb").write_text(copy.read_text())
    assert reports.find_runbook("stuck-jobs.ipynb") == Path("stuck-jobs.ipynb")  # an existing file wins
    (tmp_path / "notes.txt").write_text("x")
    for bad, message in [("nope", "unknown runbook 'nope'"), ("ours/nope.ipynb", "no such file"),
                         ("../runbooks/stuck-jobs", "no such file"), ("notes.txt", "a .ipynb notebook"),
                         ("", "a name or a path"), ("a\x00b.ipynb", "unknown runbook"),
                         ("ours", "unknown runbook")]:  # fmt: skip
        with pytest.raises(sbqueue.InvalidOptionError, match=message):
            reports.find_runbook(bad)


def test_copy_runbooks_never_overwrites_unless_asked(tmp_path: Path) -> None:
    written = reports.copy_runbooks(tmp_path / "team")
    assert [p.stem for p in written] == RUNBOOKS
    assert all(p.read_bytes() == (reports.runbook_dir() / p.name).read_bytes() for p in written)
    edited = tmp_path / "team" / "stuck-jobs.ipynb"
    edited.write_text("{}")
    with pytest.raises(sbqueue.InvalidOptionError, match="would overwrite"):
        reports.copy_runbooks(tmp_path / "team")
    assert edited.read_text() == "{}"  # refused whole: nothing written
    with pytest.raises(sbqueue.InvalidOptionError, match="unknown runbook"):
        reports.copy_runbooks(tmp_path / "other", ["stuck-jobs", "nope"])
    assert not (tmp_path / "other").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(sbqueue.InvalidOptionError, match="not a directory"):
        reports.copy_runbooks(tmp_path / "file")
    assert reports.copy_runbooks(tmp_path / "team", ["stuck-jobs.ipynb"], overwrite=True) == [edited]
    assert json.loads(edited.read_text())["cells"]


def test_cli_runbooks_list_and_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["runbooks", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == RUNBOOKS
    assert ["failed-jobs", "Runbook: failed jobs"] in [line.split(None, 1) for line in lines]
    assert str(reports.runbook_dir()) in lines[-1]
    assert cli.main(["runbooks", "copy", str(tmp_path), "stalled-jobs", "failed-jobs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [str(tmp_path / "stalled-jobs.ipynb"), str(tmp_path / "failed-jobs.ipynb")]
    assert cli.main(["runbooks", "copy", str(tmp_path), "stalled-jobs"]) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert cli.main(["runbooks", "copy", str(tmp_path), "stalled-jobs", "--force"]) == 0


def test_worker_cli_imports_processors_from_the_current_folder(tmp_path: Path) -> None:
    """The ``sbqueue`` console script does not put the current folder on sys.path; ``sbqueue worker`` does, as
    ``python -m`` would, so ``sbqueue worker q myapp.tasks:send`` finds the user's module."""
    (tmp_path / "mytasks_cwd.py").write_text("def send(job):\n    return 1\n")
    code = ("import os, sys; sys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())]; "
            "from sbqueue.cli.worker import load_processor; print(load_processor('mytasks_cwd:send').__module__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "mytasks_cwd", res.stderr


def test_packaging_metadata_in_one_place() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    meta = project["project"]
    assert meta["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sbqueue._version.__version__"}
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert meta["requires-python"] == ">=3.10" and meta["urls"]
    dev = " ".join(meta["optional-dependencies"]["dev"])
    assert "build" in dev and "twine" in dev
    pins = {line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line}  # fmt: skip
    assert {"build", "twine"} <= pins
    data = project["tool"]["setuptools"]["package-data"]["sbqueue"]
    assert "workbench/runbooks/*.ipynb" in data and "engine/lua/includes/*.lua" in data
