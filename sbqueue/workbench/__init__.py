"""Layer 4 — the notebook workbench: what an on-call engineer uses in Jupyter.

Charts (altair), widgets (ipywidgets panels), the runbook logic (diagnose → plan → apply → verify),
reports (papermill runs of the runbook notebooks shipped in ``runbooks/``), planted scenarios and the demo.
Public paths: ``sbqueue.charts``, ``sbqueue.widgets``, ``from sbqueue import runbook, reports, scenarios``.

May import: every layer below (core, connection, inspection, engine). Never ops or the command line.
"""
