"""``QueueDashboard``: every queue under a prefix with its counts, workers and a pause/resume toggle."""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as w
import pandas as pd

from sbqueue import connection as _connection
from sbqueue.connection import clients
from sbqueue.engine import audit
from sbqueue.engine._sync.queue import Queue
from sbqueue.workbench.widgets import _data
from sbqueue.workbench.widgets._base import error_html, esc

_COLUMNS = ["queue", *_data.COUNT_STATES, "workers", "state"]
_GRID = "minmax(120px,1fr) " + " ".join(["90px"] * (len(_data.COUNT_STATES) + 1)) + " 110px"
_LABELS = {"waiting-children": "children"}


class QueueDashboard(w.VBox):
    """All queues under ``prefix``: jobs per state, workers connected and paused state.

    **Refresh** reloads (from ``Inspector.queues()`` when the inspection SDK is there); tick
    *auto-refresh* to reload every ``interval`` seconds in a background thread (stopped by unticking
    or :meth:`close`). Each queue has a toggle: pressed = paused; clicking it pauses or resumes the
    queue at once through ``Queue.pause``/``Queue.resume`` (nothing is deleted, so no confirmation).

    >>> QueueDashboard()                            # doctest: +SKIP
    """

    def __init__(
        self,
        connection: Any = None,
        prefix: str = "bull",
        *,
        auto_refresh: bool = False,
        interval: float = 5.0,
    ) -> None:
        self.client = clients.sync_client(connection).client
        self.prefix = prefix
        self.frame = pd.DataFrame(columns=_COLUMNS)
        self.toggles: dict[str, w.ToggleButton] = {}
        self.refreshes = 0
        self._cells: list[w.Widget] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self.header = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="Reload from Redis")
        self.auto_refresh = w.Checkbox(value=False, description="auto-refresh", indent=False,
                                       layout=w.Layout(width="120px"))  # fmt: skip
        self.interval = w.BoundedFloatText(value=interval, min=0.2, max=3600, description="every (s)",
                                           layout=w.Layout(width="160px"))  # fmt: skip
        self.table = w.GridBox(layout=w.Layout(grid_template_columns=_GRID, grid_gap="2px 6px", align_items="center"))
        self.status = w.HTML()
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.auto_refresh.observe(lambda c: self._auto(bool(c["new"])), names="value")
        super().__init__([
            self.header, w.HBox([self.refresh_button, self.auto_refresh, self.interval]), self.table, self.status,
        ])  # fmt: skip
        self.add_class("sbqueue-dashboard")
        self.refresh()
        self.auto_refresh.value = bool(auto_refresh)

    def refresh(self) -> None:
        """Reload every queue's row from Redis and redraw."""
        with self._lock:
            try:
                self.frame = _data.queue_overview(self.client, self.prefix)
            except Exception as exc:
                self.status.value = error_html(exc)
                return
            self.refreshes += 1
            self._draw()

    def _draw(self) -> None:
        for cell in self._cells:
            cell.close()
        self.toggles = {}
        cells: list[w.Widget] = [w.HTML(f"<b>{esc(_LABELS.get(c, c))}</b>") for c in _COLUMNS]
        for row in self.frame.to_dict("records"):
            name = str(row["queue"])
            cells.append(w.HTML(f"<b>{esc(name)}</b>"))
            for state in _data.COUNT_STATES:
                n = int(row.get(state) or 0)
                color = "#c62828" if state == "failed" and n else "inherit"
                cells.append(w.HTML(f"<span style='color:{color}'>{n:,}</span>"))
            workers = int(row.get("workers") or 0)
            cells.append(w.HTML(f"{workers}" if workers else "<span style='color:#ef6c00'>0</span>"))
            paused = bool(row.get("paused"))
            toggle = w.ToggleButton(value=paused, description="paused" if paused else "running",
                                    icon="pause" if paused else "play", button_style="warning" if paused else "",
                                    tooltip="Click to resume" if paused else "Click to pause",
                                    layout=w.Layout(width="105px"))  # fmt: skip
            toggle.observe(lambda c, q=name: self.set_paused(q, bool(c["new"])), names="value")
            self.toggles[name] = toggle
            cells.append(toggle)
        self._cells = cells
        self.table.children = cells
        stamp = time.strftime("%H:%M:%S")
        self.header.value = (f"<b>Queues under prefix {esc(self.prefix)}</b>: {len(self.frame)} · "
                             f"<span style='color:#666'>{esc(_connection.mask_url(_connection.url_of(self.client)))}"
                             f" · refreshed {stamp}</span>")  # fmt: skip

    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume one queue (what its toggle does) and refresh."""
        try:
            q = Queue(queue, self.client, self.prefix)
            with audit.acting("widget:QueueDashboard"):
                if paused:
                    q.pause()
                else:
                    q.resume()
        except Exception as exc:
            self.status.value = error_html(exc)
            return
        self.status.value = f"<b>{'Paused' if paused else 'Resumed'}</b> queue {esc(queue)}."
        self.refresh()

    def _auto(self, on: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if on:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="sbqueue-dashboard",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(float(self.interval.value)):
            self.refresh()

    def close(self) -> None:
        """Stop auto-refresh and close the widgets (the Redis client stays open)."""
        if getattr(self, "_stop", None) is not None:
            self._stop.set()
        if getattr(self, "_thread", None) is not None:
            self._thread.join(timeout=5)  # type: ignore[union-attr]
        for cell in getattr(self, "_cells", []):
            cell.close()
        super().close()


__all__ = ["QueueDashboard"]
