"""Tables for people: a DataFrame as HTML with no index column, human units and "—" for missing values.

An empty frame reads "none" (not a header row over nothing); long text wraps instead of being cut; a long frame
shows its first ``max_rows`` rows and says how many more there are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from sbqueue.workbench.render.html import Html, esc
from sbqueue.workbench.render.units import cell_text, column_kind, header_text


def table(
    df: pd.DataFrame | pd.Series | None,
    columns: Sequence[str] | None = None,
    *,
    kinds: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_rows: int = 50,
    none: str = "none",
    index: bool = False,
) -> Html:
    """``df`` as an HTML table (no index column unless ``index=True``, e.g. for a describe() frame).

    ``columns`` picks and orders columns (missing ones are skipped); ``kinds`` overrides a column's unit
    (``"time"``, ``"duration"``, ``"bytes"``, ``"number"``, ``"text"``); ``headers`` renames headers. An empty
    frame (or ``None``) renders as ``none``."""
    if df is None:
        return Html(f"<p class='sbq-none'>{esc(none)}</p>", none, empty=True)
    if isinstance(df, pd.Series):
        df = df.to_frame()
    if index:
        names = [str(n) if n is not None else "" for n in (df.index.names or [""])]
        df = df.reset_index(names=[n or "—" for n in names] if len(names) > 1 else (names[0] or " "))
    if isinstance(df.columns, pd.MultiIndex):
        df = df.set_axis([" ".join(str(p) for p in c if str(p)) for c in df.columns], axis=1)
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    if not len(df) or not len(df.columns):
        return Html(f"<p class='sbq-none'>{esc(none)}</p>", none, empty=True)
    kinds = dict(kinds or {})
    headers = dict(headers or {})
    cols = list(df.columns)
    kind_of = {c: kinds.get(str(c)) or column_kind(c, df[c]) for c in cols}
    head = "".join(f"<th>{esc(headers.get(str(c)) or header_text(c, kind_of[c]))}</th>" for c in cols)
    shown = df.head(max_rows)
    rows = []
    lines = []
    for values in shown.itertuples(index=False, name=None):
        cells = []
        texts = []
        for c, v in zip(cols, values, strict=True):
            text = cell_text(v, kind_of[c])
            numeric = kind_of[c] in ("number", "bytes", "duration", "percent")
            cells.append(f"<td class='num'>{esc(text)}</td>" if numeric else f"<td>{esc(text)}</td>")
            texts.append(text)
        rows.append("<tr>" + "".join(cells) + "</tr>")
        lines.append(" | ".join(texts))
    more = ""
    if len(df) > len(shown):
        more = f"<p class='sbq-none'>and {len(df) - len(shown):,} more rows (first {len(shown):,} shown)</p>"
    body = f"<table class='sbq-table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
    return Html(body, "\n".join(lines))


def fields(pairs: Mapping[str, Any] | Sequence[tuple[str, Any]], *, kinds: Mapping[str, str] | None = None) -> Html:
    """A two-column "what / value" table from ``pairs`` (values in the unit ``kinds`` gives, else as text)."""
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    kinds = dict(kinds or {})
    frame = pd.DataFrame({"what": [k for k, _ in items],
                          "value": [cell_text(v, kinds.get(k, "text")) for k, v in items]})  # fmt: skip
    return table(frame, kinds={"value": "text"}, headers={"what": "", "value": ""})


def record(df: pd.DataFrame, columns: Sequence[str] | None = None, *, headers: Mapping[str, str] | None = None) -> Html:
    """The first row of ``df`` as a "what / value" table, each value in its column's unit (e.g. persistence)."""
    if df is None or not len(df):
        return table(None)
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    row = df.iloc[0]
    heads = dict(headers or {})
    kinds = {str(c): column_kind(c, df[c]) for c in cols}
    pairs = [(heads.get(str(c)) or header_text(c, kinds[str(c)]), cell_text(row[c], kinds[str(c)])) for c in cols]
    return fields(pairs)
