"""Build the committed runbooks and notebooks (.ipynb, outputs stripped) from their jupytext percent-format sources.

    python tools/build_notebooks.py          # (re)write every .ipynb from its source
    python tools/build_notebooks.py --check  # exit 1 if a committed .ipynb differs from its source (a test runs this)

Where the sources are, and why there:

    runbooks/src/NAME.py   ->  sbqueue/workbench/runbooks/NAME.ipynb   (package data: the wheel ships them and
                                                                         ``sbqueue report NAME`` runs them)
    notebooks/src/NAME.py  ->  notebooks/NAME.ipynb                     (the tutorials, in the repository only)

The sources are plain Python in jupytext's percent format (``# %%`` starts a code cell, ``# %% [markdown]`` a
markdown cell whose lines are comments, ``# %% tags=["parameters"]`` the cell papermill injects parameters after),
so they are reviewed as code and linted by ruff with the package (``make lint``). They stay outside ``sbqueue/``: a
``.py`` under the package would be shipped in the wheel as an importable module (and scanned by
tests/test_layers.py as one). The .ipynb files are what users open and what papermill runs; they are written here
with a fixed notebook metadata, cell ids ``cell-NN`` and no cell metadata but tags, so rebuilding an unchanged source
gives byte-identical JSON and a review diff shows only real changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> folder of the built notebooks (relative to the repository root)
SOURCES = {"runbooks/src": "sbqueue/workbench/runbooks", "notebooks/src": "notebooks"}
#: the one notebook metadata every built notebook has (jupytext's own metadata is not kept)
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
#: cell metadata kept from a source: papermill finds the parameters cell by its tag
CELL_METADATA = ("tags",)


def sources() -> dict[Path, Path]:
    """Every source file and the .ipynb it builds, sorted by source path."""
    return {src: ROOT / dest / f"{src.stem}.ipynb"
            for folder, dest in SOURCES.items() for src in sorted((ROOT / folder).glob("*.py"))}  # fmt: skip


def build(source: Path) -> nbformat.NotebookNode:
    """The stripped notebook of one percent-format source."""
    nb = jupytext.read(source, fmt="py:percent")
    nb.metadata = nbformat.from_dict(METADATA)
    for i, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in CELL_METADATA})
        cell["id"] = f"cell-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    return nb


def render(source: Path) -> str:
    """The .ipynb text of one source, exactly as committed."""
    return json.dumps(build(source), indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    built = sources()
    if not built:
        print(f"no notebook sources found under {', '.join(SOURCES)}")
        return 1
    stale = []
    for source, target in built.items():
        text = render(source)
        if check:
            if not target.exists() or target.read_text() != text:
                stale.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    # a committed notebook without a source would never be rebuilt (e.g. a source renamed without its .ipynb)
    orphans = sorted({*(p for dest in SOURCES.values() for p in (ROOT / dest).glob("*.ipynb"))} - {*built.values()})
    for target in stale:
        print(f"stale: {target.relative_to(ROOT)} (run python tools/build_notebooks.py)")
    for target in orphans:
        print(f"no source for {target.relative_to(ROOT)} (add it under {', '.join(SOURCES)} or delete it)")
    return 1 if stale or orphans else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
