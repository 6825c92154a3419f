"""The processor as something a fresh interpreter can import: an import path, checked in the parent.

A worker with ``processes=n`` runs its processor in child processes started from a clean interpreter (they are
spawned, never forked), so the processor cannot be handed over as an object: each child imports it again.
:func:`processor_target` turns what the user gave — ``"package.module:function"`` or a module-level function —
into a :class:`ProcessorTarget` and proves, in the parent, that importing it gives back the same callable;
:meth:`ProcessorTarget.load` is what the child runs. Every refusal is an :class:`InvalidOptionError` raised
before the worker connects, so nothing is written and no job is taken.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from typing import Any

from sbqueue.errors import InvalidOptionError

#: the module name a script run as ``python script.py`` gets in the children (multiprocessing's choice too):
#: the script's ``if __name__ == "__main__":`` block does not run again there
CHILD_MAIN = "__mp_main__"


@dataclasses.dataclass(frozen=True)
class ProcessorTarget:
    """Where a child finds the processor: ``module`` (or the script at ``main_path``) and a dotted ``attr``."""

    module: str
    attr: str
    main_path: str | None = None

    def __str__(self) -> str:
        return f"{self.main_path or self.module}:{self.attr}"

    def load(self) -> Any:
        """Import the processor (in a child; raises what the import raises)."""
        if self.main_path is not None:
            return _walk(_load_main(self.main_path), self.attr)
        return _walk(importlib.import_module(self.module), self.attr)


def resolve(processor: Any) -> Any:
    """The callable an import path names (any mode: ``Worker(q, "pkg.mod:fn")`` works with threads too)."""
    if isinstance(processor, str):
        return _import(_parse(processor))
    if not callable(processor):
        raise InvalidOptionError(f"processor must be callable or an import path 'module:function', got "
                                 f"{processor!r}", option="processor")  # fmt: skip
    return processor


def processor_target(processor: Any) -> ProcessorTarget:
    """How children import ``processor`` (an import path string or a module-level callable); refuses what a
    child could not import: lambdas, nested functions, bound methods, partials, notebook-defined functions."""
    if isinstance(processor, str):
        target = _parse(processor)
        _import(target)
        return target
    module_name = getattr(processor, "__module__", None)
    qualname = getattr(processor, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
        raise InvalidOptionError(
            f"with processes, the processor must be a module-level function (children import it again), got "
            f"{processor!r}; pass it as 'package.module:function' or define it at the top of a module",
            option="processor",
        )
    module = sys.modules.get(module_name)
    found = _walk(module, qualname) if module is not None else None
    main_path = None
    if module_name == "__main__":
        module_name, main_path = _main_module()
    if found is not processor:  # e.g. a bound method, or a name rebound since
        raise InvalidOptionError(
            f"with processes, the processor must be importable as {module_name}:{qualname}, but that names "
            f"{found!r}, not {processor!r}; pass the import path 'package.module:function'",
            option="processor",
        )
    return ProcessorTarget(module_name, qualname, main_path)


def _parse(path: str) -> ProcessorTarget:
    module, _, attr = path.partition(":")
    if not module or not attr or ":" in attr:
        raise InvalidOptionError(f"processor must look like package.module:function, got {path!r}", option="processor")
    return ProcessorTarget(module, attr)


def _import(target: ProcessorTarget) -> Any:
    try:
        module = importlib.import_module(target.module)
    except ImportError as exc:
        raise InvalidOptionError(f"cannot import {target.module!r}: {exc}", option="processor") from None
    fn = _walk(module, target.attr)
    if fn is None:
        raise InvalidOptionError(f"{target.module!r} has no attribute {target.attr!r}", option="processor")
    if not callable(fn):
        raise InvalidOptionError(f"{target} is not callable, got {fn!r}", option="processor")
    return fn


def _walk(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _main_module() -> tuple[str, str | None]:
    """A function defined in ``__main__``: run as ``python -m pkg.mod`` the children import ``pkg.mod``; run as
    ``python script.py`` they load the script as :data:`CHILD_MAIN`; in a notebook there is nothing to import."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name != "__main__":
        return name, None
    path = getattr(main, "__file__", None)
    if not isinstance(path, str):
        raise InvalidOptionError(
            "with processes, the processor must live in a module children can import (a .py file); a function "
            "defined in a notebook or an interactive session cannot be: move it to a module",
            option="processor",
        )
    return CHILD_MAIN, path


def _load_main(path: str) -> Any:
    # as multiprocessing's spawn does: the child's __main__ becomes the script, under another __name__, so that
    # exceptions and classes it defines pickle to and from the parent's __main__
    spec = importlib.util.spec_from_file_location(CHILD_MAIN, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the main script {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[CHILD_MAIN] = sys.modules["__main__"] = module
    spec.loader.exec_module(module)
    return module
