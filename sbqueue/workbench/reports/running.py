"""Running a runbook: execute the notebook with papermill, then render it as HTML without its input cells.

The executed notebook is the incident record. A Redis URL with credentials never lands in it: it reaches the
kernel through the environment (``SBQUEUE_REDIS_URL``) instead of the parameters cell.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sbqueue.connection import mask_url
from sbqueue.errors import ConfigurationError, InvalidOptionError
from sbqueue.workbench.render import REPORT_ENV
from sbqueue.workbench.reports.locate import find_runbook
from sbqueue.workbench.reports.params import parameters

#: the kernel's own log is quiet: no "Kernel is running over TCP without encryption" warning in every report run,
#: no "KeyboardInterrupt caught" at shutdown (it listens on 127.0.0.1 only; cell errors still fail the run with
#: their traceback, through papermill)
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]


def run(
    runbook: str,
    params: Mapping[str, Any] | None = None,
    *,
    output: str | Path | None = None,
    html_path: str | Path | None = None,
    timeout: float = 600,
) -> Path:
    """Execute ``runbook`` with ``params``; write the executed notebook (and HTML without input cells)."""
    import papermill

    source = find_runbook(runbook)
    params = dict(params or {})
    known = parameters(str(source))
    unknown = set(params) - set(known)
    if unknown:
        raise InvalidOptionError(
            f"runbook {source.stem} has no parameter(s) {sorted(unknown, key=repr)}; it takes: {', '.join(known)}",
            option="params",
        )
    # papermill writes parameters into the executed notebook (a cell and its metadata): a URL with credentials
    # reaches the kernel through its environment instead, as SBQUEUE_REDIS_URL (the runbooks' fallback)
    secret_url = params.get("redis_url")
    if isinstance(secret_url, str) and mask_url(secret_url) != secret_url:
        del params["redis_url"]
    else:
        secret_url = None
    out = Path(output) if output else Path("reports") / f"{source.stem}-{time.strftime('%Y%m%d-%H%M%S')}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # SBQUEUE_REPORT=1: the notebook knows no one can click its widgets (it shows a note instead)
        with _kernel_env("SBQUEUE_REDIS_URL", secret_url), _kernel_env(REPORT_ENV, "1"):
            papermill.execute_notebook(str(source), str(out), parameters=params, progress_bar=False,
                                       execution_timeout=timeout, kernel_name="python3",
                                       cwd=str(out.parent), extra_arguments=KERNEL_ARGS)  # fmt: skip
    except papermill.PapermillExecutionError as exc:
        if html_path:
            to_html(out, html_path)
        raise ConfigurationError(
            f"runbook {source.stem} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        ) from None
    if html_path:
        to_html(out, html_path)
    return out


_ENV_LOCK = threading.RLock()  # re-entrant: two variables set in one with-statement


@contextlib.contextmanager
def _kernel_env(name: str, value: str | None) -> Iterator[None]:
    """Set ``name`` in this process's environment (which a new kernel inherits) while the block runs."""
    if value is None:
        yield
        return
    with _ENV_LOCK:
        old = os.environ.get(name)
        os.environ[name] = value
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def to_html(notebook: str | Path, path: str | Path) -> Path:
    """Render an executed notebook as HTML without its input cells."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    nb = nbformat.read(str(notebook), as_version=4)
    # code cells that printed nothing (parameters, setup, diagnose/apply/verify) would leave blank gaps: the
    # verdict banner is meant to sit right under the title
    nb.cells = [c for c in nb.cells if c.cell_type != "code" or c.get("outputs")]
    body, _ = exporter.from_notebook_node(nb)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target

