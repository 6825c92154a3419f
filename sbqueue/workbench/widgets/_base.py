"""Pieces shared by the panels: queue resolution, the confirm bar, status lines and small HTML helpers.

Widgets hold no Redis logic: they call :class:`sbqueue.Queue` methods for actions and read through
:mod:`sbqueue.workbench.widgets._data` (the Inspector when present) for their views.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import ipywidgets as w
import pandas as pd

from sbqueue.engine import audit
from sbqueue.engine._sync.queue import Queue

#: Ids listed in a confirmation before "… and N more".
SHOW_IDS = 20


def resolve_queue(queue: Any, connection: Any = None, prefix: str = "bull") -> Queue:
    """A :class:`sbqueue.Queue` from a Queue (returned as is) or a queue name plus connection/prefix."""
    if isinstance(queue, Queue):
        return queue
    if isinstance(queue, str):
        return Queue(queue, connection, prefix)
    raise TypeError(
        f"queue must be a sbqueue.Queue or a queue name, got {type(queue).__name__} "
        "(widgets drive the sync Queue; pass the name and connection instead of an AsyncQueue)"
    )


def missing(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(pd.api.types.is_scalar(value) and pd.isna(value))
    except (TypeError, ValueError):
        return False


def esc(value: Any) -> str:
    """HTML-escaped text of a value (missing values give "")."""
    return "" if missing(value) else html.escape(str(value))


def short(value: Any, width: int = 80) -> str:
    """One line of at most ``width`` characters (missing values give "")."""
    text = "" if missing(value) else " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def pretty(value: Any) -> str:
    """JSON (indented) for dicts/lists, ``str`` otherwise, HTML-escaped in a <pre>."""
    try:
        text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(value)
    return f"<pre style='margin:0;max-height:16em;overflow:auto'>{html.escape(text)}</pre>"


def ago(ts: Any, now: float | None = None) -> str:
    """'12 s ago' / '3 min ago' / 'in 5 min' for a datetime or epoch-ms value ("" when missing)."""
    if missing(ts):
        return ""
    try:
        seconds = ts.timestamp() if isinstance(ts, dt.datetime) else float(ts) / 1000.0
    except (TypeError, ValueError, OverflowError):
        return ""
    if seconds != seconds:  # NaT
        return ""
    delta = (now if now is not None else time.time()) - seconds
    future, delta = delta < 0, abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if delta >= size:
            text = f"{delta / size:.0f} {unit}"
            break
    else:
        text = f"{delta:.0f} s"
    return f"in {text}" if future else f"{text} ago"


def id_list(ids: Sequence[str], limit: int = SHOW_IDS) -> str:
    """``1, 2, 3 … and 40 more`` (escaped)."""
    shown = ", ".join(esc(i) for i in ids[:limit])
    return shown + (f" … and {len(ids) - limit} more" if len(ids) > limit else "")


def iter_widgets(root: Any, *, visible_only: bool = False) -> Iterator[Any]:
    """Every widget under ``root`` (depth first, following ``children``); with ``visible_only``, hidden
    widgets (``layout.display == "none"``) and everything inside them are skipped."""
    stack = [root]
    while stack:
        node = stack.pop()
        layout = getattr(node, "layout", None)
        if visible_only and layout is not None and layout.display == "none":
            continue
        yield node
        stack.extend(reversed(list(getattr(node, "children", ()) or ())))


def find_buttons(root: Any, label: str) -> list[w.Button]:
    """The visible buttons under ``root`` whose label is ``label`` (how people and tests find them)."""
    return [x for x in iter_widgets(root, visible_only=True) if isinstance(x, w.Button) and x.description == label]


def show(widget: Any, visible: bool) -> None:
    """Show or hide a widget (keeps its place in the layout)."""
    widget.layout.display = None if visible else "none"


class ActionResult:
    """What an action did: ids that succeeded and ``(id, reason)`` pairs that did not."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.done: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def run(self, ids: Iterable[str], fn: Callable[[str], Any]) -> ActionResult:
        """Call ``fn(id)`` for each id; ``False`` or an exception counts as not done."""
        for job_id in ids:
            try:
                ok = fn(job_id)
            except Exception as exc:  # shown to the user, one line per job
                self.failed.append((job_id, f"{type(exc).__name__}: {exc}"))
                continue
            if ok is False:
                self.failed.append((job_id, "refused (locked by a worker, or gone)"))
            else:
                self.done.append(job_id)
        return self

    def html(self) -> str:
        """A short report: how many, which ids, and why any failed."""
        total = len(self.done) + len(self.failed)
        color = "#2e7d32" if not self.failed else "#c62828" if not self.done else "#ef6c00"
        out = f"<b style='color:{color}'>{esc(self.verb)} {len(self.done)} of {total} job(s).</b>"
        if self.done:
            out += f" Done: {id_list(self.done)}."
        if self.failed:
            rows = "".join(f"<li>{esc(i)}: {esc(why)}</li>" for i, why in self.failed[:SHOW_IDS])
            more = f"<li>… and {len(self.failed) - SHOW_IDS} more</li>" if len(self.failed) > SHOW_IDS else ""
            out += f"<ul style='margin:2px 0'>{rows}{more}</ul>"
        return out


