"""Where the runbooks are: the ones installed with the package (by name), an edited copy (by path), copies.

The installed runbooks are package data (``sbqueue/workbench/runbooks/*.ipynb``, shipped in the wheel); a name
finds one of them, a path finds an edited copy (:func:`copy_runbooks` makes those). Everything else in
:mod:`sbqueue.workbench.reports` finds its notebook through :func:`find_runbook`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from sbqueue.errors import InvalidOptionError

_SUFFIX = ".ipynb"
#: installed runbooks that had to be extracted to real files (a package imported from a zip archive)
_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def _as_path(entry: Any) -> Path:
    if isinstance(entry, Path):  # every ordinary install (wheel, editable, checkout)
        return entry
    return Path(_EXTRACTED.enter_context(resources.as_file(entry)))  # pragma: no cover - zip imports only


def runbook_dir() -> Path:
    """The folder of the runbooks installed with the package (package data ``sbqueue/workbench/runbooks``)."""
    return _as_path(resources.files("sbqueue").joinpath("workbench", "runbooks"))


#: where the installed runbooks live (package data, shipped in the wheel)
RUNBOOK_DIR = runbook_dir()


def installed_runbooks() -> dict[str, Path]:
    """The runbooks shipped with the package: name (``stuck-jobs``) -> notebook file, sorted by name."""
    root = resources.files("sbqueue").joinpath("workbench", "runbooks")
    found = {e.name[: -len(_SUFFIX)]: e for e in root.iterdir() if e.name.endswith(_SUFFIX) and e.is_file()}
    return {name: _as_path(found[name]) for name in sorted(found)}


def title_of(notebook: str | Path) -> str:
    """The first heading of the notebook's first markdown cell (``Runbook: stalled jobs``), else ``""``."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            first = source.strip().splitlines()[0] if source.strip() else ""
            return first.lstrip("#").strip()
    return ""


def find_runbook(name: str) -> Path:
    """A runbook by name (``stuck-jobs`` or ``stuck-jobs.ipynb``: the installed one) or by path to a ``.ipynb``
    file (an edited copy, see :func:`copy_runbooks`). An existing file path wins over an installed name."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidOptionError(f"runbook must be a name or a path to a .ipynb file, got {name!r}", option="runbook")
    path = Path(name)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # e.g. an embedded NUL byte, a name too long for the file system
        is_file = False
    if is_file and path.suffix == _SUFFIX:
        return path
    installed = installed_runbooks()
    if "/" in name or os.sep in name or is_file:  # a path: never looked up among the installed ones
        what = "a .ipynb notebook" if is_file else "no such file"
        raise InvalidOptionError(f"runbook {name!r}: {what}; installed runbooks: {', '.join(installed)}",
                                 option="runbook")  # fmt: skip
    found = installed.get(name.removesuffix(_SUFFIX))
    if found is None:
        known = ", ".join(installed) or "none found"
        raise InvalidOptionError(f"unknown runbook {name!r}; known: {known} (or give a path to a .ipynb file)",
                                 option="runbook")  # fmt: skip
    return found


def copy_runbooks(directory: str | Path, names: Iterable[str] | None = None, *, overwrite: bool = False) -> list[Path]:
    """Copy the installed runbooks (all, or ``names``) into ``directory`` as editable notebooks; return the new
    files. Refuses, writing nothing, when a target exists and ``overwrite`` is False, or a name is unknown.
    Run an edited copy with ``sbqueue report DIR/NAME.ipynb`` or :func:`run`."""
    installed = installed_runbooks()
    wanted = list(installed) if names is None else [str(n).removesuffix(_SUFFIX) for n in names]
    unknown = [n for n in wanted if n not in installed]
    if unknown:
        raise InvalidOptionError(f"unknown runbook(s) {unknown}; known: {', '.join(installed)}", option="names")
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise InvalidOptionError(f"{str(target)!r} exists and is not a directory", option="directory")
    existing = [str(target / f"{n}{_SUFFIX}") for n in wanted if (target / f"{n}{_SUFFIX}").exists()]
    if existing and not overwrite:
        raise InvalidOptionError(f"would overwrite {', '.join(existing)} (pass overwrite=True / --force)",
                                 option="overwrite")  # fmt: skip
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in wanted:
        dest = target / f"{name}{_SUFFIX}"
        shutil.copyfile(installed[name], dest)
        written.append(dest)
    return written
