"""The reports folder: timestamped report paths (a run never overwrites an earlier one) and ``index.html``.

The index lists, per runbook, the newest successful report with a status badge, its time and cause (from the
report's verdict banner) and notes a newer failed run; failed runs are kept as ``...-failed.html``.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from sbqueue.workbench.render import COLOURS, METADATA_KEY
from sbqueue.workbench.render.html import NEUTRAL
from sbqueue.workbench.runbook.finding import OUTCOMES


def write_index(entries: list[dict[str, str]], path: str | Path) -> Path:
    """``reports/index.html``: one row per report — status badge, report link, time, cause, what a human must do,
    what was planted and the full verdict (folded). Entries: ``title``, ``href`` and optionally ``outcome``,
    ``cause``, ``todo``, ``time``, ``planted``, ``verdict``; a missing outcome or cause is read from the
    verdict's first line."""
    rows = []
    for e in entries:
        verdict = e.get("verdict", "")
        first = verdict.splitlines()[0] if verdict else ""
        outcome = e.get("outcome") or next((w for w in (*OUTCOMES, "REPORT") if first.startswith(w + ":")), "")
        if not outcome and "failed" in first.lower():
            outcome = "FAILED"
        cause = e.get("cause") or first.removeprefix(f"{outcome}:").strip()
        colour = COLOURS.get(outcome, NEUTRAL)[0]
        status = (f"<span class='badge' style='background:{colour}'>{html.escape(outcome or '?')}</span>")
        planted = f"<div class='planted'>planted: {html.escape(e['planted'])}</div>" if e.get("planted") else ""
        rows.append(
            f"<tr><td>{status}</td><td><a href='{html.escape(e['href'])}'>{html.escape(e['title'])}</a>{planted}</td>"
            f"<td class='time'>{html.escape(e.get('time', ''))}</td><td>{html.escape(cause)}"
            f"<details><summary>verdict</summary><pre>{html.escape(verdict)}</pre></details></td>"
            f"<td>{html.escape(e.get('todo', ''))}</td></tr>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>sbqueue reports</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}td,th{border-bottom:1px solid #ddd;padding:.5em;"
        "vertical-align:top;text-align:left}pre{white-space:pre-wrap;margin:0}.time{white-space:nowrap}"
        ".badge{color:#fff;font-weight:700;padding:.15em .5em;border-radius:4px;white-space:nowrap}"
        ".planted{color:#555;font-size:.85em;margin-top:.3em}summary{color:#555;font-size:.85em;cursor:pointer}"
        "</style></head><body>"
        f"<h1>sbqueue incident reports</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. "
        "OK: nothing wrong · FIXED: fixed and verified · ACTION NEEDED: a human must act (see the cause) · "
        "NOT FOUND: no such queue or prefix.</p>"
        "<table><tr><th>status</th><th>report</th><th>time</th><th>cause</th><th>what a human must do</th></tr>"
        f"{''.join(rows)}</table></body></html>"
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


_STAMPED = re.compile(r"^(?P<stem>.+)-(?P<ts>[0-9]{8}-[0-9]{6})(?P<failed>-failed)?\.html$")


def timestamped(stem: str, directory: str | Path = "reports") -> tuple[Path, Path]:
    """New report paths ``DIR/STEM-YYYYmmdd-HHMMSS.ipynb`` and ``.html``: a run never overwrites an earlier one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(directory)
    n = 1
    base = f"{stem}-{stamp}"
    while (folder / f"{base}.ipynb").exists() or (folder / f"{base}.html").exists():
        n += 1  # two runs within one second: wait it out rather than overwrite
        time.sleep(1.0)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stem}-{stamp}"
    return folder / f"{base}.ipynb", folder / f"{base}.html"


def update_index(directory: str | Path = "reports") -> Path:
    """Rewrite ``DIR/index.html``: for each runbook the newest successful report (its verdict and link), and a
    note with a link when a newer run failed. Failed runs are kept as ``...-failed.html``, never over a good one."""
    folder = Path(directory)
    good: dict[str, tuple[str, Path]] = {}
    failed: dict[str, tuple[str, Path]] = {}
    for page in folder.glob("*.html"):
        m = _STAMPED.match(page.name)
        if not m:
            continue
        into = failed if m["failed"] else good
        if m["stem"] not in into or into[m["stem"]][0] < m["ts"]:
            into[m["stem"]] = (m["ts"], page)
    entries = []
    for stem in sorted(set(good) | set(failed)):
        ts, page = good.get(stem, ("", Path()))
        note = ""
        if stem in failed and failed[stem][0] > ts:
            note = f"newest run FAILED at {failed[stem][0]}: {failed[stem][1].name}"
        if not ts:
            ts, page = failed[stem]
        notebook = page.with_suffix(".ipynb")
        info = summary_of(notebook) if notebook.exists() and "-failed" not in page.name else {}
        failed_run = "-failed" in page.name
        entries.append({"title": stem, "href": page.name, "planted": note, "time": _when(ts),
                        "outcome": "FAILED" if failed_run else info.get("outcome", ""),
                        "cause": "the run failed: see the report" if failed_run else info.get("cause", ""),
                        "todo": "" if failed_run else info.get("todo", ""),
                        "verdict": info.get("verdict", "")})  # fmt: skip
    return write_index(entries, folder / "index.html")


def _when(stamp: str) -> str:
    """``20261205-140307`` (local time of the run) as ``2026-12-05 14:03:07``."""
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}" if stamp else ""


def summary_of(notebook: str | Path) -> dict[str, str]:
    """``outcome``, ``cause``, ``todo`` (what a human must do) and ``verdict`` of an executed runbook: from its
    verdict banner's output metadata, else (a notebook without a banner) the text its last code cell printed."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            meta = out.get("metadata", {}).get(METADATA_KEY)
            shown = out.get("output_type") in ("display_data", "execute_result")
            if shown and isinstance(meta, dict) and "verdict" in meta:
                return {k: str(meta.get(k, "")) for k in ("outcome", "cause", "todo", "verdict")}
    for cell in reversed(nb.cells):
        if cell.cell_type == "code" and cell.get("outputs"):
            text = "".join(o.get("text", "") for o in cell["outputs"] if o.get("output_type") == "stream").strip()
            return {"outcome": "", "cause": "", "todo": "", "verdict": text}
    return {"outcome": "", "cause": "", "todo": "", "verdict": ""}


def verdict_of(notebook: str | Path) -> str:
    """The runbook's plain-text verdict (first line: the outcome word): its banner's, else what its last code
    cell printed."""
    return summary_of(notebook)["verdict"]
