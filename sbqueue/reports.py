"""Run runbooks with papermill and render them to HTML (the executed notebook is the incident record)."""

from __future__ import annotations

import contextlib
import html
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .connection import mask_url
from .errors import ConfigurationError, InvalidOptionError

#: where the runbooks live: next to the package in a checkout
RUNBOOK_DIR = Path(__file__).resolve().parent.parent / "runbooks"


def find_runbook(name: str) -> Path:
    """``stuck-jobs``, ``stuck-jobs.ipynb`` or a path -> the notebook file."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path
    candidate = RUNBOOK_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in RUNBOOK_DIR.glob("*.ipynb"))) or "none found"
        raise InvalidOptionError(f"unknown runbook {name!r}; known: {known}", option="runbook")
    return candidate


def parameters(runbook: str) -> dict[str, Any]:
    """The runbook's parameters (name -> default source text), from its tagged cell."""
    import papermill

    return {k: v["default"] for k, v in papermill.inspect_notebook(str(find_runbook(runbook))).items()}


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
        with _kernel_env("SBQUEUE_REDIS_URL", secret_url):
            papermill.execute_notebook(str(source), str(out), parameters=params, progress_bar=False,
                                       execution_timeout=timeout, kernel_name="python3",
                                       cwd=str(out.parent))  # fmt: skip
    except papermill.PapermillExecutionError as exc:
        if html_path:
            to_html(out, html_path)
        raise ConfigurationError(
            f"runbook {source.stem} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        ) from None
    if html_path:
        to_html(out, html_path)
    return out


_ENV_LOCK = threading.Lock()


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
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def write_index(entries: list[dict[str, str]], path: str | Path) -> Path:
    """``reports/index.html``: one row per report (title, what was planted, verdict, link)."""
    rows = "\n".join(
        f"<tr><td><a href='{html.escape(e['href'])}'>{html.escape(e['title'])}</a></td>"
        f"<td>{html.escape(e.get('planted', ''))}</td><td><pre>{html.escape(e.get('verdict', ''))}</pre></td></tr>"
        for e in entries
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>sbqueue reports</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border-bottom:1px solid #ddd;padding:.5em;"
        "vertical-align:top;text-align:left}pre{white-space:pre-wrap;margin:0}</style></head><body>"
        f"<h1>sbqueue incident reports</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</p>"
        f"<table><tr><th>report</th><th>planted incident</th><th>verdict</th></tr>{rows}</table></body></html>"
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def verdict_of(notebook: str | Path) -> str:
    """The text the notebook's last code cell printed (the runbook's verdict)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in reversed(nb.cells):
        if cell.cell_type == "code" and cell.get("outputs"):
            return "".join(o.get("text", "") for o in cell["outputs"] if o.get("output_type") == "stream").strip()
    return ""
