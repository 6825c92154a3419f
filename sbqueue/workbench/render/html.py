"""HTML fragments a notebook displays: the :class:`Html` display object and the report's one stylesheet.

Notebook front ends and nbconvert render any object with ``_repr_html_``; :class:`Html` is that object, plus a
plain-text twin (what ``text/plain`` readers, and the report index, see) and optional output metadata. The
stylesheet wraps long cells instead of cutting them and keeps tables readable in the exported report.
"""

from __future__ import annotations

import html
from typing import Any

#: the report's styles (scoped to ``.sbq``): cells wrap, never cut with an ellipsis
STYLE = """<style>
.sbq{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:14px;line-height:1.4;max-width:100%}
.sbq table.sbq-table{border-collapse:collapse;margin:.4em 0 1em;table-layout:auto;max-width:100%}
.sbq table.sbq-table th,.sbq table.sbq-table td{white-space:normal!important;overflow:visible!important;
 text-overflow:clip!important;overflow-wrap:break-word;word-break:normal;max-width:36em;text-align:left!important;
 vertical-align:top;padding:.25em .6em;border-bottom:1px solid #ddd}
.sbq table.sbq-table th{background:#f3f4f6;font-weight:600}
.sbq table.sbq-table td.num{text-align:right!important;font-variant-numeric:tabular-nums}
.sbq .sbq-none{color:#6b7280;font-style:italic;margin:.3em 0 1em}
.sbq .sbq-note{color:#374151;background:#f9fafb;border-left:4px solid #9ca3af;padding:.4em .8em;margin:.5em 0}
.sbq-banner{border-radius:8px;padding:1em 1.2em;margin:.5em 0 1.5em;color:#111827;border:2px solid}
.sbq-banner .sbq-word{display:inline-block;font-weight:800;font-size:1.5em;letter-spacing:.03em;color:#fff;
 padding:.1em .5em;border-radius:6px;margin-right:.6em}
.sbq-banner .sbq-cause{font-size:1.15em;font-weight:600;vertical-align:middle}
.sbq-banner h4{margin:.9em 0 .2em;font-size:1em}
.sbq-banner ul{margin:.2em 0 0 1.2em;padding:0}
.sbq-banner .sbq-meta{color:#4b5563;font-size:.85em;margin-top:.9em}
</style>"""

#: outcome word -> (badge colour, banner background)
COLOURS = {
    "OK": ("#15803d", "#f0fdf4"),
    "FIXED": ("#1d4ed8", "#eff6ff"),
    "ACTION NEEDED": ("#b91c1c", "#fef2f2"),
    "NOT FOUND": ("#7c3aed", "#f5f3ff"),
    "FAILED": ("#b91c1c", "#fef2f2"),
}
NEUTRAL = ("#4b5563", "#f9fafb")


class Html:
    """An HTML fragment for a notebook output (styled with :data:`STYLE`), with a plain-text twin.

    ``empty`` marks "nothing to show" (an empty table, a skipped part), which :func:`section` skips."""

    def __init__(self, body: str, text: str = "", *, empty: bool = False, metadata: dict[str, Any] | None = None):
        self.body = body
        self.text = text
        self.empty = empty
        self.metadata = metadata or {}

    def _repr_html_(self) -> str:
        return f"{STYLE}<div class='sbq'>{self.body}</div>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, str], dict[str, Any]]:
        data = {"text/html": self._repr_html_(), "text/plain": self.text or self.body}
        return data, self.metadata

    def __str__(self) -> str:
        return self.text or self.body

    def __repr__(self) -> str:
        return f"<Html {len(self.body)} chars{' empty' if self.empty else ''}>"


def esc(value: Any) -> str:
    """``value`` as HTML-escaped text."""
    return html.escape(str(value), quote=True)


def badge(word: str) -> str:
    """The coloured outcome word as an inline HTML badge."""
    colour = COLOURS.get(word, NEUTRAL)[0]
    return (f"<span class='sbq-word' style='background:{colour};color:#fff;font-weight:800;padding:.1em .5em;"
            f"border-radius:6px'>{esc(word)}</span>")  # fmt: skip
