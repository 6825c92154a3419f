"""The verdict banner a report opens with: the outcome word in its colour, the cause in one sentence, what was
done (dry run, actions applied, how it was verified) and what a human must do.

The banner's output also carries the plain-text verdict (``text/plain``) and ``{"sbqueue": {"outcome", "cause",
"todo", "verdict"}}`` metadata: the report index and ``sbqueue report`` read the verdict from there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sbqueue.workbench.render.html import COLOURS, NEUTRAL, Html, badge, esc
from sbqueue.workbench.render.units import tidy
from sbqueue.workbench.runbook.finding import ACTION_NEEDED, FIXED, NOT_FOUND, OK, Finding

#: the key of a banner's output metadata
METADATA_KEY = "sbqueue"


def cause_sentence(finding: Finding) -> str:
    """The cause in one sentence: what is wrong (or not found, or fine), and where."""
    if finding.outcome == NOT_FOUND:
        text = finding.not_found or next((p.not_found for p in finding.parts if p.not_found), "") or ""
        return text[:1].upper() + text[1:] + "."
    if finding.parts:
        wrong = [p for p in finding.parts if p.outcome != OK]
        if not wrong:
            return f"All {len(finding.parts)} queues are fine."
        return "; ".join(f"queue {p.queue!r}: {p.cause}" for p in wrong).capitalize() + "."
    where = "Redis" if finding.queue == "*" else f"Queue {finding.queue!r}"
    if finding.outcome == OK:
        return f"{where}: {finding.summary}."
    return f"{where}: {finding.cause} — {finding.summary}."


def _planned(finding: Finding) -> list[str]:
    plan = finding.plan
    return list(plan[plan["automatic"]]["action"]) if len(plan) else []


def what_was_done(finding: Finding, *, dry_run: bool) -> list[str]:
    """Lines: the dry run (and what it would have done), the actions applied, how the result was verified."""
    outcome = finding.outcome
    if outcome == NOT_FOUND:
        return ["Nothing changed."]
    if outcome == OK:
        return ["Nothing changed: there is nothing to fix."]
    planned = _planned(finding)
    if finding.applied:
        lines = [f"Applied: {line}" for line in finding.applied]
    elif planned and dry_run:
        return [f"Dry run — nothing changed. Would apply: {', '.join(planned)}."]
    elif planned:
        lines = ["Applied the plan, but nothing needed changing."]
    else:
        return ["Nothing changed: no automatic fix applies (see what a human must do)."]
    if finding.verified is not None:
        fixed, seen = finding.verified
        lines.append(f"Verified: {'fixed' if fixed else 'NOT fixed'} — {seen}.")
    return lines


def todo(finding: Finding) -> list[str]:
    """What a human must do (empty for OK and FIXED)."""
    outcome = finding.outcome
    if outcome == NOT_FOUND:
        return ["Check the queue name and the prefix (rerun with -p queue NAME -p prefix PREFIX): "
                "the queues and prefixes that do exist are listed above."]  # fmt: skip
    if outcome != ACTION_NEEDED:
        return []
    # one line per action: "start a worker: X" and "start a worker: (why) X" say the same thing twice
    seen: set[str] = set()
    needed = []
    for line in finding.actions_needed():
        action = line.split(":", 1)[0] if ":" in line else line
        if action not in seen:
            seen.add(action)
            needed.append(line)
    return needed


def banner(finding: Finding, *, dry_run: bool = True, applied: Sequence[str] | None = None,
           context: dict[str, Any] | None = None) -> Html:  # fmt: skip
    """The report's first output: the outcome word and cause, what was done and what a human must do.

    ``applied`` defaults to what ``finding.apply()`` returned; ``context`` (e.g. Redis URL, prefix) is shown
    small at the bottom with the time of the run."""
    if applied is not None and not finding.applied:
        finding.applied = list(applied)
    word = finding.outcome
    cause = tidy(cause_sentence(finding))
    done = [tidy(line) for line in what_was_done(finding, dry_run=dry_run)]
    needed = [tidy(line) for line in todo(finding)]
    if finding.parts and len(finding.parts) > 1:
        rows = "".join(f"<li>{badge_small(p.outcome)} <b>{esc(p.queue)}</b>: "
                       f"{esc(tidy(f'{p.cause} — {p.summary}'))}</li>" for p in finding.parts)  # fmt: skip
        per_queue = f"<h4>Per queue</h4><ul>{rows}</ul>"
    else:
        per_queue = ""
    return _render(word, cause, done, needed, finding.verdict(), title=finding.runbook, extra=per_queue,
                   context=context)  # fmt: skip


def badge_small(word: str) -> str:
    colour = COLOURS.get(word, NEUTRAL)[0]
    return (f"<span style='background:{colour};color:#fff;font-weight:700;font-size:.8em;padding:0 .4em;"
            f"border-radius:4px'>{esc(word)}</span>")  # fmt: skip


def summary_banner(word: str, cause: str, *, done: Sequence[str] = (), needed: Sequence[str] = (),
                   title: str = "", context: dict[str, Any] | None = None) -> Html:  # fmt: skip
    """A banner without a Finding (e.g. the queue report: ``REPORT`` and a one-sentence summary)."""
    verdict = "\n".join([f"{word}: {cause}", *(f"  {d}" for d in done), *(f"  needs a human: {n}" for n in needed)])
    return _render(word, cause, list(done), list(needed), verdict, title=title, extra="", context=context)


def _render(word: str, cause: str, done: list[str], needed: list[str], verdict: str, *, title: str, extra: str,
            context: dict[str, Any] | None) -> Html:  # fmt: skip
    colour, background = COLOURS.get(word, NEUTRAL)
    items = "".join(f"<li>{esc(line)}</li>" for line in done)
    style = f"border-color:{colour};background:{background}"
    body = [f"<div class='sbq-banner' style='{style}' data-outcome='{esc(word)}'>",
            f"<div>{badge(word)}<span class='sbq-cause'>{esc(cause)}</span></div>"]  # fmt: skip
    if done:
        body.append(f"<h4>What was done</h4><ul>{items}</ul>")
    if needed:
        body.append("<h4>What a human must do</h4><ul>" + "".join(f"<li>{esc(n)}</li>" for n in needed) + "</ul>")
    elif word in (OK, FIXED):
        body.append("<h4>What a human must do</h4><ul><li>Nothing.</li></ul>")
    body.append(extra)
    meta = {"runbook": title, **(context or {}), "run at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    body.append("<div class='sbq-meta'>" + " · ".join(f"{esc(k)}: {esc(v)}" for k, v in meta.items() if v) + "</div>")
    body.append("</div>")
    todo_text = "; ".join(needed) if needed else ("nothing" if word in (OK, FIXED) else "")
    metadata = {METADATA_KEY: {"outcome": word, "cause": cause, "todo": todo_text, "verdict": verdict}}
    return Html("".join(body), verdict, metadata=metadata)
