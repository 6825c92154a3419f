"""Layer 4 — operations: what runs beside the queues in production.

The Prometheus exporter, ACL rules for each role, and the history recorder (``sbqueue record``).

May import: every layer below (core, connection, inspection, engine). Never the workbench or the command line.
"""
