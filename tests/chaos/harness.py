"""The chaos run: producers and worker processes on one queue while workers are SIGKILLed, Redis is
restarted, client connections are killed and the queue is paused — then an account of every job.

Ground truth is kept outside the engine: producers remember every job whose add returned (its id and
the unique key in its data), the test processor (:mod:`tests.chaos.processor`) records every execution
with the fetch token, the worker pid and its start/end times, and the harness remembers every kill and
restart with wall-clock times. At the end (producers stopped, queue drained, workers SIGTERMed) the
harness compares that with what Redis says: job states, the events stream and the metrics.

Run it directly for a big size (the pytest wrapper is ``tests/chaos/test_chaos.py``)::

    python -m tests.chaos.harness --jobs 100000 --workers 4

Redis is a ``redis-server`` the harness starts itself with sbqueue's embedded settings
(:data:`sbqueue.connection.embedded.CONFIG`: AOF ``everysec`` and RDB save points) on a fixed port, so a restart
keeps the URL and every client reconnects to the same address. The restart is a ``SHUTDOWN`` (the
server fsyncs the AOF and saves before it exits: nothing acknowledged is lost) unless
``redis_restart_mode="sigkill"``, which kills the server process with SIGKILL. Redis write()s the AOF
before it replies, so a killed *process* loses nothing either (the everysec fsync window only matters
when the machine itself goes down, which this harness cannot simulate); should a lost job show up in
that mode, the account says whether its add was acknowledged within the ~1 s window before the kill.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import sbqueue
from sbqueue import embedded
from sbqueue.connection.embedded import free_port
from tests.chaos.recorder import RecorderProc, account_recorder

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "chaos"
PROCESSOR = "tests.chaos.processor:process"
MAX_LEN_EVENTS = 50_000_000  # never trimmed during a run: every event of every job stays readable
STALLED_REASON = "job stalled more than allowable limit"
AOF_WINDOW_MS = 1_000  # appendfsync everysec: at most ~1 s of writes can be lost on SIGKILL
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, OSError)  # sbqueue.ConnectionFailedError is an OSError

T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def retrying(fn: Callable[[], T], deadline_s: float = 60.0, what: str = "redis call") -> T:
    """Call ``fn`` until it does not raise a connection error (Redis restarting, connection killed)."""
    deadline = time.monotonic() + deadline_s
    delay = 0.05
    while True:
        try:
            return fn()
        except RETRYABLE:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: Redis still unreachable after {deadline_s} s") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


# --- the Redis server ------------------------------------------------------------------------------
class RedisServer:
    """A ``redis-server`` child process with sbqueue's embedded settings on a fixed port.

    Unlike :func:`sbqueue.connection.embedded.ensure_server` (which picks a new free port at every start), a
    restart here reuses the port, so clients reconnect to the same URL. Data lives in ``home`` (AOF).
    """

    def __init__(self, home: str | os.PathLike[str], binary: str | None = None, port: int | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.binary = binary or embedded.bundled_binary() or embedded.find_binary()
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.home / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        args = [self.binary, "--port", str(self.port), "--dir", str(self.home), "--daemonize", "no",
                "--logfile", str(self.log)]  # fmt: skip
        for key, value in embedded.CONFIG.items():
            args += [f"--{key}", *value.split(" ")] if key == "save" else [f"--{key}", value]
        return args

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **kwargs)

    def answers(self) -> bool:
        client = self.client(socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.answers():
                # answering PING is not enough while the AOF is still loading
                with contextlib.closing(self.client(socket_timeout=5)) as c:
                    while time.monotonic() < deadline:
                        try:
                            if int(c.info("persistence").get("loading", 0)) == 0:
                                return
                        except redis.BusyLoadingError:
                            pass
                        time.sleep(0.02)
            time.sleep(0.02)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"redis-server on port {self.port} did not start; log tail:\n{tail}")

    def stop(self, mode: str = "shutdown", timeout: float = 30.0) -> None:
        """``shutdown``: SHUTDOWN (fsync AOF + save, nothing acknowledged is lost); ``sigkill``: kill -9."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if mode == "sigkill":
            proc.kill()
        else:
            client = self.client(socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
            try:
                client.shutdown()
            except redis.ConnectionError:
                pass  # the server closed the connection: it is going away
            except redis.RedisError:
                proc.terminate()  # SIGTERM also saves
            finally:
                client.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def close(self) -> None:
        self.stop("shutdown", timeout=10)


# --- configuration and result ------------------------------------------------------------------------
@dataclasses.dataclass
class ChaosConfig:
    jobs: int = 5_000
    workers: int = 3
    producers: int = 3
    concurrency: int = 16
    seconds: float = 20.0  # the chaos window: producers spread their adds over it; kills run during it
    kill_every: float = 1.0
    client_kills: int = 3
    redis_restarts: int = 1
    redis_restart_mode: str = "shutdown"  # or "sigkill" (AOF everysec: ~1 s of writes may be lost)
    redis_downtime: float = 1.0
    pause_seconds: float = 1.5
    lock_duration: int = 2_000
    stalled_interval: int = 1_000
    max_stalled_count: int = 1  # the engine default: a job stalled twice is failed — the explicit failure rule
    bulk_size: int = 50
    drain_timeout: float = 120.0
    prefix: str = "chaos"
    recorder: bool = True  # `sbqueue record` beside the workers, SIGKILLed and restarted mid-run
    seed: int | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> ChaosConfig:
        """Sizes from ``SBQUEUE_CHAOS_*`` environment variables (``make chaos`` sets them)."""
        jobs = env_int("SBQUEUE_CHAOS_JOBS", cls.jobs)
        cfg = cls(
            jobs=jobs,
            workers=env_int("SBQUEUE_CHAOS_WORKERS", cls.workers),
            producers=env_int("SBQUEUE_CHAOS_PRODUCERS", cls.producers),
            concurrency=env_int("SBQUEUE_CHAOS_CONCURRENCY", cls.concurrency),
            # long enough that the workers keep up with the adds (so the chaos hits processing)
            seconds=env_float("SBQUEUE_CHAOS_SECONDS", max(cls.seconds, jobs / 1_500)),
            redis_restart_mode=os.environ.get("SBQUEUE_CHAOS_RESTART_MODE", cls.redis_restart_mode),
            max_stalled_count=env_int("SBQUEUE_CHAOS_MAX_STALLED", cls.max_stalled_count),
            seed=env_int("SBQUEUE_CHAOS_SEED", 0) or None,
        )
        return dataclasses.replace(cfg, **overrides)


@dataclasses.dataclass
class ChaosResult:
    jobs: int
    workers: int
    kills: int
    redis_restarts: int
    client_kills: int
    lost: int
    duplicates: int
    duplicates_explained: int
    seconds: float
    problems: list[str]
    details: dict[str, Any]

    def summary(self) -> str:
        return (
            f"CHAOS jobs={self.jobs} workers={self.workers} kills={self.kills} redis_restarts={self.redis_restarts} "
            f"client_kills={self.client_kills} lost={self.lost} duplicates={self.duplicates} "
            f"duplicates_explained={self.duplicates_explained} seconds={self.seconds:.1f}"
        )

    def report(self) -> str:
        lines = [self.summary(), "chaos details: " + json.dumps(self.details, sort_keys=True, default=str)]
        lines += [f"chaos problem: {p}" for p in self.problems]
        return "\n".join(lines)


# --- producers ---------------------------------------------------------------------------------------
class Producer(threading.Thread):
    """Adds ``count`` jobs paced over the chaos window: half as ``add_bulk`` batches with custom ids
    (idempotent when retried), half as single ``add`` calls with auto ids. A job counts as added only
    once its add returned; an add that raised is retried (and its key remembered as *ambiguous*: the
    failed attempt may have been written)."""

    def __init__(self, n: int, url: str, cfg: ChaosConfig, count: int, t0: float, stop: threading.Event) -> None:
        super().__init__(name=f"chaos-producer-{n}", daemon=True)
        self.n, self.url, self.cfg, self.count, self.t0, self.stop = n, url, cfg, count, t0, stop
        self.rng = random.Random((cfg.seed or 0) * 1000 + n)
        self.added: dict[str, tuple[str, int]] = {}  # job id -> (data key, ms the add returned)
        self.ambiguous: set[str] = set()  # data keys whose add raised at least once
        self.add_errors = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException:
            self.error = traceback.format_exc()

    def _retry(self, fn: Callable[[], T], keys: list[str]) -> T:
        delay = 0.05
        deadline = time.monotonic() + 120
        while True:
            try:
                return fn()
            except RETRYABLE:
                self.add_errors += 1
                self.ambiguous.update(keys)
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _run(self) -> None:
        cfg = self.cfg
        queue = retrying(lambda: sbqueue.Queue(QUEUE, self.url, prefix=cfg.prefix, max_len_events=MAX_LEN_EVENTS))
        try:
            seq = 0
            while seq < self.count and not self.stop.is_set():
                due = self.t0 + cfg.seconds * seq / self.count
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                if self.rng.random() < 0.5:
                    size = min(self.rng.randint(1, cfg.bulk_size), self.count - seq)
                    keys = [f"p{self.n}-{seq + i}" for i in range(size)]
                    entries = [{"name": "chaos", "data": {"k": k}, "opts": {"job_id": f"j-{k}"}} for k in keys]
                    jobs = self._retry(lambda entries=entries: queue.add_bulk(entries), keys)
                    done = now_ms()
                    for key, job in zip(keys, jobs, strict=True):
                        assert job.id == f"j-{key}", (job.id, key)
                        self.added[job.id] = (key, done)
                    seq += size
                else:
                    key = f"p{self.n}-{seq}"
                    job = self._retry(lambda key=key: queue.add("chaos", {"k": key}), [key])
                    self.added[job.id] = (key, now_ms())
                    seq += 1
        finally:
            queue.close()


# --- worker processes --------------------------------------------------------------------------------
@dataclasses.dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    killed_at: int | None = None  # ms, when we sent SIGKILL


class WorkerPool:
    def __init__(self, cfg: ChaosConfig, url: str, logdir: Path) -> None:
        self.cfg, self.url, self.logdir = cfg, url, logdir
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.alive: list[WorkerProc] = []
        self.gone: list[WorkerProc] = []
        self.crashed: list[str] = []
        self.spawned = 0

    def command(self, name: str) -> list[str]:
        c = self.cfg
        return [sys.executable, "-m", "sbqueue", "worker", QUEUE, PROCESSOR, "--url", self.url, "--prefix", c.prefix,
                "--concurrency", str(c.concurrency), "--name", name, "--lock-duration", str(c.lock_duration),
                "--stalled-interval", str(c.stalled_interval), "--max-stalled-count", str(c.max_stalled_count),
                "--shutdown-timeout", "10"]  # fmt: skip

    def spawn(self) -> WorkerProc:
        name = f"w{self.spawned}"
        self.spawned += 1
        log = self.logdir / f"{name}.log"
        env = {**os.environ, "SBQUEUE_REDIS_URL": self.url, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as fh:
            proc = subprocess.Popen(self.command(name), cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        wp = WorkerProc(name, proc, log, time.monotonic())
        self.alive.append(wp)
        return wp

    def ready(self, client: redis.Redis) -> bool:
        """Every live worker is up: its named connection is registered, which it does after
        installing its SIGTERM handler (a worker SIGTERMed before that dies with -15, as any process)."""
        names = {c.get("name", "") for c in client.client_list()}
        suffix = f"{self.cfg.prefix}:"
        return all(any(n.startswith(suffix) and n.endswith(f":w:{wp.name}") for n in names) for wp in self.alive)

    def wait_ready(self, client: redis.Redis, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if retrying(lambda: self.ready(client)):
                return True
            time.sleep(0.05)
        return False

    def kill_random(self, rng: random.Random) -> WorkerProc | None:
        if not self.alive:
            return None
        victim = rng.choice(self.alive)
        victim.killed_at = now_ms()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        self.alive.remove(victim)
        self.gone.append(victim)
        self.spawn()
        return victim

    def check(self) -> None:
        """A worker that exited without being killed by us crashed: record it and replace it."""
        for wp in list(self.alive):
            code = wp.proc.poll()
            if code is not None:
                self.crashed.append(describe_exit(wp, code))
                self.alive.remove(wp)
                self.gone.append(wp)
                self.spawn()

    def terminate_all(self, timeout: float = 30.0) -> list[str]:
        """SIGTERM every worker; return problems (a worker that does not exit 0 in time)."""
        problems = []
        for wp in self.alive:
            wp.proc.send_signal(signal.SIGTERM)
        for wp in self.alive:
            try:
                code = wp.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                wp.proc.kill()
                wp.proc.wait(10)
                problems.append(f"worker {wp.name} did not exit within {timeout} s of SIGTERM")
                continue
            if code != 0:
                tail = wp.log.read_text(errors="replace")[-1500:]
                problems.append(f"worker {wp.name} exited {code} after SIGTERM; log tail:\n{tail}")
        self.gone += self.alive
        self.alive = []
        return problems

    def kill_all(self) -> None:
        for wp in self.alive:
            with contextlib.suppress(ProcessLookupError):
                wp.proc.kill()
            wp.proc.wait(10)
        self.gone += self.alive
        self.alive = []

    def killed_pids(self) -> dict[int, int]:
        return {wp.proc.pid: wp.killed_at for wp in self.gone if wp.killed_at is not None}


def describe_exit(wp: WorkerProc, code: int) -> str:
    """Why a worker process we did not kill exited: the last sbqueue frame of a traceback, or the
    CLI's start-up error line."""
    text = wp.log.read_text(errors="replace")
    lines = text.splitlines()
    kind = "exited"
    if "Traceback" in text:
        frames = [i for i, line in enumerate(lines) if "/sbqueue/" in line and line.strip().startswith("File")]
        where = " | ".join(x.strip() for x in lines[frames[-1] : frames[-1] + 2]) if frames else "?"
        kind = f"crashed with a traceback (last sbqueue frame: {where}; {lines[-1].strip()})"
    elif "cannot reach Redis" in text:
        kind = (
            "exited at start-up: its first connection failed ("
            + next(line for line in lines if "cannot reach Redis" in line).strip()[:200]
            + ")"
        )
    return f"worker {wp.name} (pid {wp.proc.pid}) {kind}, exit code {code}; log: {wp.log}"


def lock_lost_warnings(pool: WorkerPool) -> list[tuple[str, str]]:
    """(worker name, job id) of every 'lock for job X was lost while processing' log line."""
    out = []
    for wp in pool.gone + pool.alive:
        for line in wp.log.read_text(errors="replace").splitlines():
            if "was lost while processing" in line:
                out.append((wp.name, line.split("lock for job ", 1)[1].split(" ", 1)[0]))
    return out


# --- the run -------------------------------------------------------------------------------------------
def queue_backlog(q: sbqueue.Queue) -> int:
    counts = q.get_job_counts("waiting", "active", "delayed", "prioritized", "paused", "waiting-children")
    return sum(counts.values())


def run_chaos(cfg: ChaosConfig, home: str | os.PathLike[str], log: Callable[[str], None] = print) -> ChaosResult:
    """Start Redis in ``home``, run the chaos scenario, account for every job."""
    rng = random.Random(cfg.seed)
    home = Path(home)
    server = RedisServer(home / "redis")
    server.start()
    url = server.url
    pool = WorkerPool(cfg, url, home / "logs")
    admin_client = server.client(socket_timeout=10)
    admin = sbqueue.Queue(QUEUE, admin_client, prefix=cfg.prefix, max_len_events=MAX_LEN_EVENTS)
    stop = threading.Event()
    producers: list[Producer] = []
    recorder = RecorderProc(url, cfg.prefix, QUEUE, home / "history", home / "logs") if cfg.recorder else None
    try:
        # the events stream length is recorded before anything emits an event
        admin_client.hset(admin.keys.key("meta"), "opts.maxLenEvents", MAX_LEN_EVENTS)
        for _ in range(cfg.workers):
            pool.spawn()
        if recorder is not None:
            recorder.start()
        t0 = time.monotonic()
        started_ms = now_ms()
        share = [cfg.jobs // cfg.producers + (1 if i < cfg.jobs % cfg.producers else 0) for i in range(cfg.producers)]
        producers = [Producer(i, url, cfg, share[i], t0, stop) for i in range(cfg.producers)]
        for p in producers:
            p.start()
        timeline = chaos_loop(cfg, rng, t0, server, pool, admin, admin_client, producers, log, recorder)
        for p in producers:
            p.join()
        chaos_end = time.monotonic()
        # drain: no more chaos; every job must reach completed/failed
        deadline = time.monotonic() + cfg.drain_timeout
        backlog = -1
        while time.monotonic() < deadline:
            pool.check()
            backlog = retrying(lambda: queue_backlog(admin))
            if backlog == 0:
                break
            time.sleep(0.2)
        drain_s = time.monotonic() - chaos_end
        problems = [] if pool.wait_ready(admin_client) else ["a worker never registered its connection"]
        problems += pool.terminate_all()
        elapsed = time.monotonic() - t0
        if backlog != 0:
            problems.append(f"queue not drained after {cfg.drain_timeout} s: {queue_backlog(admin)} jobs left "
                            f"({admin.get_job_counts()})")  # fmt: skip
        result = account(cfg, server, admin, producers, pool, timeline, problems, started_ms)
        result.seconds = elapsed
        result.details["drain_seconds"] = round(drain_s, 1)
        result.details["home"] = str(home)
        if recorder is not None:
            found, trouble = account_recorder(recorder, admin_client, admin.keys.key("events"),
                                              exact=cfg.redis_restart_mode == "shutdown")
            result.details.update(found)
            result.problems += trouble
        return result
    finally:
        stop.set()
        for p in producers:
            p.join(30)
        pool.kill_all()
        if recorder is not None:
            recorder.kill()
        admin.close()
        admin_client.close()
        server.close()


@dataclasses.dataclass
class Timeline:
    restarts: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (down ms, up ms)
    client_kills: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (ms, connections killed)
    pauses: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (paused ms, resumed ms)
    kills: int = 0


def chaos_loop(
    cfg: ChaosConfig,
    rng: random.Random,
    t0: float,
    server: RedisServer,
    pool: WorkerPool,
    admin: sbqueue.Queue,
    admin_client: redis.Redis,
    producers: list[Producer],
    log: Callable[[str], None],
    recorder: RecorderProc | None = None,
) -> Timeline:
    tl = Timeline()
    # the recorder is killed once, mid-window, and restarted a second later (events keep coming meanwhile)
    recorder_kill_at: float | None = t0 + cfg.seconds * 0.45 if recorder is not None else None
    recorder_restart_at: float | None = None
    restart_at = [t0 + cfg.seconds * (i + 1) / (cfg.redis_restarts + 1) for i in range(cfg.redis_restarts)]
    # spread the client kills over the window, clear of the restarts
    client_kill_at = [t0 + cfg.seconds * (i + 0.6) / (cfg.client_kills + 0.5) for i in range(cfg.client_kills)]
    pause_at: float | None = t0 + cfg.seconds * 0.3 if cfg.pause_seconds > 0 else None
    resume_at: float | None = None
    next_kill = t0 + cfg.kill_every
    while (any(p.is_alive() for p in producers) or restart_at or client_kill_at or pause_at or resume_at
           or recorder_kill_at or recorder_restart_at):
        now = time.monotonic()
        pool.check()
        if recorder is not None and recorder_kill_at is not None and now >= recorder_kill_at:
            recorder_kill_at = None
            recorder.kill()
            recorder_restart_at = now + 1.0
            log("chaos: recorder SIGKILLed")
        if recorder is not None and recorder_restart_at is not None and now >= recorder_restart_at:
            recorder_restart_at = None
            recorder.start()
        elif recorder is not None and recorder_restart_at is None:
            recorder.supervise()  # restarted like systemd would when it exits on its own
        if now >= next_kill and any(p.is_alive() for p in producers):
            victim = pool.kill_random(rng)
            if victim is not None:
                tl.kills += 1
            next_kill = now + cfg.kill_every
        if restart_at and now >= restart_at[0] and retrying(lambda: pool.ready(admin_client)):
            restart_at.pop(0)
            down = now_ms()
            server.stop(cfg.redis_restart_mode)
            time.sleep(cfg.redis_downtime)
            server.start()
            tl.restarts.append((down, now_ms()))
            log(f"chaos: redis restarted ({cfg.redis_restart_mode}), down {now_ms() - down} ms")
        if client_kill_at and now >= client_kill_at[0]:
            client_kill_at.pop(0)
            killed = retrying(lambda: admin_client.execute_command("CLIENT", "KILL", "TYPE", "normal"))
            tl.client_kills.append((now_ms(), int(killed)))
        if pause_at is not None and now >= pause_at:
            pause_at = None
            retrying(admin.pause)
            tl.pauses.append((now_ms(), 0))
            resume_at = time.monotonic() + cfg.pause_seconds
        if resume_at is not None and time.monotonic() >= resume_at:
            resume_at = None
            retrying(admin.resume)
            tl.pauses[-1] = (tl.pauses[-1][0], now_ms())
        time.sleep(0.02)
    return tl


# --- the account ------------------------------------------------------------------------------------------
def read_stream(client: redis.Redis, key: str, chunk: int = 10_000) -> Iterator[tuple[str, dict[str, str]]]:
    last = "-"
    while True:
        batch = client.xrange(key, min=last, max="+", count=chunk)
        if last != "-" and batch and batch[0][0] == last:
            batch = batch[1:]
        if not batch:
            return
        yield from batch
        last = batch[-1][0]


def hashes(client: redis.Redis, keys: list[str], fields: tuple[str, ...], chunk: int = 2_000) -> list[list[Any]]:
    out: list[list[Any]] = []
    for i in range(0, len(keys), chunk):
        with client.pipeline(transaction=False) as pipe:
            for key in keys[i : i + chunk]:
                pipe.hmget(key, *fields)
            out += pipe.execute()
    return out


def account(
    cfg: ChaosConfig,
    server: RedisServer,
    admin: sbqueue.Queue,
    producers: list[Producer],
    pool: WorkerPool,
    tl: Timeline,
    problems: list[str],
    started_ms: int,
) -> ChaosResult:
    r = server.client(socket_timeout=60)
    try:
        return _account(cfg, r, admin, producers, pool, tl, problems, started_ms)
    finally:
        r.close()


def _account(
    cfg: ChaosConfig,
    r: redis.Redis,
    admin: sbqueue.Queue,
    producers: list[Producer],
    pool: WorkerPool,
    tl: Timeline,
    problems: list[str],
    started_ms: int,
) -> ChaosResult:
    keys = admin.keys
    jprefix = f"{cfg.prefix}:{QUEUE}:"
    problems = list(problems) + pool.crashed
    for p in producers:
        if p.error:
            problems.append(f"producer {p.n} failed:\n{p.error}")
    added: dict[str, tuple[str, int]] = {}
    ambiguous: set[str] = set()
    for p in producers:
        added.update(p.added)
        ambiguous |= p.ambiguous
    key_of_added = {key: job_id for job_id, (key, _t) in added.items()}

    completed = set(r.zrange(keys.key("completed"), 0, -1))
    failed = set(r.zrange(keys.key("failed"), 0, -1))
    done = set(r.smembers(f"{cfg.prefix}:chaos:done"))
    runs: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)  # id -> [(token, pid, start, end)]
    for field, value in r.hscan_iter(f"{cfg.prefix}:chaos:runs", count=5_000):
        job_id, token = field.rsplit(" ", 1)
        pid, start, end = (int(x) for x in value.split())
        runs[job_id].append((token, pid, start, end))

    # the events stream
    events: dict[str, Counter[str]] = defaultdict(Counter)
    kinds: Counter[str] = Counter()
    active_while_paused = 0
    paused = False
    first_event = None
    for _eid, fields in read_stream(r, keys.key("events")):
        name = fields.get("event", "")
        first_event = first_event or name
        kinds[name] += 1
        if name == "paused":
            paused = True
        elif name == "resumed":
            paused = False
        elif name == "active" and paused:
            active_while_paused += 1
        if "jobId" in fields:
            events[fields["jobId"]][name] += 1
    if active_while_paused:
        problems.append(f"{active_while_paused} jobs were fetched (active event) while the queue was paused")
    if first_event != "added":
        problems.append(f"the events stream does not start with the first add (first event {first_event!r}): trimmed?")

    # every job the producers were told was added: present, and completed (or failed by the rule)
    added_ids = sorted(added)
    rows = hashes(r, [jprefix + i for i in added_ids], ("name", "returnvalue", "finishedOn", "failedReason", "stc"))
    lost_ids = []
    failed_by_rule = []
    bad_failed = []
    bad_returnvalue = []
    for job_id, (name, returnvalue, finished, reason, stc) in zip(added_ids, rows, strict=True):
        if name is None or (job_id not in completed and job_id not in failed):
            lost_ids.append(job_id)
            continue
        if job_id in failed:
            stalls = events[job_id]["stalled"]
            if reason == STALLED_REASON and int(stc or 0) > cfg.max_stalled_count and stalls == int(stc or 0):
                failed_by_rule.append(job_id)
            else:
                bad_failed.append(f"{job_id} reason={reason!r} stc={stc} stalled_events={stalls}")
            continue
        expected = json.dumps({"k": added[job_id][0]}, separators=(",", ":"))
        if finished is None or returnvalue is None or json.loads(returnvalue) != json.loads(expected):
            bad_returnvalue.append(f"{job_id} returnvalue={returnvalue!r} finishedOn={finished!r}")
    if bad_failed:
        problems.append(f"{len(bad_failed)} jobs failed outside the test rule: {bad_failed[:10]}")
    if bad_returnvalue:
        problems.append(f"{len(bad_returnvalue)} completed jobs with a wrong result: {bad_returnvalue[:10]}")

    lost_in_window = []
    for job_id in lost_ids:
        t_added = added[job_id][1]
        if any(down - AOF_WINDOW_MS - 200 <= t_added <= down for down, _up in tl.restarts):
            lost_in_window.append(job_id)
    if lost_ids:
        sample = lost_ids[:10]
        state = {i: admin.get_job_state(i) for i in sample}
        problems.append(
            f"{len(lost_ids)} added jobs are not completed/failed ({len(lost_in_window)} acknowledged within the "
            f"AOF fsync window before a SIGKILL restart); sample states {state}; events "
            f"{ {i: dict(events[i]) for i in sample} }"
        )

    # jobs nobody was told about: an add that raised (or that redis-py retried after a lost reply)
    phantoms = sorted((completed | failed) - set(added))
    phantom_keys = hashes(r, [jprefix + i for i in phantoms], ("data",))
    phantom_unexplained = []
    phantom_silent = 0
    for job_id, (data,) in zip(phantoms, phantom_keys, strict=True):
        key = json.loads(data).get("k") if data else None
        if key in ambiguous:
            continue
        if key in key_of_added:
            phantom_silent += 1  # a lost reply the client retried by itself: same data, second auto id
            continue
        phantom_unexplained.append(f"{job_id} data={data!r}")
    if phantom_unexplained:
        problems.append(f"{len(phantom_unexplained)} jobs nobody added: {phantom_unexplained[:10]}")

    # executions: one per job unless the job was recovered (stalled) or its run overlapped a kill/restart
    killed = pool.killed_pids()
    duplicates = explained = 0
    by_reason: Counter[str] = Counter()
    unexplained: list[str] = []
    for job_id, job_runs in runs.items():
        extra = len(job_runs) - 1
        if extra <= 0:
            continue
        duplicates += extra
        reasons = set()
        if events[job_id]["stalled"]:
            reasons.add("stalled_event")
        for _token, pid, start, end in job_runs:
            if pid in killed and start <= killed[pid]:
                reasons.add("worker_killed")
            if any(down - AOF_WINDOW_MS <= end and start <= up + cfg.lock_duration for down, up in tl.restarts):
                reasons.add("redis_restart")
        for reason in reasons:
            by_reason[reason] += extra
        if reasons:
            explained += extra
        else:
            unexplained.append(f"{job_id} runs={sorted(job_runs, key=lambda x: x[2])} events={dict(events[job_id])}")
    if unexplained:
        problems.append(f"{len(unexplained)} jobs ran more than once without a stalled event: {unexplained[:10]}")
    dup_without_stalled = sum(
        len(v) - 1 for k, v in runs.items() if len(v) > 1 and not events[k]["stalled"]
    )  # fmt: skip

    # 'lock lost' warnings: a real loss means another worker took the job over (after a stalled recovery);
    # a warning for a job that never stalled and ran once is a false alarm
    lock_warnings = lock_lost_warnings(pool)
    false_lock_warnings = [
        f"{name}:{job_id}"
        for name, job_id in lock_warnings
        if not events[job_id]["stalled"] and len(runs.get(job_id, [])) <= 1
    ]

    # counts, events and metrics against the ground truth
    metrics_completed = admin.get_metrics("completed")["meta"]["count"]
    metrics_failed = admin.get_metrics("failed")["meta"]["count"]
    counts = admin.get_job_counts()
    completed_events = {i for i, c in events.items() if c["completed"]}
    failed_events = {i for i, c in events.items() if c["failed"]}
    twice = [i for i, c in events.items() if c["completed"] + c["failed"] > 1]
    added_events = {i for i, c in events.items() if c["added"]}
    added_twice = [i for i, c in events.items() if c["added"] > 1]
    if added_twice:
        problems.append(f"{len(added_twice)} job ids have more than one 'added' event: {added_twice[:10]}")
    checks = {
        "ZCARD completed == metrics:completed count": (len(completed), metrics_completed),
        "ZCARD failed == metrics:failed count": (len(failed), metrics_failed),
        "completed ids == ids with a completed event": (len(completed), len(completed_events & completed)),
        "ids with a completed event are completed": (len(completed_events), len(completed_events & completed)),
        "failed ids == ids with a failed event": (len(failed), len(failed_events & failed)),
        "completed+failed == added + phantom adds": (len(completed) + len(failed), len(added) + len(phantoms)),
        "ids with an 'added' event == completed+failed": (len(added_events), len(completed | failed)),
        "completed jobs all ran (processor record)": (len(completed), len(completed & done)),
        "jobs that ran are all completed/failed": (len(done), len(done & (completed | failed))),
        "getJobCounts completed": (counts.get("completed"), len(completed)),
        "getJobCounts failed": (counts.get("failed"), len(failed)),
    }
    for label, (got, want) in checks.items():
        if got != want:
            problems.append(f"counts disagree: {label}: {got} != {want}")
    if twice:
        problems.append(f"{len(twice)} jobs were settled (completed/failed event) more than once: {twice[:10]}")
    leftover = {k: v for k, v in counts.items() if k not in ("completed", "failed") and v}
    if leftover:
        problems.append(f"jobs left in non-final states: {leftover}")

    details = {
        "added": len(added),
        "completed": len(completed),
        "failed": len(failed),
        "failed_by_stall_rule": len(failed_by_rule),
        "executions": sum(len(v) for v in runs.values()),
        "jobs_executed": len(runs),
        "duplicates_by_reason": dict(by_reason),
        "duplicates_without_stalled_event": dup_without_stalled,
        "stalled_events": kinds["stalled"],
        "jobs_with_stalled_event": sum(1 for c in events.values() if c["stalled"]),
        "phantom_adds": len(phantoms),
        "phantom_adds_silent_client_retry": phantom_silent,
        "add_errors": sum(p.add_errors for p in producers),
        "lost_in_aof_window": len(lost_in_window),
        "lock_lost_warnings": len(lock_warnings),
        "lock_lost_warnings_false": len(false_lock_warnings),
        "lock_lost_warnings_false_sample": false_lock_warnings[:5],
        "metrics_completed": metrics_completed,
        "events": sum(kinds.values()),
        "restart_mode": cfg.redis_restart_mode,
        "restarts_ms": [up - down for down, up in tl.restarts],
        "client_kill_connections": [n for _t, n in tl.client_kills],
        "pause_ms": [b - a for a, b in tl.pauses],
        "workers_spawned": pool.spawned,
        "run_started_ms": started_ms,
    }
    return ChaosResult(
        jobs=len(added),
        workers=cfg.workers,
        kills=tl.kills,
        redis_restarts=len(tl.restarts),
        client_kills=len(tl.client_kills),
        lost=len(lost_ids),
        duplicates=duplicates,
        duplicates_explained=explained,
        seconds=0.0,
        problems=problems,
        details=details,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sbqueue chaos run (see tests/chaos/harness.py)")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--restart-mode", choices=("shutdown", "sigkill"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--home", help="directory for the Redis data and worker logs (default: a temp dir)")
    args = parser.parse_args(argv)
    given = {"jobs": args.jobs, "workers": args.workers, "seconds": args.seconds,
             "redis_restart_mode": args.restart_mode, "seed": args.seed}  # fmt: skip
    overrides = {k: v for k, v in given.items() if v is not None}
    cfg = ChaosConfig.from_env(**overrides)
    if args.jobs is not None and args.seconds is None:
        cfg.seconds = max(ChaosConfig.seconds, cfg.jobs / 1_500)
    home = args.home or tempfile.mkdtemp(prefix="sbqueue-chaos-")
    result = run_chaos(cfg, home)
    print(result.report(), flush=True)
    ok = not result.problems and result.lost == 0 and result.duplicates == result.duplicates_explained
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
