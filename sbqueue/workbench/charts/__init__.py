"""Altair charts of sbqueue's inspection DataFrames, readable in a notebook and in a static report.

Every function is a pure function of a DataFrame (no Redis access): pass what :class:`sbqueue.Inspector`
returns, or any frame with the same columns. Each chart has a title, axis titles with units and tooltips.
Inputs are aggregated with pandas *before* charting (time buckets, histogram bins, top-N), so a
100k-row frame still gives a spec of a few kilobytes.

>>> from sbqueue import charts
>>> chart = charts.counts(inspector.queues())          # doctest: +SKIP
>>> charts.save(chart, "reports/counts.png")           # PNG, SVG, HTML or JSON; works headless

Functions: :func:`counts`, :func:`throughput`, :func:`latency`, :func:`failures`, :func:`timeline`,
:func:`memory`, :func:`tuning`, :func:`benchmark`, :func:`save`; for a recorded history (:class:`sbqueue.History`):
:func:`percentiles_over_time`, :func:`wait_heatmap`, :func:`comparison`.

One module per chart family — :mod:`.queues` (counts, throughput), :mod:`.timing` (latency, percentiles, wait
heatmap), :mod:`.signatures` (failures), :mod:`.keyspace` (memory), :mod:`.events` (timeline),
:mod:`.experiments` (tuning, benchmark, comparison, soak) — over :mod:`.theme` (colours, axes, placeholders),
:mod:`.prepare` (input checks, time buckets) and :mod:`.export` (save). ``sbqueue.charts`` is this package:
it re-exports every chart function and the constants notebooks and tests read (``STATE_COLORS``,
``EVENT_COLORS``, ``MAX_BUCKETS``, ...).

May import: the workbench layer's own modules and every layer below (core, connection, inspection, engine);
in practice only pandas, numpy and altair: charts never touch Redis. Never ops or the command line.
"""

from sbqueue.workbench.charts.events import timeline
from sbqueue.workbench.charts.experiments import benchmark, comparison, soak, tuning
from sbqueue.workbench.charts.export import save
from sbqueue.workbench.charts.keyspace import memory
from sbqueue.workbench.charts.prepare import MAX_BUCKETS as MAX_BUCKETS
from sbqueue.workbench.charts.queues import counts, throughput
from sbqueue.workbench.charts.signatures import failures
from sbqueue.workbench.charts.theme import EVENT_COLORS as EVENT_COLORS
from sbqueue.workbench.charts.theme import STATE_COLORS as STATE_COLORS
from sbqueue.workbench.charts.theme import STATES as STATES
from sbqueue.workbench.charts.theme import AnyChart as AnyChart
from sbqueue.workbench.charts.timing import latency, percentiles_over_time, wait_heatmap

__all__ = ["benchmark", "comparison", "counts", "failures", "latency", "memory", "percentiles_over_time", "save",
           "soak", "throughput", "timeline", "tuning", "wait_heatmap"]  # fmt: skip
