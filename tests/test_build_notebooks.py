"""tools/build_notebooks.py: a jupytext percent source becomes a stripped .ipynb with the papermill parameters tag,
and ``--check`` fails on a notebook that drifted from its source or has none. (tests/test_runbooks.py runs
``--check`` on the repository's own notebooks.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''# %% [markdown]
# # Runbook: example
#
# Two lines of
# markdown.

# %% tags=["parameters"]
queue = None  # the queue

# %%
import sbqueue

sbqueue.__name__
'''


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "tools" / "build_notebooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    tool = _tool()
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    source = tmp_path / "runbooks" / "src" / "example.py"
    source.parent.mkdir(parents=True)
    source.write_text(SOURCE)
    target = tmp_path / "sbqueue" / "workbench" / "runbooks" / "example.ipynb"
    assert tool.main(["--check"]) == 1 and "stale: sbqueue/workbench/runbooks/example.ipynb" in capsys.readouterr().out
    assert tool.main([]) == 0
    nb = json.loads(target.read_text())
    assert nb["metadata"] == tool.METADATA  # no jupytext metadata in the committed notebook
    assert [(c["cell_type"], c["id"], c["metadata"]) for c in nb["cells"]] == [
        ("markdown", "cell-00", {}), ("code", "cell-01", {"tags": ["parameters"]}), ("code", "cell-02", {})]
    assert [c["source"] for c in nb["cells"]] == [
        "# Runbook: example\n\nTwo lines of\nmarkdown.", "queue = None  # the queue",
        "import sbqueue\n\nsbqueue.__name__"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in nb["cells"] if c["cell_type"] == "code")
    assert tool.main(["--check"]) == 0

    source.write_text(SOURCE.replace("the queue", "the queue to look at"))  # the source changed, not the notebook
    assert tool.main(["--check"]) == 1 and "stale:" in capsys.readouterr().out
    assert tool.main([]) == 0 and tool.main(["--check"]) == 0

    orphan = tmp_path / "notebooks" / "99-orphan.ipynb"  # a notebook nothing builds any more
    orphan.parent.mkdir()
    orphan.write_text(target.read_text())
    assert tool.main(["--check"]) == 1 and "no source for notebooks/99-orphan.ipynb" in capsys.readouterr().out
