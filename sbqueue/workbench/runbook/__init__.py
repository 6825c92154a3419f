"""Diagnoses and fixes behind the runbooks: the package computes, the notebooks narrate.

Each ``diagnose_*`` function inspects (read-only), names a cause with evidence, and returns a
:class:`Finding` whose ``plan`` is a DataFrame of intended actions. Nothing changes until
``finding.apply(confirm=True)``; the runbooks call it only when ``dry_run`` is False.

    >>> finding = runbook.diagnose_stuck("emails")
    >>> finding.cause, finding.plan
    >>> finding.apply(confirm=True); finding.verify()

One module per runbook family (:mod:`.stuck`, :mod:`.stalled`, :mod:`.failed` with :mod:`.dead_letters`,
:mod:`.memory`, :mod:`.health`, :mod:`.latency`)
over the shared parts: :mod:`.finding` (the Finding and its outcome words), :mod:`.scope` (which queues; NOT
FOUND) and :mod:`.progress` (does the queue make progress after a fix). This package re-exports every public
name, because users write ``from sbqueue import runbook; runbook.diagnose_failed(...)``.

May import: the workbench layer's own modules and every layer below (core, connection, inspection, engine).
Never ops or the command line.
"""

from sbqueue.workbench.runbook.dead_letters import diagnose_dead_letters, with_dead_letters
from sbqueue.workbench.runbook.failed import PERMANENT, TRANSIENT, classify_failure, diagnose_failed
from sbqueue.workbench.runbook.finding import (
    ACTION_NEEDED,
    CHECK_COLUMNS,
    FIXED,
    NOT_FOUND,
    OK,
    OUTCOMES,
    PLAN_COLUMNS,
    Finding,
)
from sbqueue.workbench.runbook.health import EVICTING, diagnose_health
from sbqueue.workbench.runbook.latency import LatencyFinding, diagnose_latency
from sbqueue.workbench.runbook.memory import diagnose_memory
from sbqueue.workbench.runbook.progress import WATCH_S, watch_progress
from sbqueue.workbench.runbook.scope import prefixes, queue_names
from sbqueue.workbench.runbook.stalled import diagnose_stalled
from sbqueue.workbench.runbook.stuck import OK_STUCK, diagnose_stuck

__all__ = [
    "ACTION_NEEDED",
    "CHECK_COLUMNS",
    "EVICTING",
    "FIXED",
    "NOT_FOUND",
    "OK",
    "OK_STUCK",
    "OUTCOMES",
    "PERMANENT",
    "PLAN_COLUMNS",
    "TRANSIENT",
    "WATCH_S",
    "Finding",
    "LatencyFinding",
    "classify_failure",
    "diagnose_dead_letters",
    "diagnose_failed",
    "diagnose_health",
    "diagnose_latency",
    "diagnose_memory",
    "diagnose_stalled",
    "diagnose_stuck",
    "prefixes",
    "queue_names",
    "watch_progress",
    "with_dead_letters",
]
