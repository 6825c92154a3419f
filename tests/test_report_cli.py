"""`sbqueue report`: parameters typed by the runbook's parameters cell and rejected before a kernel starts,
per-runbook --help, and timestamped reports (a failed run never replaces the last good one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from sbqueue import cli, reports, scenarios
from sbqueue.errors import InvalidOptionError, ParameterError, SbqueueError


def test_parameters_are_typed() -> None:
    parse = reports.parse_parameters
    for text, value in [("false", False), ("FALSE", False), ("no", False), ("0", False), ("True", True),
                        ("yes", True), ("1", True), ("On", True)]:  # fmt: skip
        assert parse("stuck-jobs", [("dry_run", text)]) == {"dry_run": value}, text
    assert parse("redis-health", [("window_s", "30s")]) == {"window_s": 30.0}
    assert parse("redis-health", [("window_s", "5m")]) == {"window_s": 300.0}
    assert parse("redis-health", [("window_s", "2.5")]) == {"window_s": 2.5}
    assert parse("redis-memory", [("max_age_hours", "30m"), ("top", "5")]) == {"max_age_hours": 0.5, "top": 5}
    assert parse("queue-report", [("window_min", "2h")]) == {"window_min": 120}
    assert parse("stuck-jobs", [("queue", "None"), ("prefix", "app")]) == {"queue": None, "prefix": "app"}
    assert parse("failed-jobs", [("queue", "emails"), ("signature", "invalid email")]) == {
        "queue": "emails", "signature": "invalid email"}  # fmt: skip
    assert parse("failed-jobs", [("since", "2026-01-01T00:00:00")]) == {"since": "2026-01-01T00:00:00"}


@pytest.mark.parametrize(
    ("runbook", "name", "value", "accepted"),
    [("stuck-jobs", "dry_run", "maybe", "true/false, yes/no, 1/0"),
     ("redis-memory", "top", "many", "an integer"),
     ("redis-memory", "top", "5m", "an integer"),  # top is a count, not a duration
     ("redis-health", "window_s", "5 parsecs", "a number or a duration such as 30s"),
     ("queue-report", "window_min", "1.5", "an integer"),
     ("redis-health", "window_s", "nan", "a number")],
)  # fmt: skip
def test_wrong_values_are_rejected(runbook: str, name: str, value: str, accepted: str) -> None:
    with pytest.raises(ParameterError) as info:
        reports.parse_parameters(runbook, [(name, value)])
    assert isinstance(info.value, InvalidOptionError) and isinstance(info.value, SbqueueError)
    assert f"parameter {name}: {value!r} is not accepted" in str(info.value) and accepted in str(info.value)
    assert info.value.option == name


def test_unknown_parameter_names_the_known_ones() -> None:
    with pytest.raises(ParameterError, match="has no parameter 'queeue'; it takes: redis_url, prefix, queue"):
        reports.parse_parameters("stuck-jobs", [("queeue", "x")])


def test_cli_rejects_before_the_kernel_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "stuck-jobs", "-p", "dry_run", "maybe"]) == 2
    err = capsys.readouterr().err
    assert "parameter dry_run: 'maybe' is not accepted; accepted values: true/false" in err
    assert not (tmp_path / "reports").exists()  # nothing ran, nothing written


def test_report_help_lists_the_runbook_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "failed-jobs", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: sbqueue report" in out and "(default: reports)" in out  # defaults shown
    assert "parameters of failed-jobs (-p NAME VALUE):" in out
    assert "dry_run" in out and "default True; true/false, yes/no, 1/0" in out
    assert "retry_permanent" in out and "also retry permanent failures" in out  # the comment
    assert cli.main(["report", "--help"]) == 0
    assert "parameters of" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:  # argparse's usage + error
        cli.main(["report"])
    assert info.value.code == 2 and "give a runbook" in capsys.readouterr().err


@pytest.mark.notebook
def test_reports_are_timestamped_and_a_failed_run_keeps_the_good_one(
    tmp_path: Path, r: redis.Redis, prefix: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("SBQUEUE_REDIS_URL", redis_url)
    monkeypatch.chdir(tmp_path)
    scenarios.stalled(r, prefix, "st", jobs=1, lock_duration=500)
    assert cli.main(["report", "stalled-jobs", "-p", "prefix", prefix, "-p", "queue", "st"]) == 0
    captured = capfd.readouterr()  # the kernel's own output too (fd level)
    assert "[stalled-jobs] queue 'st'" in captured.out
    assert "without encryption" not in captured.err and "WARNING" not in captured.err
    (good,) = (tmp_path / "reports").glob("stalled-jobs-*.html")
    assert reports._STAMPED.match(good.name)
    # a run that fails in the kernel (mode is checked by the runbook code) keeps its own -failed report
    assert cli.main(["report", "stalled-jobs", "-p", "prefix", prefix, "-p", "mode", "bogus"]) == 2
    assert "failed run's report" in capfd.readouterr().err
    assert good.exists()
    (failed,) = (tmp_path / "reports").glob("stalled-jobs-*-failed.html")
    index = (tmp_path / "reports" / "index.html").read_text()
    assert f"href='{good.name}'" in index and "newest run FAILED" in index and failed.name in index



def test_bad_url_names_the_cli_flag(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from sbqueue import connection

    monkeypatch.setattr(connection.factory, "URL_HINT", connection.factory.URL_HINT)  # restored after the test
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = cli.main(["demo", "--url", f"redis://127.0.0.1:{port}/0", "--reports", "unused"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach Redis" in err
    assert "pass --url URL" in err and "url=..." not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--help"], ["report    run a runbook", "each has --help"]),
     (["server", "--help"], ["stop: stop it", "status: print its details", "keeps running between commands"]),
     (["worker", "--help"], ["--concurrency CONCURRENCY", "(default: 10)", "(default: bull)"]),
     (["exporter", "--help"], ["(default: 9121)", "(default: all)"]),
     (["demo", "--help"], ["sbqueue server stop", "(default: 200)"]),
     (["runbooks", "copy", "--help"], ["where to write the copies"]),
     (["lab", "--help"], ["SBQUEUE_REDIS_URL", "(default: sbqueue-lab)", "(default: 8888)"])],
)  # fmt: skip
def test_help_describes_commands_with_defaults(argv: list[str], expected: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in expected:
        assert " ".join(text.split()) in out, (argv, text)
