"""A runbook's parameters, typed: read from its tagged parameters cell, parsed from ``sbqueue report -p NAME VALUE``.

Each parameter's type comes from its default (bool, int, float, list, str, or None: an optional string); numeric
parameters named ``*_s``/``*_ms``/``*_hours``/... also take durations (``30s``, ``5m``). Values are checked here,
before any kernel starts, so a typo fails fast with the accepted values. ``ast.literal_eval`` (literals only) reads
defaults and list values: this is the one place in sbqueue that parses Python literals.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sbqueue.errors import ParameterError
from sbqueue.workbench.reports.locate import find_runbook


def parameters(runbook: str) -> dict[str, Any]:
    """The runbook's parameters (name -> default source text), from its tagged cell."""
    import papermill

    return {k: v["default"] for k, v in papermill.inspect_notebook(str(find_runbook(runbook))).items()}


_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_NONE = ("none", "null")
#: seconds per duration unit (``30s``, ``5m``, ``1.5h``, ``2d``, ``250ms``)
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
#: a numeric parameter whose name ends in one of these is a duration in that unit (``window_s``, ``max_age_hours``)
_DURATION_SUFFIXES = {"_ms": 0.001, "_s": 1.0, "_min": 60.0, "_hours": 3600.0, "_h": 3600.0, "_days": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One parameter of a runbook's parameters cell: its default, the comment after it, and its type."""

    name: str
    default: Any
    default_text: str
    help: str
    kind: str  # "bool", "int", "float", "str", "list", "optional" (default None: a string or None)
    unit_s: float | None = None  # a duration parameter: seconds per unit of its value

    def accepted(self) -> str:
        """The accepted values, in words."""
        if self.kind == "bool":
            return "true/false, yes/no, 1/0 (any case)"
        if self.kind in ("int", "float"):
            number = "an integer" if self.kind == "int" else "a number"
            if self.unit_s is not None:
                return f"{number} or a duration such as 30s, 5m, 1.5h, 2d"
            return number
        if self.kind == "list":
            return "a Python list literal, e.g. [1, 4, 16]"
        if self.kind == "optional":
            return "a string, or None"
        return "a string"

    def parse(self, text: str) -> Any:
        """The typed value of ``text``; :class:`~sbqueue.errors.ParameterError` if it does not fit."""
        raw = text.strip()
        if self.kind == "optional" and raw.lower() in _NONE:
            return None
        if self.kind == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
        elif self.kind in ("int", "float"):
            value = self._number(raw)
            if value is not None:
                return value
        elif self.kind == "list":
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = None
            if isinstance(value, list):
                return value
        else:
            if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
                return raw[1:-1]
            return text
        raise ParameterError(f"parameter {self.name}: {text!r} is not accepted; accepted values: {self.accepted()} "
                             f"(default {self.default_text})", option=self.name)  # fmt: skip

    def _number(self, raw: str) -> int | float | None:
        match = _DURATION.match(raw)
        if not match:
            try:  # scientific notation, a sign: plain numbers only
                number = float(raw) if self.kind == "float" else int(raw)
            except ValueError:
                return None
            return number if math.isfinite(number) else None
        amount, unit = float(match.group(1)), match.group(2).lower()
        if unit:
            if self.unit_s is None or unit not in DURATION_UNITS:
                return None
            amount = amount * DURATION_UNITS[unit] / self.unit_s
        if self.kind == "int":
            return int(amount) if amount == int(amount) else None
        return amount


def runbook_parameters(runbook: str) -> dict[str, Parameter]:
    """The typed parameters of a runbook (by name or path), in the order of its parameters cell."""
    import papermill

    found = papermill.inspect_notebook(str(find_runbook(runbook)))
    out = {}
    for name, info in found.items():
        text = str(info.get("default", "None"))
        try:
            default = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            default = text
        if isinstance(default, bool):
            kind = "bool"
        elif isinstance(default, int):
            kind = "int"
        elif isinstance(default, float):
            kind = "float"
        elif isinstance(default, list):
            kind = "list"
        elif default is None:
            kind = "optional"
        else:
            kind = "str"
        unit = next((u for suffix, u in _DURATION_SUFFIXES.items() if name.endswith(suffix)), None)
        out[name] = Parameter(name, default, text, str(info.get("help", "")), kind,
                              unit if kind in ("int", "float") else None)  # fmt: skip
    return out


def parse_parameters(runbook: str, pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``sbqueue report -p NAME VALUE`` pairs -> typed values, checked against the runbook's parameters cell
    before any kernel starts. Raises :class:`~sbqueue.errors.ParameterError` naming the parameter and the
    accepted values (or the parameters the runbook takes)."""
    specs = runbook_parameters(runbook)
    out: dict[str, Any] = {}
    for name, text in pairs:
        spec = specs.get(name)
        if spec is None:
            raise ParameterError(f"runbook {Path(runbook).stem} has no parameter {name!r}; it takes: "
                                 f"{', '.join(specs)} (sbqueue report {runbook} --help)", option=name)  # fmt: skip
        out[name] = spec.parse(text)
    return out


def describe_parameters(runbook: str) -> str:
    """The runbook's parameters as help text: name, accepted values, default, comment."""
    specs = runbook_parameters(runbook)
    width = max((len(n) for n in specs), default=0)
    lines = [f"parameters of {Path(runbook).stem} (-p NAME VALUE):"]
    for spec in specs.values():
        lines.append(f"  {spec.name:<{width}}  default {spec.default_text}; {spec.accepted()}")
        lines.append(f"  {'':<{width}}  {spec.help}")
    return "\n".join(lines)
