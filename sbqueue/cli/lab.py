"""``sbqueue lab``: JupyterLab on a working folder of runbook and notebook copies, already connected to Redis.

It prepares the folder (copies of the installed runbooks in ``runbooks/``, of the repository's tutorial notebooks in
``notebooks/`` when sbqueue runs from a clone; existing copies, maybe edited, are kept), resolves the connection
(``--url``, else SBQUEUE_REDIS_URL / REDIS_URL, else the embedded server, started if needed) and then becomes the
JupyterLab server with ``SBQUEUE_REDIS_URL`` in its environment, which every kernel inherits: the notebooks'
``redis_url = None`` finds the server and no URL or password is written into a notebook or printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

from sbqueue.connection import connect, embedded, mask_url, url_of
from sbqueue.errors import ConfigurationError
from sbqueue.workbench import reports

#: the tutorial notebooks are not package data: they are found only beside the package of a clone (editable install)
CLONE = Path(__file__).resolve().parents[2]  # sbqueue/cli/lab.py -> the clone (or site-packages, when installed)
TUTORIALS = CLONE / "notebooks" if (CLONE / "pyproject.toml").is_file() else None
#: the line of a runbook's parameters cell that --prefix sets
PREFIX_LINE = re.compile(r"^prefix = .*?(?=  #|$)", re.MULTILINE)


def _check_jupyterlab() -> None:
    if importlib.util.find_spec("jupyterlab") is None:
        raise ConfigurationError("sbqueue lab needs JupyterLab, which is not installed: "
                                 "pip install 'sbqueue[notebook]' (the notebook extra)")  # fmt: skip


def _copy_missing(names: list[str], source: dict[str, Path], folder: Path) -> tuple[list[Path], int]:
    """Copy the ``source`` notebooks not yet in ``folder``; return the new files and how many were kept."""
    folder.mkdir(parents=True, exist_ok=True)
    new = [n for n in names if not (folder / f"{n}.ipynb").exists()]
    for name in new:
        shutil.copyfile(source[name], folder / f"{name}.ipynb")
    return [folder / f"{n}.ipynb" for n in new], len(names) - len(new)


def set_prefix(notebook: Path, prefix: str) -> bool:
    """Set ``prefix = ...`` in the notebook's parameters cell (its comment kept); True if the file changed."""
    nb = json.loads(notebook.read_text())
    changed = False
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            updated = PREFIX_LINE.sub(lambda _: f"prefix = {prefix!r}", source, count=1)
            changed, cell["source"] = updated != source, updated
    if changed:
        notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return changed


def prepare(directory: Path, prefix: str | None) -> list[str]:
    """Fill ``directory`` with runbook (and, from a clone, notebook) copies; return what to tell the user."""
    lines = []
    runbooks = reports.installed_runbooks()
    new, kept = _copy_missing(list(runbooks), runbooks, directory / "runbooks")
    lines.append(f"runbooks: {directory / 'runbooks'} ({len(new)} copied, {kept} existing kept)")
    if prefix is not None:
        changed = [p.name for p in sorted((directory / "runbooks").glob("*.ipynb")) if set_prefix(p, prefix)]
        if changed:
            lines.append(f"prefix {prefix!r} set in the parameters cell of: {', '.join(changed)}")
    tutorials = {p.stem: p for p in sorted(TUTORIALS.glob("*.ipynb"))} if TUTORIALS else {}
    if tutorials:
        new, kept = _copy_missing(list(tutorials), tutorials, directory / "notebooks")
        lines.append(f"notebooks: {directory / 'notebooks'} ({len(new)} copied, {kept} existing kept)")
    else:  # an installed wheel: the tutorials live in the repository only
        lines.append("notebooks: not installed with the package (they are in the repository's notebooks/ folder)")
    return lines


def lab_command(args: argparse.Namespace) -> list[str]:
    """The JupyterLab command line for ``args``."""
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={args.dir}", f"--ServerApp.port={args.port}"]
    if args.no_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root; Jupyter refuses it otherwise
        command.append("--allow-root")
    return command


def run_lab_cli(args: argparse.Namespace) -> int:
    _check_jupyterlab()
    directory = Path(args.dir).resolve()
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"--dir {str(directory)!r} exists and is not a directory")
    client = connect(args.url)  # fails here, with the CLI flag named, if Redis is unreachable
    url = url_of(client)
    stop = " (the embedded Redis keeps running: sbqueue server stop)" if embedded.started_by_sbqueue(client) else ""
    client.close()
    for line in prepare(directory, args.prefix):
        print(line)
    print(f"Redis: {mask_url(url)} (kernels get it as SBQUEUE_REDIS_URL; leave redis_url = None)")
    print(f"starting JupyterLab; stop it with Ctrl-C{stop}", flush=True)
    args.dir = str(directory)
    env = {**os.environ, "SBQUEUE_REDIS_URL": url}
    # become the server: Ctrl-C and SIGTERM reach JupyterLab itself, which stops its kernels cleanly
    os.execve(sys.executable, lab_command(args), env)
    return 0  # not reached
