"""The verdict of a runbook: :class:`Finding` (cause, evidence, plan; apply and verify) and its outcome words.

Every ``diagnose_*`` function returns one Finding; the outcome words (``OK``, ``FIXED``, ``ACTION NEEDED``,
``NOT FOUND``) are the first word of every runbook report. The tables a Finding holds (checks, plan) have fixed
columns and dtypes, so an empty plan still has the columns a notebook filters on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pandas as pd

from sbqueue.engine import audit
from sbqueue.errors import InvalidOptionError

#: the columns (and dtypes) of :attr:`Finding.plan` and :attr:`Finding.checks`
PLAN_COLUMNS = {"action": "string", "target": "string", "jobs": "int64", "automatic": "bool", "detail": "string"}
CHECK_COLUMNS = {"check": "string", "result": "bool", "evidence": "string"}


def frame_of(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    """``rows`` as a frame with exactly ``columns`` and their dtypes (also when there are no rows)."""
    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype(columns) if len(df) else pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


#: the outcome words: every runbook ends in exactly one
OK, FIXED, ACTION_NEEDED, NOT_FOUND = "OK", "FIXED", "ACTION NEEDED", "NOT FOUND"
OUTCOMES = (OK, FIXED, ACTION_NEEDED, NOT_FOUND)


@dataclasses.dataclass
class Finding:
    """A diagnosis: the cause, the evidence, the plan — and how to apply and verify it.

    :attr:`outcome` is one of :data:`OUTCOMES`: ``OK`` (nothing wrong), ``FIXED`` (applied, the cause is gone
    and the queue makes progress), ``ACTION NEEDED`` (:meth:`actions_needed` says what a human must do) or
    ``NOT FOUND`` (the queue or prefix does not exist; :attr:`not_found` lists what does)."""

    runbook: str
    queue: str
    cause: str
    summary: str
    checks: pd.DataFrame
    plan: pd.DataFrame
    _apply: Callable[[], list[str]] | None = None
    _verify: Callable[[], tuple[Any, ...]] | None = None
    applied: list[str] = dataclasses.field(default_factory=list)
    verified: tuple[bool, str] | None = None
    ok: bool = False
    not_found: str | None = None
    parts: list[Finding] = dataclasses.field(default_factory=list)
    _ran_apply: bool = False
    _after: str | None = None
    #: (client, prefix) the audit trail of this finding's actions goes to
    audit_to: tuple[Any, str] | None = None

    def apply(self, *, confirm: bool = False) -> list[str]:
        """Carry out the automatic actions of the plan. Refuses unless ``confirm=True``."""
        if not confirm:
            raise InvalidOptionError("apply() changes Redis: call apply(confirm=True)", option="confirm")
        if self.parts:
            self.applied = [line for part in self.parts for line in part.apply(confirm=True)]
        else:
            with audit.acting(f"runbook:{self.runbook}"):  # its queue calls land in the audit trail
                self.applied = self._apply() if self._apply else []
        self._ran_apply = True
        return self.applied

    def carry_out(self, *, dry_run: bool) -> None:
        """What a runbook does after diagnosing: nothing when OK or NOT FOUND; with ``dry_run``, record the plan
        in the audit trail (:meth:`record_dry_run`); otherwise :meth:`apply` it and :meth:`verify` the result."""
        if self.outcome in (OK, NOT_FOUND):
            return
        if dry_run:
            self.record_dry_run()
            return
        self.apply(confirm=True)
        self.verify()

    def record_dry_run(self) -> int:
        """Write the automatic actions of the plan to the audit trail as ``dry-run`` entries (what would have been
        done; nothing else changes). Returns how many entries were written."""
        if self.parts:
            return sum(part.record_dry_run() for part in self.parts)
        if self.audit_to is None or not len(self.plan):
            return 0
        client, prefix = self.audit_to
        automatic = self.plan[self.plan["automatic"]]
        with audit.acting(f"runbook:{self.runbook}", dry_run=True):
            for _, row in automatic.iterrows():
                audit.note(client, prefix, str(row["action"]), self.queue, count=int(row["jobs"]), result="planned",
                           params={"target": str(row["target"]), "detail": str(row["detail"])})  # fmt: skip
        return len(automatic)

    def verify(self) -> tuple[bool, str]:
        """Re-inspect: (fixed?, what was seen). Watches the queue for jobs being fetched where that matters."""
        if self.parts:
            results = [part.verify() for part in self.parts]
            self.verified = (
                all(r[0] for r in results),
                "; ".join(f"{p.queue}: {r[1]}" for p, r in zip(self.parts, results, strict=True)),
            )
            return self.verified
        if self.outcome in (OK, NOT_FOUND):
            self.verified = (True, "nothing to fix")
            return self.verified
        result = self._verify() if self._verify else (True, "nothing to verify")
        self.verified = (bool(result[0]), str(result[1]))
        self._after = result[2] if len(result) > 2 else None
        return self.verified

    def _manual(self) -> pd.DataFrame:
        return self.plan[~self.plan["automatic"]] if len(self.plan) else self.plan

    @property
    def outcome(self) -> str:
        """``OK``, ``FIXED``, ``ACTION NEEDED`` or ``NOT FOUND`` (see the class docstring)."""
        if self.parts:
            words = {part.outcome for part in self.parts}
            for word in (ACTION_NEEDED, NOT_FOUND, FIXED):
                if word in words:
                    return word
            return OK
        if self.not_found is not None:
            return NOT_FOUND
        if self.ok and not len(self.plan):
            return OK
        did = bool(len(self.plan)) and bool(self.plan["automatic"].any())
        if did and self._ran_apply and self.verified is not None and self.verified[0] and not len(self._manual()):
            return FIXED
        return ACTION_NEEDED

    def actions_needed(self) -> list[str]:
        """What a human must do, specifically (empty unless the outcome is ``ACTION NEEDED``)."""
        if self.parts:
            return [f"{part.queue}: {a}" for part in self.parts for a in part.actions_needed()]
        if self.outcome != ACTION_NEEDED:
            return []
        needed = []
        planned = bool(len(self.plan)) and bool(self.plan["automatic"].any())
        if not planned:  # nothing was to be applied: what verify saw is the diagnosis again
            pass
        elif self.verified is not None and not self.verified[0]:
            needed.append(self._after or f"the fix did not hold ({self.verified[1]})")
        elif self.verified is not None and self._after:
            needed.append(self._after)
        auto = self.plan[self.plan["automatic"]] if len(self.plan) else self.plan
        if len(auto) and not self._ran_apply:
            needed.append(
                f"apply the plan ({', '.join(auto['action'])}): rerun with dry_run = False "
                f"(sbqueue report {self.runbook} -p dry_run false ...)"
            )
        for _, row in self._manual().iterrows():
            needed.append(f"{row['action']}: {row['detail']}")
        return list(dict.fromkeys(needed)) or [self.summary]

    def headline(self) -> str:
        """One line: the outcome word and its reason."""
        outcome = self.outcome
        if outcome == NOT_FOUND:
            text = self.not_found or ""
            if self.parts:
                text = next(p.not_found for p in self.parts if p.not_found)
        elif outcome == ACTION_NEEDED:
            text = self.actions_needed()[0]
            if self.applied and not self.parts:
                text += f" (done: {'; '.join(self.applied)})"
        elif outcome == FIXED:
            text = "; ".join(self.applied) if self.applied else self.summary
        else:
            text = self.summary
        return f"{outcome}: {text}"

    def verdict(self) -> str:
        """A plain-text summary for the report: the outcome first, then the cause, evidence and what was done."""
        if self.parts:
            lines = [self.headline()]
            lines += [f"  {a}" for a in self.actions_needed()[1:]]
            return "\n".join(lines + [part.verdict() for part in self.parts])
        lines = [self.headline(), f"[{self.runbook}] queue {self.queue!r}: {self.cause}", f"  {self.summary}"]
        fired = self.checks[self.checks["result"]] if len(self.checks) else self.checks
        for _, row in fired.iterrows():
            lines.append(f"  evidence: {row['check']}: {row['evidence']}")
        if self.applied:
            lines += [f"  done: {a}" for a in self.applied]
        elif len(self.plan) and self.plan["automatic"].any() and not self._ran_apply:
            auto = self.plan[self.plan["automatic"]]
            lines.append(f"  planned (dry run, nothing changed): {', '.join(auto['action'])}")
        for _, row in self._manual().iterrows():
            lines.append(f"  needs a human: {row['action']} ({row['detail']})")
        planned = bool(len(self.plan)) and bool(self.plan["automatic"].any())
        if self.verified is not None and self._ran_apply and planned and self.outcome not in (OK, NOT_FOUND):
            lines.append(f"  verified: {'fixed' if self.verified[0] else 'NOT fixed'} ({self.verified[1]})")
        return "\n".join(lines)
