"""``JobBrowser``: page through one queue's jobs, inspect one, and Retry / Remove / Promote with confirmation."""

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
    pretty,
    resolve_queue,
    short,
    show,
    table_html,
)

STATES = ["failed", "completed", "delayed", "waiting", "prioritized", "active", "waiting-children"]
WINDOWS = [("any time", 0.0), ("last 15 min", 900.0), ("last hour", 3600.0), ("last 24 h", 86400.0),
           ("last 7 days", 604800.0)]  # fmt: skip
_GRID = "28px minmax(70px,140px) minmax(80px,160px) 70px 120px minmax(160px,1fr)"


class JobBrowser(ActionPanel):
    """Browse a queue's jobs in one state, see a job's details, and act on selected jobs.

    ``queue`` is a :class:`sbqueue.Queue` or a queue name (then ``connection``/``prefix`` are used).
    Filters: state, job name (substring), error text (substring, or ``/regex/``) and a time window,
    over the newest ``scan_limit`` jobs of the state. Tick rows (or *select all on page*), then
    **Retry** (failed/completed), **Remove** or **Promote** (delayed): the panel lists what will happen
    and acts only after **Confirm**, then shows the result and refreshes. Click a job id for its data,
    options, error, stack trace, logs and timeline.

    >>> JobBrowser("emails", state="failed")       # doctest: +SKIP
    """

    def __init__(
        self,
        queue: Queue | str,
        state: str = "failed",
        *,
        connection: Any = None,
        prefix: str = "bull",
        page_size: int = 25,
        scan_limit: int = 5000,
    ) -> None:
        self.queue = resolve_queue(queue, connection, prefix)
        if state == "wait":
            state = "waiting"
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        self.page_size = max(1, int(page_size))
        self.scan_limit = max(1, int(scan_limit))
        self.page = 0
        self.jobs = pd.DataFrame(columns=_data.JOB_COLUMNS)  # the filtered jobs (all pages)
        self.total = 0  # jobs in the state
        self.checkboxes: dict[str, w.Checkbox] = {}
        self._row_widgets: list[w.Widget] = []
        self._loaded: pd.DataFrame = self.jobs
        self._muted = False
        self._detail_id: str | None = None

        self.header = w.HTML()
        self.state = w.Dropdown(options=STATES, value=state, description="state",
                                layout=w.Layout(width="210px"))  # fmt: skip
        self.name_filter = w.Text(placeholder="job name contains…", description="name", continuous_update=False,
                                  layout=w.Layout(width="230px"))  # fmt: skip
        self.error_filter = w.Text(placeholder="text or /regex/", description="error", continuous_update=False,
                                   layout=w.Layout(width="230px"))  # fmt: skip
        self.window = w.Dropdown(options=WINDOWS, value=0.0, description="when", layout=w.Layout(width="200px"))
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="Reload from Redis")
        self.prev_button = w.Button(description="Prev", icon="arrow-left", layout=w.Layout(width="80px"))
        self.next_button = w.Button(description="Next", icon="arrow-right", layout=w.Layout(width="80px"))
        self.page_label = w.HTML()
        self.select_all = w.Checkbox(description="select all on page", indent=False, layout=w.Layout(width="170px"))
        self.retry_button = w.Button(description="Retry", icon="redo", button_style="warning",
                                     tooltip="Run the selected failed/completed jobs again")  # fmt: skip
        self.remove_button = w.Button(description="Remove", icon="trash", button_style="danger",
                                      tooltip="Delete the selected jobs")  # fmt: skip
        self.promote_button = w.Button(description="Promote", icon="forward", button_style="info",
                                       tooltip="Run the selected delayed jobs now")  # fmt: skip
        self.table = w.GridBox(layout=w.Layout(grid_template_columns=_GRID, grid_gap="0 6px", align_items="center"))
        self.status = w.HTML()
        self.confirm_bar = ConfirmBar(self._after_action, self._note, source="widget:JobBrowser")
        self.detail = w.HTML("<i>Click a job id to see its data, options, error, logs and timeline.</i>")

        self.state.observe(lambda _c: self._filters_changed(reload=True), names="value")
        for control in (self.name_filter, self.error_filter, self.window):
            control.observe(lambda _c: self._filters_changed(reload=False), names="value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.prev_button.on_click(lambda _b: self._turn(-1))
        self.next_button.on_click(lambda _b: self._turn(+1))
        self.select_all.observe(self._on_select_all, names="value")
        self.retry_button.on_click(lambda _b: self.ask_retry())
        self.remove_button.on_click(lambda _b: self.ask_remove())
        self.promote_button.on_click(lambda _b: self.ask_promote())

        super().__init__([
            self.header,
            w.HBox([self.state, self.name_filter, self.error_filter, self.window, self.refresh_button],
                   layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.select_all, self.retry_button, self.remove_button, self.promote_button,
                    self.prev_button, self.next_button, self.page_label], layout=w.Layout(flex_flow="row wrap")),
            self.confirm_bar, self.status, self.table, self.detail,
        ])  # fmt: skip
        self.add_class("sbqueue-jobbrowser")
        self.refresh()

    # --- reading ---------------------------------------------------------------------------------
    def refresh(self, *, reload: bool = True) -> None:
        """Reload the jobs from Redis (unless ``reload`` is False), re-apply filters and redraw."""
        self.confirm_bar.clear()
        state = self.state.value
        try:
            if reload:
                self._loaded, self.total = _data.list_jobs(self.queue, state, self.scan_limit)
                counts = self.queue.get_job_counts()
                paused = " · <b style='color:#c62828'>paused</b>" if self.queue.is_paused() else ""
                parts = " · ".join(f"{esc(s)} <b>{n:,}</b>" for s, n in counts.items())
                self.header.value = (f"<b>Queue {esc(self.queue.name)}</b> "
                                     f"<span style='color:#666'>({esc(self.queue.prefix)})</span>{paused}<br>{parts}")
            window = float(self.window.value or 0) or None
            self.jobs = _data.filter_jobs(self._loaded, self.name_filter.value, self.error_filter.value, window)
        except Exception as exc:
            self.status.value = error_html(exc)
            return
        pages = max(1, -(-len(self.jobs) // self.page_size))
        self.page = min(self.page, pages - 1)
        self._draw()
        if reload and self._detail_id is not None:
            self.show_detail(self._detail_id)  # the job may have moved on (retried, removed, ...)

    @property
    def page_jobs(self) -> pd.DataFrame:
        """The jobs on the current page."""
        start = self.page * self.page_size
        return self.jobs.iloc[start : start + self.page_size]

    @property
    def selected_ids(self) -> list[str]:
        """Ids of the ticked rows, in page order."""
        return [job_id for job_id, box in self.checkboxes.items() if box.value]

    def select(self, ids: list[str] | None = None) -> None:
        """Tick these rows (all rows of the page when ``ids`` is None), as a person would."""
        wanted = None if ids is None else {str(i) for i in ids}
        for job_id, box in self.checkboxes.items():
            box.value = wanted is None or job_id in wanted

    def _draw(self) -> None:
        for widget in self._row_widgets:
            widget.close()
        self._row_widgets, self.checkboxes = [], {}
        state = self.state.value
        head = ["", "id", "name", "attempts", "promotes" if state == "delayed" else "when",
                "error" if state == "failed" else ""]  # fmt: skip
        cells: list[w.Widget] = [w.HTML(f"<b>{h}</b>") for h in head]
        for row in self.page_jobs.itertuples(index=False):
            box = w.Checkbox(value=False, indent=False, layout=w.Layout(width="24px"))
            box.observe(lambda _c: self._selection_changed(), names="value")
            link = w.Button(description=str(row.id), tooltip=f"Show job {row.id}",
                            layout=w.Layout(width="auto", height="24px"))  # fmt: skip
            link.on_click(lambda _b, job_id=str(row.id): self.show_detail(job_id))
            self.checkboxes[str(row.id)] = box
            when = row.run_at if state == "delayed" else _latest(row)
            when_text = ago(when) if isinstance(when, pd.Timestamp) and not pd.isna(when) else ""
            extra = row.failed_reason if state == "failed" else ""
            cells += [box, link, w.HTML(esc(short(row.name, 40))),
                      w.HTML(f"{row.attempts_made}/{row.max_attempts}"),
                      w.HTML(f"<span title='{esc(when)}'>{esc(when_text)}</span>"),
                      w.HTML(f"<span title='{esc(extra)}'>{esc(short(extra, 90))}</span>")]  # fmt: skip
        self._row_widgets = cells
        self.table.children = cells
        show(self.table, not self.page_jobs.empty)
        n, start = len(self.jobs), self.page * self.page_size
        scanned = f" (newest {self.scan_limit:,} of {self.total:,} scanned)" if self.total > self.scan_limit else ""
        self.page_label.value = (f"jobs {start + 1 if n else 0}-{min(start + self.page_size, n)} of {n:,} "
                                 f"matching in <b>{esc(state)}</b>{scanned}")  # fmt: skip
        if not n:
            self.page_label.value = f"no {esc(state)} jobs match{scanned}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = start + self.page_size >= n
        self.retry_button.disabled = state not in ("failed", "completed")
        self.promote_button.disabled = state != "delayed"
        self._muted = True
        self.select_all.value = False
        self._muted = False

    # --- details -----------------------------------------------------------------------------------
    def show_detail(self, job_id: str) -> None:
        """Show one job's data, options, error, stack trace, logs and timeline."""
        self._detail_id = str(job_id)
        try:
            job = self.queue.get_job(job_id)
            if job is None:
                self.detail.value = f"<b>Job {esc(job_id)}</b>: gone (removed or cleaned)."
                return
            logs = self.queue.get_job_logs(job_id)
            timeline = _data.job_timeline(self.queue, job)
            state = self.queue.get_job_state(job_id)
        except Exception as exc:
            self.detail.value = error_html(exc)
            return
        rows = [(_when(r.ts), esc(r.event), esc(short(r.detail, 120))) for r in timeline.itertuples(index=False)]
        stack = "\n".join(job.stacktrace) if job.stacktrace else ""
        parts = [
            f"<h4 style='margin:6px 0'>Job {esc(job.id)} · {esc(job.name)} · {esc(state)}</h4>",
            f"<b>attempts</b> {job.attempts_made}/{job.max_attempts} · <b>created</b> {_when(job.created_at)} · "
            f"<b>processed</b> {_when(job.processed_at)} · <b>finished</b> {_when(job.finished_at)}",
            "<details open><summary><b>data</b></summary>" + pretty(job.data) + "</details>",
            "<details><summary><b>options</b></summary>" + pretty(job.opts) + "</details>",
        ]
        if job.failed_reason:
            parts.append(f"<div style='color:#c62828'><b>error</b> {esc(job.failed_reason)}</div>")
        if stack:
            parts.append("<details><summary><b>stack trace</b></summary>" + pretty(stack) + "</details>")
        if job.returnvalue is not None:
            parts.append("<details><summary><b>return value</b></summary>" + pretty(job.returnvalue) + "</details>")
        log_lines = "\n".join(map(str, logs.get("logs", [])))
        parts.append(f"<details><summary><b>logs</b> ({logs.get('count', 0)})</summary>{pretty(log_lines)}</details>")
        parts.append("<details open><summary><b>timeline</b></summary>"
                     + table_html(["time", "event", "detail"], rows) + "</details>")  # fmt: skip
        if job.parse_error:
            parts.append(f"<div style='color:#ef6c00'><b>parse error</b> {esc(job.parse_error)}</div>")
        self.detail.value = "".join(parts)

    # --- actions -----------------------------------------------------------------------------------
    def ask_retry(self) -> None:
        """Like clicking **Retry**: show what will be retried and wait for **Confirm**."""
        state = self.state.value
        if state not in ("failed", "completed"):
            self._say(f"Retry works on failed or completed jobs, not {state}.")
            return
        self._ask("Retry", f"move back to <b>waiting</b> to run again (from {esc(state)})",
                  lambda i: self.queue.retry_job(i, state), "Retried")  # fmt: skip

    def ask_remove(self) -> None:
        """Like clicking **Remove**: show what will be deleted and wait for **Confirm**."""
        self._ask("Remove", "<b>delete permanently</b> (data, logs and state entries)", self.queue.remove, "Removed")

    def ask_promote(self) -> None:
        """Like clicking **Promote**: show which delayed jobs will run now and wait for **Confirm**."""
        if self.state.value != "delayed":
            self._say("Promote works on delayed jobs.")
            return
        self._ask("Promote", "run <b>now</b> instead of at their delayed time", self.queue.promote_job, "Promoted")

    def _ask(self, verb: str, what: str, fn: Any, done: str) -> None:
        ids = self.selected_ids
        if not ids:
            self._say(f"{verb}: select jobs first (tick rows or 'select all on page').")
            return
        summary = (f"<b>{esc(verb)} {len(ids)} job(s)</b> of queue <b>{esc(self.queue.name)}</b>: {what}.<br>"
                   f"ids: {id_list(ids)}<br><i>Nothing has changed yet: click Confirm to proceed.</i>")  # fmt: skip
        self.status.value = ""
        self.confirm_bar.ask(summary, lambda: ActionResult(done).run(ids, fn).html())

    def _say(self, text: str) -> None:
        self._note(esc(text))

    # --- events ------------------------------------------------------------------------------------
    def _filters_changed(self, *, reload: bool) -> None:
        self.page = 0
        self.refresh(reload=reload)

    def _turn(self, step: int) -> None:
        self.page = max(0, self.page + step)
        self.refresh(reload=False)

    def _on_select_all(self, change: dict[str, Any]) -> None:
        if not self._muted:
            self.select(None if change["new"] else [])

    def _selection_changed(self) -> None:
        if self.confirm_bar.pending:
            self.confirm_bar.clear("Selection changed: the pending action was dropped; click it again.")

    def close(self) -> None:
        """Close the panel and its row widgets (the queue's connection is left open)."""
        for widget in getattr(self, "_row_widgets", []):
            widget.close()
        super().close()


def _when(value: Any) -> str:
    """``2024-05-01 12:00:03.123 UTC (5 min ago)`` for a datetime; "-" when missing."""
    if value is None or (isinstance(value, pd.Timestamp) and pd.isna(value)):
        return "-"
    stamp = pd.Timestamp(value).tz_convert("UTC")
    return f"{stamp.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC <span style='color:#666'>({esc(ago(stamp))})</span>"


def _latest(row: Any) -> Any:
    for value in (row.finished_on, row.processed_on, row.timestamp):
        if value is not None and not pd.isna(value):
            return value
    return None


__all__ = ["JobBrowser"]
