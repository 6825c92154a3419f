"""Write runbooks/*.ipynb and notebooks/*.ipynb from the cell sources below (outputs stripped).

    python tools/build_notebooks.py          # (re)write them
    python tools/build_notebooks.py --check  # exit 1 if a committed notebook differs (a test runs this)

Keeping the sources here makes notebooks reviewable as code; the .ipynb files are what users open.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_sources import NOTEBOOKS

ROOT = Path(__file__).resolve().parent.parent


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"cell-{i:02d}"
        nb.cells.append(cell)
    return nb


def render(cells: list[tuple[str, str]]) -> str:
    return json.dumps(build(cells), indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for rel, cells in NOTEBOOKS.items():
        path = ROOT / rel
        text = render(cells)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel in stale:
        print(f"stale: {rel} (run python tools/build_notebooks.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
