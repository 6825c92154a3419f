"""The report renderer: human units, no NaN/None/NaT/<NA>/-0.0 in text, "none" for empty tables, sections that
vanish when empty, the verdict banner per outcome word, and the report index read from the banner."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from sbqueue.workbench import render, reports
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of

BAD = ("<NA>", "NaN", "NaT", "None", "nan", "-0.0", "…")


def visible(html: str) -> str:
    """The text a browser shows (tags and the stylesheet dropped)."""
    return unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.S)))


def test_bytes_durations_and_times_in_human_units(monkeypatch: pytest.MonkeyPatch) -> None:
    assert render.human_bytes(512) == "512 B"
    assert render.human_bytes(1536) == "1.5 KB"
    assert render.human_bytes(6_489_062) == "6.2 MB"
    assert render.human_duration(0.85) == "850 ms"
    assert render.human_duration(42) == "42 s"
    assert render.human_duration(180) == "3 min"
    assert render.human_duration(7200) == "2 h"
    assert render.human_duration(-0.0) == "0 s"
    assert render.human_duration(dt.timedelta(minutes=5)) == "5 min"
    monkeypatch.setenv("TZ", "UTC")
    stamp = pd.Timestamp("2026-12-05 14:03:07", tz="UTC")
    assert render.human_time(stamp).startswith("2026-12-05 14:03:07 UTC")  # 24 h
    assert render.human_time(stamp.value // 1_000_000).startswith("2026-12-05 14:03:07 UTC")  # epoch ms


def test_local_time_is_added_when_it_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        text = render.human_time(pd.Timestamp("2026-12-05 14:03:07", tz="UTC"))
        assert text.startswith("2026-12-05 14:03:07 UTC (15:03:07 ")
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("missing", [None, np.nan, float("nan"), pd.NA, pd.NaT, np.datetime64("NaT")])
def test_missing_values_read_as_a_dash(missing: object) -> None:
    for kind in ("text", "number", "time", "duration", "bytes", "percent"):
        assert render.cell_text(missing, kind) == render.MISSING


def test_table_has_units_no_index_and_no_missing_words() -> None:
    df = pd.DataFrame({
        "id": pd.array(["7", None], dtype="string"),
        "wait_s": [0.85, np.nan],
        "bytes": pd.array([1536, None], dtype="Int64"),
        "finished_on": pd.to_datetime([1_764_943_387_000, None], unit="ms", utc=True),
        "failure_rate": [0.25, -0.0],
        "delta": [-0.0, 3.0],
        "names": [{"b", "a"}, set()],
        "ok": [True, False],
        "reason": ["x" * 300, "limit None for -0.0 s"],
    }, index=[41, 42])  # fmt: skip
    out = render.table(df)
    html = out._repr_html_()
    text = visible(html)
    for word in BAD:
        assert word not in text, word
    assert "41" not in text and "42" not in text  # no index column
    assert "850 ms" in text and "1.5 KB" in text and "25.0%" in text and "a, b" in text and "yes" in text
    assert "2025-12-05 14:03:07 UTC" in text
    assert "x" * 300 in text  # wrapped by CSS, never cut
    assert ">wait<" in html and ">finished<" in html  # headers without the unit suffix
    assert "white-space:normal" in html and "text-overflow:clip" in html


def test_empty_table_reads_none_and_an_empty_section_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = pd.DataFrame({"a": pd.Series(dtype="int64")})
    out = render.table(empty)
    assert out.empty and "none" in out._repr_html_() and "<th>" not in out._repr_html_()
    assert render.table(None, none="no worker is connected").text == "no worker is connected"
    shown: list[object] = []
    monkeypatch.setattr("sbqueue.workbench.render.sections._display", shown.append)
    render.section("Nothing", out, None, pd.DataFrame())
    assert shown == []
    render.section("Workers", render.table(None, none="no worker is connected"), always=True)
    assert len(shown) == 2 and "no worker is connected" in str(shown[1])
    shown.clear()
    render.section("Rows", pd.DataFrame({"a": [1]}))
    assert "Rows" in str(shown[0]) and isinstance(shown[1], render.Html)


def test_widget_or_note_in_a_static_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(render.REPORT_ENV, "1")
    note = render.widget_or_note(lambda: pytest.fail("no widget in a static report"), "Triage")
    assert "Triage is interactive" in note.text and "sbqueue lab" in note.text
    monkeypatch.delenv(render.REPORT_ENV)
    assert render.widget_or_note(lambda: "widget", "Triage") == "widget"


def finding(*, automatic: bool, manual: bool = False, ok: bool = False, not_found: str | None = None,
            verify: tuple[bool, str] = (True, "jobs are fetched")) -> Finding:  # fmt: skip
    plan = []
    if automatic:
        plan.append({"action": "resume", "target": "q", "jobs": 3, "automatic": True, "detail": "resume the queue"})
    if manual:
        plan.append({"action": "start a worker", "target": "q", "jobs": 3, "automatic": False,
                     "detail": "sbqueue worker q MODULE:FUNCTION"})  # fmt: skip
    checks = frame_of([{"check": "paused", "result": True, "evidence": "meta.paused='1'"}], CHECK_COLUMNS)
    return Finding("stuck-jobs", "q", "paused", "the queue is paused with 3 runnable jobs", checks,
                   frame_of(plan, PLAN_COLUMNS), lambda: ["resumed q"], lambda: verify, ok=ok,
                   not_found=not_found)  # fmt: skip


def banner_of(f: Finding, *, dry_run: bool) -> tuple[str, str]:
    out = render.banner(f, dry_run=dry_run, context={"prefix": "bull"})
    data, meta = out._repr_mimebundle_()
    assert meta["sbqueue"]["verdict"] == f.verdict() == data["text/plain"]
    assert meta["sbqueue"]["outcome"] == f.outcome
    text = visible(data["text/html"])
    for word in BAD:
        assert word not in text, word
    return f.outcome, text


def test_banner_ok() -> None:
    word, text = banner_of(finding(automatic=False, ok=True), dry_run=True)
    assert word == "OK" and text.index("OK") < text.index("paused with 3") and "Nothing." in text


def test_banner_fixed_says_what_was_applied_and_how_it_was_verified() -> None:
    f = finding(automatic=True)
    f.apply(confirm=True)
    f.verify()
    word, text = banner_of(f, dry_run=False)
    assert word == "FIXED"
    assert "Applied: resumed q" in text and "Verified: fixed — jobs are fetched" in text and "Nothing." in text


def test_banner_action_needed_dry_run_and_manual() -> None:
    word, text = banner_of(finding(automatic=True, manual=True), dry_run=True)
    assert word == "ACTION NEEDED"
    assert "Dry run — nothing changed. Would apply: resume." in text
    assert "What a human must do" in text and "start a worker" in text and "dry_run = False" in text
    f = finding(automatic=True, verify=(False, "cause now: no workers"))
    f.apply(confirm=True)
    f.verify()
    word, text = banner_of(f, dry_run=False)
    assert word == "ACTION NEEDED" and "Verified: NOT fixed — cause now: no workers" in text


def test_banner_not_found_lists_what_exists() -> None:
    f = finding(automatic=False, not_found="queue 'nope' does not exist under prefix 'bull'; queues under 'bull': a")
    word, text = banner_of(f, dry_run=True)
    assert word == "NOT FOUND" and "Queue 'nope' does not exist" in text and "queues under 'bull': a" in text
    assert "Check the queue name and the prefix" in text


def test_banner_colour_differs_per_outcome() -> None:
    colours = {word: render.COLOURS[word][0] for word in ("OK", "FIXED", "ACTION NEEDED", "NOT FOUND")}
    assert len(set(colours.values())) == 4
    f = finding(automatic=False, ok=True)
    assert colours["OK"] in render.banner(f)._repr_html_()


def test_index_reads_the_banner(tmp_path: Path) -> None:
    f = finding(automatic=True, manual=True)
    data, meta = render.banner(f, dry_run=True)._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("banner", outputs=[nbformat.v4.new_output("display_data", data=data,
                                                                                    metadata=meta)]),
                nbformat.v4.new_code_cell("evidence", outputs=[nbformat.v4.new_output("stream", text="x\n")])]
    path = tmp_path / "stuck-jobs-q-20261205-140307.ipynb"
    nbformat.write(nb, str(path))
    assert reports.verdict_of(path) == f.verdict()
    assert reports.summary_of(path)["outcome"] == "ACTION NEEDED"
    assert "start a worker" in reports.summary_of(path)["todo"]
    path.with_suffix(".html").write_text("<html></html>")
    page = reports.update_index(tmp_path).read_text()
    assert "ACTION NEEDED" in page and "2026-12-05 14:03:07" in page and "paused with 3 runnable jobs" in page
    assert "what a human must do" in page and "start a worker" in page
    assert "stuck-jobs-q-20261205-140307.html" in page and render.COLOURS["ACTION NEEDED"][0] in page
