"""Writing a chart to a file without a browser: :func:`save` (PNG, SVG, self-contained HTML or JSON).

Rendering goes through vl-convert (no browser, no network), so static reports work on a headless CI machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt

from sbqueue.workbench.charts.theme import AnyChart


def save(chart: AnyChart, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write ``chart`` to ``path``: ``.png``, ``.svg``, ``.html`` (self-contained, no CDN) or ``.json``.

    Rendering uses vl-convert (no browser, no network), so it works on a headless CI machine.
    Returns the path written; parent folders are created.
    """
    import vl_convert as vlc

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = chart.to_dict()
    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]
    suffix = out.suffix.lower()
    if suffix == ".png":
        out.write_bytes(vlc.vegalite_to_png(spec, vl_version=version, scale=scale))
    elif suffix == ".svg":
        out.write_text(vlc.vegalite_to_svg(spec, vl_version=version), encoding="utf-8")
    elif suffix in (".html", ".htm"):
        out.write_text(vlc.vegalite_to_html(spec, vl_version=version, bundle=True), encoding="utf-8")
    elif suffix == ".json":
        out.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    else:
        raise ValueError(f"charts.save(): unsupported file type {out.suffix!r}; use .png, .svg, .html or .json")
    return out
