"""Project invariants: the public API, generated code, packaging files, script headers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

import sbqueue

ROOT = Path(__file__).resolve().parent.parent

PUBLIC_API = sorted([
    "AsyncQueue", "AsyncQueueEventsProducer", "BackupError", "BackupFormatError", "BackupVersionError",
    "ClusterKeyError", "ConfigurationError", "ConnectionFailedError", "DataError", "DelayedError",
    "History",
    "Inspector", "InvalidJobIdError", "InvalidOptionError", "InvalidQueueNameError", "InvalidStateError", "Job",
    "JobControl",
    "JobLockedError", "JobNotFoundError", "JobState", "JobStateError", "LockMismatchError", "Queue", "QueueEvents",
    "QueueEventsProducer",
    "QueueExistsError", "QueueNotFoundError",
    "RateLimitError", "Recorder", "RedisVersionError", "SbqueueError", "ScriptError", "UnknownOptionError",
    "UnrecoverableError",
    "Worker", "WorkerProcessError",
    "__version__", "connect", "mask_url",
    # flows
    "AsyncFlowProducer", "FlowJob", "FlowProducer", "InvalidFlowError", "JobNode", "ParentNotFoundError",
    "WaitingChildrenError",
    # waiting for a job to end
    "JobFailedError", "WaitTimeoutError",
    # reliability
    "RedisFullError", "ReplicationTimeoutError",
    # tracing
    "OtelTelemetry", "Telemetry",
    # worker control: cancelling a job
    "Cancellation", "JobCancelledError",
])  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert sorted(sbqueue.__all__) == PUBLIC_API
    for name in sbqueue.__all__:
        assert hasattr(sbqueue, name), name


#: module paths users and the runbook notebooks import: the layout may move code, never these
PUBLIC_MODULES = {
    "acl": "sbqueue.ops.acl",
    "backup": "sbqueue.engine.backup",
    "charts": "sbqueue.workbench.charts",
    "cli": "sbqueue.cli",
    "clients": "sbqueue.connection.clients",
    "connection": "sbqueue.connection",
    "embedded": "sbqueue.connection.embedded",
    "errors": "sbqueue.errors",
    "exporter": "sbqueue.ops.exporter",
    "history": "sbqueue.history",
    "inspection": "sbqueue.inspection",
    "reports": "sbqueue.workbench.reports",
    "runbook": "sbqueue.workbench.runbook",
    "scenarios": "sbqueue.workbench.scenarios",
    "widgets": "sbqueue.workbench.widgets",
}


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_public_module_paths_stay(name: str) -> None:
    """``from sbqueue import <name>`` and ``import sbqueue.<name>`` give the module that holds the code."""
    import importlib

    real = importlib.import_module(PUBLIC_MODULES[name])
    assert getattr(sbqueue, name) is real
    assert importlib.import_module(f"sbqueue.{name}") is real


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import version

    assert sbqueue.__version__ == version("sbqueue")


def test_sync_flavour_is_generated_from_async() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "unasync.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout


def test_environment_yml_agrees_with_pyproject() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = env["dependencies"]
    assert any(str(d).startswith("python=") for d in deps if isinstance(d, str))
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-e .[notebook,embedded]"]  # the package itself, so pyproject stays the one dependency list
    extras = set(project["optional-dependencies"])
    assert {"notebook", "embedded", "dev", "all"} <= extras
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    low = project["requires-python"].removeprefix(">=")
    assert tuple(int(x) for x in python.split("=")[1].split(".")) >= tuple(int(x) for x in low.split("."))


def test_console_script_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["sbqueue"] == "sbqueue.cli.app:main"


def test_every_error_derives_from_sbqueue_error() -> None:
    from sbqueue import errors

    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == errors.__name__:
            if issubclass(cls, errors.JobControl):
                assert not issubclass(cls, errors.SbqueueError)  # processor signals stay apart
            else:
                assert issubclass(cls, errors.SbqueueError), cls


def test_constraints_pin_every_dependency_within_the_declared_ranges() -> None:
    """constraints.txt (what `make test` and CI install) pins each dependency of every extra to one version that
    pyproject.toml allows, so a fresh clone installs exactly what the suite was last green with."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt line {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra != "bench":  # the benchmark peers are installed by `make bench` only
            declared += [r for r in reqs if not r.startswith("sbqueue[")]
    for text in declared:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt (run make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def test_dead_letter_surface_is_pinned() -> None:
    """Dead-letter queues (README, "Dead-letter queues"): the option, the replay, the inspection and the runbook."""
    import inspect as _inspect

    from sbqueue import runbook
    from sbqueue.inspection import Inspector, QueueInspector

    assert "dead_letter_queue" in _inspect.signature(sbqueue.Worker).parameters
    assert "dead_letter_queue" in _inspect.signature(sbqueue.Queue.add).parameters
    for cls in (sbqueue.Queue, sbqueue.AsyncQueue):
        params = list(_inspect.signature(cls.replay_dead_letters).parameters)
        assert params == ["self", "name", "source_queue", "failed_reason", "since", "until", "job_ids", "limit", "to",
                          "dry_run", "batch_size"]  # fmt: skip
    assert callable(Inspector.dead_letters) and callable(QueueInspector.dead_letters)
    assert {"diagnose_dead_letters", "with_dead_letters"} <= set(runbook.__all__)