class ConfirmBar(w.VBox):
    """Shows what an action will do and runs it only after **Confirm** (or drops it on **Cancel**).

    ``ask(summary_html, action)`` stores ``action`` (a no-argument callable returning HTML); nothing is
    run until the Confirm button is clicked. ``on_done(html)`` receives the action's report;
    ``on_message(html)`` notes such as "Cancelled" (default: ``on_done``). The confirmed action runs as
    ``source`` (e.g. ``"widget:JobBrowser"``): its queue calls append to the audit trail.
    """

    def __init__(self, on_done: Callable[[str], None], on_message: Callable[[str], None] | None = None, *,
                 source: str = "widget") -> None:  # fmt: skip
        self.source = source
        self.summary = w.HTML()
        self.confirm = w.Button(description="Confirm", button_style="danger", icon="check",
                                tooltip="Run the action described above")  # fmt: skip
        self.cancel = w.Button(description="Cancel", tooltip="Drop the pending action; nothing is changed")
        self._pending: Callable[[], str] | None = None
        self._on_done = on_done
        self._on_message = on_message or on_done
        self.confirm.on_click(lambda _b: self._run())
        self.cancel.on_click(lambda _b: self.clear("Cancelled: nothing was changed."))
        super().__init__(
            [self.summary, w.HBox([self.confirm, self.cancel])],
            layout=w.Layout(border="1px solid #e0a800", padding="4px 8px", margin="4px 0", display="none"),
        )

    @property
    def pending(self) -> bool:
        """True while an action waits for Confirm."""
        return self._pending is not None

    def ask(self, summary_html: str, action: Callable[[], str]) -> None:
        """Show ``summary_html`` with Confirm/Cancel; ``action`` runs on Confirm."""
        self._pending = action
        self.summary.value = summary_html
        show(self, True)

    def clear(self, message: str | None = None) -> None:
        """Drop any pending action (optionally reporting ``message``) and hide the bar."""
        had = self._pending is not None
        self._pending = None
        show(self, False)
        if message and had:
            self._on_message(esc(message))

    def _run(self) -> None:
        action, self._pending = self._pending, None
        show(self, False)
        if action is None:
            return
        self.confirm.disabled = True
        try:
            with audit.acting(self.source):
                report = action()
        except Exception as exc:
            report = error_html(exc)
        finally:
            self.confirm.disabled = False
        self._on_done(report)


class ActionPanel(w.VBox):
    """A panel with a ``status`` line whose actions go through a :class:`ConfirmBar`: notes show in orange;
    after an action the panel refreshes, then shows the report."""

    status: w.HTML

    def refresh(self) -> None:  # every panel defines its own
        raise NotImplementedError

    def _note(self, message: str) -> None:
        self.status.value = f"<span style='color:#ef6c00'>{message}</span>"

    def _after_action(self, report: str) -> None:
        self.refresh()
        self.status.value = report


def error_html(exc: BaseException) -> str:
    """An error line (with the exception type) for the status area."""
    tb = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return f"<span style='color:#c62828'><b>Error:</b> {esc(tb)}</span>"


def table_html(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A compact HTML table (cells must already be escaped)."""
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px;border-top:1px solid #eee'>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table style='border-collapse:collapse;font-size:13px'><tr>{head}</tr>{body}</table>"
