"""Report sections: a heading and its parts, skipped whole when every part is empty; notes instead of widgets.

A static report (papermill run by :func:`sbqueue.workbench.reports.run`, which sets ``SBQUEUE_REPORT=1`` in the
kernel's environment) cannot show an ipywidget: :func:`widget_or_note` shows a note saying where to use it instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pandas as pd

from sbqueue.workbench.render.html import Html, esc
from sbqueue.workbench.render.tables import table

#: set (to "1") in a report kernel's environment by reports.run: no interactive front end is attached
REPORT_ENV = "SBQUEUE_REPORT"


def interactive() -> bool:
    """False in a static report run (``SBQUEUE_REPORT=1``), True in JupyterLab / a live kernel."""
    return os.environ.get(REPORT_ENV, "") not in ("1", "true", "yes")


def is_empty(part: Any) -> bool:
    """None, an empty frame/series/list/string, or an :class:`Html` marked empty."""
    if part is None:
        return True
    if isinstance(part, Html):
        return part.empty
    if isinstance(part, (pd.DataFrame, pd.Series)):
        return part.empty
    if isinstance(part, (str, list, tuple)):
        return not part
    return False


def _display(obj: Any) -> None:
    from IPython.display import display  # the workbench's notebook dependency, imported where it is used

    display(obj)


def section(title: str, *parts: Any, intro: str | None = None, level: int = 2, always: bool = False) -> None:
    """Display ``title`` (a heading), ``intro`` and each non-empty part (frames through :func:`table`); display
    nothing at all when every part is empty — unless ``always`` (then an empty table reads "none", for evidence
    such as "no worker is connected"). Returns None, so a cell ending in a section displays nothing more."""
    shown = [p for p in parts if not is_empty(p)]
    if always and not shown:
        shown = [p for p in parts if p is not None][:1]
    if not shown:
        return
    head = f"<h{level}>{esc(title)}</h{level}>" + (f"<p>{esc(intro)}</p>" if intro else "")
    _display(Html(head, title))
    for part in shown:
        _display(table(part) if isinstance(part, (pd.DataFrame, pd.Series)) else part)


def note(text: str) -> Html:
    """A grey note (e.g. where a widget would be in a live notebook)."""
    return Html(f"<div class='sbq-note'>{esc(text)}</div>", text)


def widget_or_note(make: Callable[[], Any], what: str) -> Any:
    """``make()`` (an ipywidget) in a live notebook; in a static report a note naming ``what`` and where to use it."""
    if interactive():
        return make()
    return note(f"{what} is interactive: open this runbook in JupyterLab (`sbqueue lab`) to use it; "
                "this static report cannot show it.")  # fmt: skip
