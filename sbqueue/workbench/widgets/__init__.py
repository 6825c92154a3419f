"""ipywidgets panels for the actions people take on queues during an incident.

- :class:`QueueDashboard` — every queue with counts, workers, paused state; Refresh, auto-refresh,
  pause/resume per queue.
- :class:`JobBrowser` — one state's jobs with filters, paging, a detail view and Retry / Remove / Promote.
- :class:`CleanPanel` — Preview, then Clean (after Confirm) old jobs of one state, in batches.
- :class:`FailureTriage` — failures grouped by signature; Retry or Remove a whole group (after Confirm).

Panels hold no Redis logic: actions are :class:`sbqueue.Queue` methods; views are read through the
inspection SDK. Destructive and bulk actions show how many jobs and which ids first, and run only when
**Confirm** is clicked. Display a panel by leaving it as a cell's last expression.

    >>> from sbqueue.workbench.widgets import JobBrowser
    >>> JobBrowser("emails", state="failed")       # doctest: +SKIP
"""

from sbqueue.workbench.widgets._base import find_buttons, iter_widgets
from sbqueue.workbench.widgets.clean import CleanPanel
from sbqueue.workbench.widgets.dashboard import QueueDashboard
from sbqueue.workbench.widgets.jobbrowser import JobBrowser
from sbqueue.workbench.widgets.triage import FailureTriage

__all__ = ["CleanPanel", "FailureTriage", "JobBrowser", "QueueDashboard", "find_buttons", "iter_widgets"]
