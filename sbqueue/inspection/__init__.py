"""Read-only inspection: pandas DataFrames for BullMQ-layout queues and for Redis itself.

Quick start::

    from sbqueue.inspection import Inspector
    insp = Inspector("redis://localhost:6379/0")        # or None (embedded server), or a redis client
    insp.queues()                                       # every queue: counts, workers, oldest waiting, failure rate
    insp.jobs("emails", "failed", query={"failed_reason": "timeout"})
    insp.failures("emails")                             # failed jobs grouped by error signature
    insp.alerts(window_s=2).query("firing")

Nothing here writes to Redis (a test runs every method as an ACL user built from :data:`INSPECTOR_ACL`).
Every frame's columns and dtypes are declared once in :data:`SCHEMAS` (see :func:`empty_frame`).
Works on standalone Redis (or one primary/replica); Redis Cluster is not supported yet.

May import: sbqueue._core, sbqueue.errors, sbqueue.connection; never the engine or anything above (the engine,
the workbench, ops and the command line build on this layer, so it must not depend on them).
"""

from sbqueue.inspection.inspector import INSPECTOR_ACL, Inspector, QueueInspector, bind, export
from sbqueue.inspection.schemas import SCHEMAS, columns, empty_frame
from sbqueue.inspection.stalled import VERDICTS

__all__ = [
    "INSPECTOR_ACL",
    "SCHEMAS",
    "VERDICTS",
    "Inspector",
    "QueueInspector",
    "bind",
    "columns",
    "empty_frame",
    "export",
]
