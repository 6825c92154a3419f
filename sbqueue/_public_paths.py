"""The public module paths, kept stable while the code lives in its layer's folder.

``from sbqueue import runbook``, ``import sbqueue.widgets`` and ``from sbqueue.charts import latency`` keep
working although the code is in ``sbqueue/workbench/``: each public name below is an alias of the module
that holds the code — the same module object (not a copy), so private helpers and monkeypatching behave
as on the real path. Nothing is imported until first use: ``import sbqueue`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

#: public name -> the module that holds the code
ALIASES = {
    "acl": "sbqueue.ops.acl",
    "backup": "sbqueue.engine.backup",
    "charts": "sbqueue.workbench.charts",
    "clients": "sbqueue.connection.clients",
    "embedded": "sbqueue.connection.embedded",
    "exporter": "sbqueue.ops.exporter",
    "reports": "sbqueue.workbench.reports",
    "runbook": "sbqueue.workbench.runbook",
    "scenarios": "sbqueue.workbench.scenarios",
    "widgets": "sbqueue.workbench.widgets",
}
_FULL = {f"sbqueue.{name}": target for name, target in ALIASES.items()}


def real_name(fullname: str) -> str | None:
    """``sbqueue.widgets._data`` -> ``sbqueue.workbench.widgets._data``; None if not an alias."""
    for alias, target in _FULL.items():
        if fullname == alias or fullname.startswith(alias + "."):
            return target + fullname[len(alias):]
    return None


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an aliased path to the real module object (registered under both names)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        real = real_name(fullname)
        if real is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self) -> None:
        self._real_specs: dict[str, Any] = {}  # real module name -> its own spec (keyed: imports may overlap)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        real = importlib.import_module(real_name(spec.name) or spec.name)
        self._real_specs.setdefault(real.__name__, real.__spec__)
        return real

    def exec_module(self, module: ModuleType) -> None:
        # the import machinery stamped the alias spec on the real module: give it back its own
        module.__spec__ = self._real_specs[module.__name__]


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())


def load(name: str) -> ModuleType:
    """The real module behind public name ``name`` (for ``sbqueue.__getattr__``)."""
    return importlib.import_module(f"sbqueue.{name}")
