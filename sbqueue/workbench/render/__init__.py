"""The one report renderer every runbook uses: a verdict banner first, then evidence in tables people can read.

``banner(finding, dry_run=...)`` opens a report (outcome word in its colour, the cause in one sentence, what was
done, what a human must do); ``table(df)`` renders a frame with human units and no ``NaN``/``None``;
``section(title, ...)`` shows a heading with its parts and is skipped when they are all empty;
``widget_or_note`` stands in for an ipywidget in a static report.
"""

from __future__ import annotations

from sbqueue.workbench.render.banner import METADATA_KEY, banner, cause_sentence, summary_banner, todo, what_was_done
from sbqueue.workbench.render.html import COLOURS, STYLE, Html, badge
from sbqueue.workbench.render.sections import REPORT_ENV, interactive, is_empty, note, section, widget_or_note
from sbqueue.workbench.render.tables import fields, record, table
from sbqueue.workbench.render.units import (
    MISSING,
    cell_text,
    column_kind,
    human_bytes,
    human_duration,
    human_time,
    is_missing,
    shorten,
)

__all__ = [
    "COLOURS",
    "METADATA_KEY",
    "MISSING",
    "REPORT_ENV",
    "STYLE",
    "Html",
    "badge",
    "banner",
    "cause_sentence",
    "cell_text",
    "column_kind",
    "fields",
    "human_bytes",
    "human_duration",
    "human_time",
    "interactive",
    "is_empty",
    "is_missing",
    "note",
    "record",
    "section",
    "shorten",
    "summary_banner",
    "table",
    "todo",
    "what_was_done",
    "widget_or_note",
]
