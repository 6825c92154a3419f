"""``FailureTriage``: failed jobs grouped by error signature; retry or remove a whole group after confirmation."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import pandas as pd

from sbqueue.engine._sync.queue import Queue
from sbqueue.workbench.widgets import _data
from sbqueue.workbench.widgets._base import (
    ActionPanel,
    ActionResult,
    ConfirmBar,
    ago,
    error_html,
    esc,
    id_list,
    resolve_queue,
    short,
    table_html,
)


class FailureTriage(ActionPanel):
    """Failures of a queue grouped by signature (normalised reason + top frame), biggest group first.

    Pick a group, then **Retry** (its jobs run again) or **Remove** (they are deleted): the panel lists
    the group's size and ids and acts only after **Confirm**, then reports per-job results and
    refreshes. Groups come from ``Inspector.failures`` (or, without it, from the newest ``limit``
    failed jobs).

    >>> FailureTriage("emails")                     # doctest: +SKIP
    """

    def __init__(self, queue: Queue | str, *, connection: Any = None, prefix: str = "bull", limit: int = 10_000):
        self.queue = resolve_queue(queue, connection, prefix)
        self.limit = max(1, int(limit))
        self.groups = pd.DataFrame(columns=_data.FAILURE_COLUMNS)
        self.header = w.HTML()
        self.table = w.HTML()
        self.group = w.Dropdown(description="group", options=[], layout=w.Layout(width="640px"))
        self.retry_button = w.Button(description="Retry", icon="redo", button_style="warning",
                                     tooltip="Retry every job of the selected group")  # fmt: skip
        self.remove_button = w.Button(description="Remove", icon="trash", button_style="danger",
                                      tooltip="Delete every job of the selected group")  # fmt: skip
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.group_detail = w.HTML()
        self.status = w.HTML()
        self.confirm_bar = ConfirmBar(self._after_action, self._note, source="widget:FailureTriage")
        self.group.observe(lambda _c: self._group_changed(), names="value")
        self.retry_button.on_click(lambda _b: self.ask_retry())
        self.remove_button.on_click(lambda _b: self.ask_remove())
        self.refresh_button.on_click(lambda _b: self.refresh())
        super().__init__([
            self.header, self.table,
            w.HBox([self.group, self.retry_button, self.remove_button, self.refresh_button],
                   layout=w.Layout(flex_flow="row wrap")),
            self.group_detail, self.confirm_bar, self.status,
        ])  # fmt: skip
        self.add_class("sbqueue-failuretriage")
        self.refresh()

    def refresh(self) -> None:
        """Reload the groups from Redis and redraw (drops a pending action)."""
        self.confirm_bar.clear()
        try:
            self.groups = _data.failure_groups(self.queue, self.limit).reset_index(drop=True)
            failed = self.queue.get_job_counts("failed")["failed"]
        except Exception as exc:
            self.status.value = error_html(exc)
            return
        self.header.value = (f"<b>Failures of queue {esc(self.queue.name)}</b>: {failed:,} failed job(s) in "
                             f"{len(self.groups)} signature group(s)")  # fmt: skip
        rows = []
        records = self.groups.to_dict("records")
        for i, g in enumerate(records):
            names = ", ".join(map(str, g["names"])) if isinstance(g["names"], (list, tuple)) else str(g["names"])
            rows.append((str(i + 1), f"<b>{int(g['count']):,}</b>", f"<code>{esc(short(g['signature'], 110))}</code>",
                         esc(short(names, 40)), esc(ago(g["first_seen"])), esc(ago(g["last_seen"]))))  # fmt: skip
        self.table.value = (table_html(["#", "jobs", "signature", "job names", "first seen", "last seen"], rows)
                            if rows else "<i>No failed jobs.</i>")  # fmt: skip
        previous = self.group.value
        options = [(f"#{i + 1} · {int(g['count']):,} · {short(g['signature'], 70)}", i)
                   for i, g in enumerate(records)]  # fmt: skip
        self.group.options = options
        self.group.value = previous if previous is not None and previous < len(options) else (0 if options else None)
        has = bool(options)
        self.retry_button.disabled = self.remove_button.disabled = not has
        self._group_changed()

    @property
    def selected_ids(self) -> list[str]:
        """Ids of the selected group's jobs."""
        if self.group.value is None or self.group.value >= len(self.groups):
            return []
        return list(self.groups.iloc[self.group.value]["ids"])

    def _group_changed(self) -> None:
        if self.confirm_bar.pending:
            self.confirm_bar.clear("Group changed: the pending action was dropped.")
        ids = self.selected_ids
        if not ids:
            self.group_detail.value = ""
            return
        g = self.groups.iloc[self.group.value]
        self.group_detail.value = (f"<b>{len(ids):,} job(s)</b> with signature <code>{esc(g['signature'])}</code>"
                                   f"<br>ids: {id_list(ids)}")  # fmt: skip

    def ask_retry(self) -> None:
        """Like clicking **Retry**: show the group's jobs and wait for **Confirm**."""
        self._ask("Retry", "move back to <b>waiting</b> to run again",
                  lambda i: self.queue.retry_job(i, "failed"), "Retried")  # fmt: skip

    def ask_remove(self) -> None:
        """Like clicking **Remove**: show the group's jobs and wait for **Confirm**."""
        self._ask("Remove", "<b>delete permanently</b>", self.queue.remove, "Removed")

    def _ask(self, verb: str, what: str, fn: Any, done: str) -> None:
        ids = self.selected_ids
        if not ids:
            self.status.value = "<span style='color:#ef6c00'>No failure group selected.</span>"
            return
        sig = self.groups.iloc[self.group.value]["signature"]
        summary = (f"<b>{esc(verb)} {len(ids)} failed job(s)</b> with signature <code>{esc(short(sig, 110))}</code>:"
                   f" {what}.<br>ids: {id_list(ids)}<br><i>Nothing has changed yet: click Confirm to proceed.</i>")
        self.status.value = ""
        self.confirm_bar.ask(summary, lambda: ActionResult(done).run(ids, fn).html())


__all__ = ["FailureTriage"]
