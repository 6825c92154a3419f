"""``CleanPanel``: preview and then clean old jobs of one state, in batches, after confirmation."""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as w
import pandas as pd

from sbqueue.engine._sync.queue import Queue
from sbqueue.workbench.widgets import _data
from sbqueue.workbench.widgets._base import ActionPanel, ConfirmBar, error_html, esc, id_list, resolve_queue, show

STATES = ["completed", "failed", "delayed", "waiting", "prioritized"]
#: Jobs removed per ``Queue.clean`` call; each call is itself split into short Redis script calls.
CHUNK = 1000


def _fmt_ms(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "(no time)"


class CleanPanel(ActionPanel):
    """Remove jobs of one state older than a grace period, at most ``limit`` of them.

    **Preview** shows how many jobs would go, the oldest and newest of them and their ids (read only).
    **Clean** shows the same and acts only after **Confirm**: the cutoff time is fixed when Clean is
    clicked, so Confirm removes exactly the previewed jobs (less any removed meanwhile). Removal runs in
    chunks of :data:`CHUNK` through ``Queue.clean``, whose scripts each examine a bounded number of
    entries, so a big clean never blocks Redis. Completed/failed jobs age by finish time, others by
    start (or creation) time, as in BullMQ.

    >>> CleanPanel("emails")                        # doctest: +SKIP
    """

    def __init__(
        self,
        queue: Queue | str,
        *,
        connection: Any = None,
        prefix: str = "bull",
        state: str = "completed",
        grace_s: float = 3600.0,
        limit: int = 1000,
    ) -> None:
        self.queue = resolve_queue(queue, connection, prefix)
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        self.header = w.HTML()
        self.state = w.Dropdown(options=STATES, value=state, description="state", layout=w.Layout(width="210px"))
        self.grace = w.BoundedFloatText(value=grace_s, min=0, max=10 * 365 * 86400, description="older than (s)",
                                        style={"description_width": "initial"}, layout=w.Layout(width="200px"))
        self.limit = w.BoundedIntText(value=limit, min=1, max=10_000_000, description="limit",
                                      layout=w.Layout(width="170px"))  # fmt: skip
        self.preview_button = w.Button(description="Preview", icon="eye", tooltip="Count what would be removed")
        self.clean_button = w.Button(description="Clean", icon="trash", button_style="danger",
                                     tooltip="Remove them (asks for Confirm first)")  # fmt: skip
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.preview = w.HTML()
        self.progress = w.IntProgress(min=0, max=1, value=0, description="cleaning",
                                      layout=w.Layout(display="none", width="420px"))  # fmt: skip
        self.status = w.HTML()
        self.confirm_bar = ConfirmBar(self._after_action, self._note, source="widget:CleanPanel")
        for control in (self.state, self.grace, self.limit):
            control.observe(lambda _c: self.confirm_bar.clear("Settings changed: click Clean again."), names="value")
        self.preview_button.on_click(lambda _b: self.show_preview())
        self.clean_button.on_click(lambda _b: self.ask_clean())
        self.refresh_button.on_click(lambda _b: self.refresh())
        super().__init__([
            self.header,
            w.HBox([self.state, self.grace, self.limit], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.preview_button, self.clean_button, self.refresh_button]),
            self.preview, self.confirm_bar, self.progress, self.status,
        ])  # fmt: skip
        self.add_class("sbqueue-cleanpanel")
        self.refresh()

    def refresh(self) -> None:
        """Redraw the header with the queue's current counts (drops a pending Clean)."""
        self.confirm_bar.clear()
        try:
            counts = self.queue.get_job_counts(*STATES)
        except Exception as exc:
            self.status.value = error_html(exc)
            return
        parts = " · ".join(f"{esc(s)} <b>{n:,}</b>" for s, n in counts.items())
        self.header.value = f"<b>Clean queue {esc(self.queue.name)}</b><br>{parts}"

    def candidates(self, cutoff_ms: int | None = None) -> tuple[int, list[tuple[str, int]]]:
        """``(cutoff_ms, [(id, time_ms), ...])``: what a clean would remove now (read only)."""
        cutoff = int(time.time() * 1000 - float(self.grace.value) * 1000) if cutoff_ms is None else cutoff_ms
        return cutoff, _data.clean_candidates(self.queue, self.state.value, cutoff, int(self.limit.value))

    def _describe(self, cutoff: int, found: list[tuple[str, int]]) -> str:
        state, limit = self.state.value, int(self.limit.value)
        basis = "finished" if state in ("completed", "failed") else "started (or were added)"
        if not found:
            return f"No {esc(state)} jobs {basis} before {_fmt_ms(cutoff)}: nothing to clean."
        oldest, newest = min(found, key=lambda x: x[1]), max(found, key=lambda x: x[1])
        more = " (the limit; more may match)" if len(found) >= limit else ""
        note = " Active jobs held by a worker are kept." if state == "active" else ""
        return (f"<b>{len(found):,} {esc(state)} job(s)</b>{more} {basis} before {_fmt_ms(cutoff)} would be "
                f"removed.<br>oldest: {esc(oldest[0])} ({_fmt_ms(oldest[1])}) · newest: {esc(newest[0])} "
                f"({_fmt_ms(newest[1])})<br>ids: {id_list([i for i, _ in found])}{note}")  # fmt: skip

    def show_preview(self) -> None:
        """Like clicking **Preview**: show what would be removed; changes nothing."""
        self.confirm_bar.clear()
        try:
            cutoff, found = self.candidates()
        except Exception as exc:
            self.preview.value = error_html(exc)
            return
        self.preview.value = self._describe(cutoff, found)

    def ask_clean(self) -> None:
        """Like clicking **Clean**: preview, then wait for **Confirm** before removing anything."""
        try:
            cutoff, found = self.candidates()
        except Exception as exc:
            self.status.value = error_html(exc)
            return
        self.preview.value = ""
        self.status.value = ""
        if not found:
            self.status.value = self._describe(cutoff, found)
            return
        state, limit = self.state.value, int(self.limit.value)
        summary = (self._describe(cutoff, found)
                   + "<br><i>Nothing has changed yet: click Confirm to remove them.</i>")  # fmt: skip
        self.confirm_bar.ask(summary, lambda: self._clean(state, cutoff, limit, len(found)))

    def _clean(self, state: str, cutoff: int, limit: int, expected: int) -> str:
        removed: list[str] = []
        self.progress.max, self.progress.value = max(expected, 1), 0
        show(self.progress, True)
        try:
            while len(removed) < limit:
                grace_ms = max(0, int(time.time() * 1000) - cutoff)  # keeps the cutoff fixed at preview time
                want = min(CHUNK, limit - len(removed))
                batch = self.queue.clean(grace_ms, want, state)
                removed += batch
                self.progress.value = min(len(removed), self.progress.max)
                if len(batch) < want:
                    break
        finally:
            show(self.progress, False)
        color = "#2e7d32" if removed else "#ef6c00"
        return (f"<b style='color:{color}'>Cleaned {len(removed):,} {esc(state)} job(s)</b> "
                f"(previewed {expected:,}).{' ids: ' + id_list(removed) if removed else ''}")  # fmt: skip


__all__ = ["CleanPanel"]
