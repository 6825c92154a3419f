"""The teaching notebooks run top to bottom (nbval-lax, in-cell asserts); the quickstart also under strict
nbval: executed once for reference outputs, then re-run and compared (sanitized)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.notebook


def nbval(args: list[str], redis_url: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SBQUEUE_REDIS_URL": redis_url}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "addopts=", "-o", "filterwarnings=",
           "-o", "timeout=300", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_all_notebooks_run_nbval_lax(redis_url: str) -> None:
    notebooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == 8
    res = nbval(["--nbval-lax", *notebooks], redis_url)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout, res.stdout[-2000:]


def test_quickstart_strict_nbval(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBQUEUE_REDIS_URL", redis_url)
    reference = tmp_path / "01-quickstart.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "01-quickstart.ipynb"), str(reference), progress_bar=False,
                               kernel_name="python3")  # fmt: skip
    res = nbval(["--nbval", str(reference), "--nbval-sanitize-with", str(HERE / "nbval-sanitize.cfg")], redis_url)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
