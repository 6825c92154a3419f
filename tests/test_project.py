"""Project invariants: the public API, generated code, packaging files, script headers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

import sbqueue

ROOT = Path(__file__).resolve().parent.parent

PUBLIC_API = sorted([
    "AsyncQueue", "ClusterKeyError", "ConfigurationError", "ConnectionFailedError", "DataError", "DelayedError",
    "Inspector", "InvalidJobIdError", "InvalidOptionError", "InvalidQueueNameError", "InvalidStateError", "Job",
    "JobControl",
    "JobLockedError", "JobNotFoundError", "JobState", "JobStateError", "LockMismatchError", "Queue", "QueueEvents",
    "RateLimitError", "RedisVersionError", "SbqueueError", "ScriptError", "UnknownOptionError", "UnrecoverableError",
    "Worker",
    "__version__", "connect", "mask_url",
])  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert sorted(sbqueue.__all__) == PUBLIC_API
    for name in sbqueue.__all__:
        assert hasattr(sbqueue, name), name


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
    assert project["scripts"]["sbqueue"] == "sbqueue.cli:main"


def test_every_error_derives_from_sbqueue_error() -> None:
    from sbqueue import errors

    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == errors.__name__:
            if issubclass(cls, errors.JobControl):
                assert not issubclass(cls, errors.SbqueueError)  # processor signals stay apart
            else:
                assert issubclass(cls, errors.SbqueueError), cls
