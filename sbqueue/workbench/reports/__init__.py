"""Run runbooks with papermill and render them to HTML (the executed notebook is the incident record).

:mod:`.locate` finds a runbook (installed, by name, or an edited copy, by path) and copies them;
:mod:`.params` reads and types its parameters (``sbqueue report -p NAME VALUE``); :mod:`.running` executes it and
renders the HTML; :mod:`.index` names the report files and writes ``index.html``. This package re-exports every
public name, because users and the command line write ``from sbqueue import reports; reports.run(...)``.

May import: the workbench layer's own modules and every layer below (core, connection, inspection, engine).
Never ops or the command line.
"""

from sbqueue.workbench.reports.index import _STAMPED as _STAMPED
from sbqueue.workbench.reports.index import summary_of, timestamped, update_index, verdict_of, write_index
from sbqueue.workbench.reports.locate import (
    RUNBOOK_DIR,
    copy_runbooks,
    find_runbook,
    installed_runbooks,
    runbook_dir,
    title_of,
)
from sbqueue.workbench.reports.params import (
    DURATION_UNITS,
    Parameter,
    describe_parameters,
    parameters,
    parse_parameters,
    runbook_parameters,
)
from sbqueue.workbench.reports.running import KERNEL_ARGS, run, to_html

__all__ = [
    "DURATION_UNITS",
    "KERNEL_ARGS",
    "RUNBOOK_DIR",
    "Parameter",
    "copy_runbooks",
    "describe_parameters",
    "find_runbook",
    "installed_runbooks",
    "parameters",
    "parse_parameters",
    "run",
    "runbook_dir",
    "runbook_parameters",
    "summary_of",
    "timestamped",
    "title_of",
    "to_html",
    "update_index",
    "verdict_of",
    "write_index",
]
