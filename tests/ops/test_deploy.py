"""Validate the deploy/ artefacts with the real tools that consume them.

- ``deploy/redis/redis.conf``: a real ``redis-server`` (from PATH) starts with it, on its own free port and
  data directory, and ``CONFIG GET`` reports every setting as written.
- ``deploy/prometheus/alerts.yml``: ``promtool check rules`` and ``promtool test rules`` pass; every alert
  has a firing and a silent unit test; labels, annotations and runbook links are complete.
- ``deploy/k8s/``: every manifest parses and the required values hold; the ConfigMap and the PrometheusRule
  are exact copies of their sources.
- ``deploy/grafana/sbqueue-dashboard.json``: parses, panels have titles and targets, queries are valid PromQL.
- Every metric name used by the rules and the dashboard is in :data:`EXPORTER_METRICS`.

promtool comes from Debian's ``prometheus`` package (``make test`` installs it via tools/ensure_test_deps.py);
when it is missing these tests fail, they do not skip.
"""

from __future__ import annotations

import configparser
import json
import re
import resource
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from sbqueue.connection.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REDIS_CONF = DEPLOY / "redis" / "redis.conf"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
K8S = DEPLOY / "k8s"
DASHBOARD = DEPLOY / "grafana" / "sbqueue-dashboard.json"

#: Metric names (as they appear in a scrape) from redis_exporter that the rules and dashboard may use.
#: The sbqueue exporter serves the same names, so it can replace the redis_exporter sidecar.
REDIS_METRICS = frozenset(
    {
        "redis_up",
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_connected_clients",
        "redis_blocked_clients",
        "redis_rejected_connections_total",
        "redis_evicted_keys_total",
        "redis_connected_slave_lag_seconds",
        "redis_rdb_last_bgsave_status",
        "redis_rdb_last_save_timestamp_seconds",
        "redis_aof_enabled",
        "redis_aof_last_bgrewrite_status",
        "redis_slowlog_length",
        "redis_slowlog_last_id",
        "redis_cpu_sys_seconds_total",
        "redis_cpu_user_seconds_total",
        "redis_commands_processed_total",
    }
)
#: Only present while a replica is connected (a standalone Redis scrape will not show them).
REPLICA_ONLY_METRICS = frozenset({"redis_connected_slave_lag_seconds"})
#: Queue metrics served by ``sbqueue exporter`` (histogram as its scraped _bucket/_sum/_count series).
QUEUE_METRICS = frozenset(
    {
        *(
            f"bullmq_queue_{state}"
            for state in ("waiting", "active", "completed", "failed", "delayed", "prioritized", "paused")
        ),
        "bullmq_job_count",
        "bullmq_jobs_completed_total",
        "bullmq_jobs_failed_total",
        "bullmq_job_duration_seconds_bucket",
        "bullmq_job_duration_seconds_sum",
        "bullmq_job_duration_seconds_count",
        "bullmq_queue_oldest_waiting_seconds",
        "bullmq_queue_workers",
        "sbqueue_redis_full",  # Redis at maxmemory under noeviction (refuses writes)
        "sbqueue_dead_letters",  # letters waiting in each dead-letter queue
    }
)
#: Every name the rules and the dashboard may use; the exporter tests cross-check it against a real scrape.
EXPORTER_METRICS = REDIS_METRICS | QUEUE_METRICS

#: The seed's 10 Redis alerts plus the queue alerts the issue asks for.
REQUIRED_ALERTS = (
    "RedisDown",
    "RedisHighMemoryUsage",
    "RedisTooManyConnections",
    "RedisRejectedConnections",
    "RedisHighKeyEvictionRate",
    "RedisReplicationLag",
    "RedisRDBSaveFailure",
    "RedisAOFRewriteFailure",
    "RedisSlowQueries",
    "RedisHighCPUUsage",
    "QueueBacklogWithoutWorkers",
    "QueueOldestWaitingTooOld",
    "QueueHighFailureRate",
    "RedisEvictedKeysOnQueueRedis",
)
RUNBOOKS = frozenset({"stuck-jobs", "stalled-jobs", "failed-jobs", "redis-memory", "redis-health", "job-latency"})
RUNBOOK_URL = re.compile(r"^https://github\.com/sbqueue/sbqueue/blob/main/sbqueue/workbench/runbooks/(?P<name>[a-z-]+)\.ipynb$")

#: The seed's durability and capacity settings, pinned here so the file cannot drift from them
#: (values as CONFIG GET reports them), and noeviction instead of the seed's allkeys-lru.
REQUIRED_REDIS_SETTINGS = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": "900 1 300 10 60 10000",
    "maxmemory": str(1024**3),
    "maxmemory-policy": "noeviction",
    "maxclients": "10000",
    "tcp-backlog": "511",
    "timeout": "0",
}
#: Supplied by each deployment (command line, Secret), never by the shared file.
DEPLOYMENT_SUPPLIED = frozenset({"port", "bind", "dir", "requirepass", "daemonize", "include"})

# Redis' own unit rules: k/m/g are powers of 1000, kb/mb/gb powers of 1024 (case-insensitive).
_MEMORY_UNITS = {"k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_MEMORY_VALUE = re.compile(r"^(\d+)(k|kb|m|mb|g|gb)$", re.IGNORECASE)


# ----------------------------------------------------------------------------------------------- helpers


def promtool() -> str:
    """Path of promtool, or a test failure that says how to get it (never a skip)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: it validates deploy/prometheus/. Install Debian's `prometheus` "
            "package (`apt-get install prometheus`, or run `make test`, which calls "
            "tools/ensure_test_deps.py)."
        )
    return path


def run_promtool(*args: str) -> str:
    """Run promtool; fail the test with its full output when it exits non-zero."""
    res = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)
    output = res.stdout + res.stderr
    assert res.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def parse_redis_conf(text: str) -> dict[str, str]:
    """Settings of a redis.conf as CONFIG GET reports them (repeated `save` lines joined, units in bytes)."""
    settings: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, *args = shlex.split(line)  # redis.conf quoting: "..." strings, spaces between arguments
        name = name.lower()
        value = " ".join(args)
        match = _MEMORY_VALUE.match(value)
        if match:
            value = str(int(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])
        if name == "save" and "save" in settings:
            settings["save"] += " " + value  # save lines accumulate in a config file
        else:
            assert name not in settings, f"{name} is set twice in {REDIS_CONF}"
            settings[name] = value
    return settings



_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
     "offset", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (Grafana variables allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values, regexes)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    # label lists of aggregations and vector matching
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # $__rate_interval, ${queue}
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in _PROMQL_KEYWORDS:
            continue  # a function call or an operator keyword
        names.add(match.group())
    return names


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """All non-empty documents of a (multi-document) YAML file."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard, including panels nested in collapsed rows."""
    panels = []
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    """The PromQL of every dashboard target."""
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", []) if "expr" in t]


# ----------------------------------------------------------------------------------------------- redis.conf


#: deploy/redis/redis.conf as CONFIG GET should report it.
REDIS_CONF_SETTINGS = parse_redis_conf(REDIS_CONF.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def conf_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """Our own redis-server running deploy/redis/redis.conf (never the suite's shared server, never 6379)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH (Debian package `redis-server`); it validates redis.conf")
    wanted = int(REDIS_CONF_SETTINGS["maxclients"]) + 32  # Redis needs maxclients + 32 file descriptors
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"the open-files hard limit is {hard}; redis-server needs {wanted} for maxclients")

    def raise_nofile() -> None:  # in the child only: without it Redis silently lowers maxclients
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else wanted, hard))

    workdir = tmp_path_factory.mktemp("redis-conf")
    for _attempt in range(3):  # the free port may be taken between our probe and Redis' bind
        port = free_port()
        log_path = workdir / f"redis-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [binary, str(REDIS_CONF), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                 "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=raise_nofile,
            )
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)
        if _wait_until_up(proc, client, timeout=15):
            break
        client.close()
        _stop(proc)
    else:
        pytest.fail(f"redis-server did not start with {REDIS_CONF}:\n{log_path.read_text(errors='replace')}")
    try:
        yield client
    finally:
        client.close()
        _stop(proc)


def _wait_until_up(proc: subprocess.Popen[bytes], client: redis.Redis, timeout: float) -> bool:
    """True once the server answers PING; False if it exits or stays silent for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if client.ping():
                return True
        except redis.ConnectionError:
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop our redis-server: SIGTERM (it fsyncs and exits in ms for an empty dataset), SIGKILL if stuck."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_redis_conf_has_the_required_settings() -> None:
    """The seed's values, with noeviction; nothing a deployment must supply (port, dir, password)."""
    for name, value in REQUIRED_REDIS_SETTINGS.items():
        assert REDIS_CONF_SETTINGS.get(name) == value, f"{name}: want {value!r}"
    assert not DEPLOYMENT_SUPPLIED & REDIS_CONF_SETTINGS.keys(), "set these per deployment, not in the file"
    for name in ("latency-monitor-threshold", "slowlog-log-slower-than", "slowlog-max-len"):
        assert int(REDIS_CONF_SETTINGS[name]) > 0, name
    assert "allkeys-lru" in REDIS_CONF.read_text(encoding="utf-8"), "the comments explain why not allkeys-lru"


@pytest.mark.parametrize("name", sorted(REDIS_CONF_SETTINGS))
def test_redis_server_applies_setting(conf_redis: redis.Redis, name: str) -> None:
    """redis-server started with the file reports each setting exactly as written."""
    reported = conf_redis.config_get(name)
    assert name in reported, f"redis-server does not know the setting {name!r}"
    assert reported[name] == REDIS_CONF_SETTINGS[name]


def test_redis_conf_server_is_durable_and_refuses_eviction(conf_redis: redis.Redis) -> None:
    """The running server has AOF on and the noeviction policy, as INFO reports it."""
    assert conf_redis.info("persistence")["aof_enabled"] == 1
    assert conf_redis.info("memory")["maxmemory_policy"] == "noeviction"


# ----------------------------------------------------------------------------------------------- Prometheus


def test_promtool_check_rules() -> None:
    """alerts.yml is a valid rule file."""
    run_promtool("check", "rules", str(ALERTS))


def test_promtool_unit_tests_pass() -> None:
    """Every unit test in alerts_test.yml passes (alerts fire on broken series, stay silent on healthy)."""
    run_promtool("test", "rules", str(ALERTS_TEST))


def test_every_required_alert_exists() -> None:
    """The seed's 10 alerts and the queue alerts are all defined, once each."""
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    missing = [name for name in REQUIRED_ALERTS if name not in names]
    assert not missing, f"alerts.yml lacks {missing}"


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    """Each alert is proven to fire on synthetic series and to stay silent on healthy ones."""
    spec = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert spec["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts without a firing test case"
    assert names - silent == set(), "alerts without a silent test case"
    assert (firing | silent) - names == set(), "tests for alerts that do not exist"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_labels_and_annotations(rule: dict[str, Any]) -> None:
    """Severity, summary, description and a runbook link to one of sbqueue's runbooks."""
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    match = RUNBOOK_URL.match(annotations["runbook_url"])
    assert match and match.group("name") in RUNBOOKS, annotations["runbook_url"]


def test_every_runbook_is_linked_from_an_alert() -> None:
    """Each runbook has at least one alert leading to it."""
    linked = set()
    for rule in alert_rules():
        match = RUNBOOK_URL.match(rule["annotations"]["runbook_url"])
        assert match, rule["alert"]
        linked.add(match.group("name"))
    assert linked == RUNBOOKS


# ----------------------------------------------------------------------------------------------- Kubernetes


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every document of every manifest under deploy/k8s."""
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml_documents(path)]


def k8s_index() -> dict[tuple[str, str], dict[str, Any]]:
    """Manifests by (kind, metadata.name)."""
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for _path, doc in k8s_documents():
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in index, f"duplicate {key}"
        index[key] = doc
    return index


def workloads(index: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """StatefulSets and Deployments."""
    return [doc for (kind, _name), doc in index.items() if kind in {"StatefulSet", "Deployment"}]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a workload's pod template."""
    return list(workload["spec"]["template"]["spec"]["containers"])


def test_k8s_manifests_parse_with_required_fields() -> None:
    """Every document has apiVersion, kind and metadata.name."""
    documents = k8s_documents()
    assert documents, "no manifests under deploy/k8s"
    for path, doc in documents:
        assert isinstance(doc, dict), path
        for field in ("apiVersion", "kind"):
            assert doc.get(field), f"{path.name}: missing {field}"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: {doc['kind']} without metadata.name"


def test_kustomization_lists_the_manifests() -> None:
    """`kubectl apply -k deploy/k8s` applies everything except the placeholder Secret."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.yaml"}
    assert listed == on_disk


def test_redis_statefulset_values() -> None:
    """redis:7.2, 10Gi volume, 100m-500m CPU, 256Mi-1Gi memory, redis-cli ping probes, ConfigMap config."""
    index = k8s_index()
    sts = index[("StatefulSet", "sbqueue-redis")]
    by_name = {c["name"]: c for c in containers(sts)}
    redis_c = by_name["redis"]
    assert redis_c["image"] == "redis:7.2"
    assert redis_c["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }
    claims = sts["spec"]["volumeClaimTemplates"]
    assert [c["spec"]["resources"]["requests"]["storage"] for c in claims] == ["10Gi"]
    mounts = {m["name"]: m["mountPath"] for m in redis_c["volumeMounts"]}
    assert mounts[claims[0]["metadata"]["name"]] == "/data"
    for probe in ("livenessProbe", "readinessProbe"):
        command = " ".join(redis_c[probe]["exec"]["command"])
        assert "redis-cli" in command and "ping" in command, probe
        assert "$REDIS_PASSWORD" in command, f"{probe} must authenticate with the password from env"
    # the config file comes from the ConfigMap that holds redis.conf
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    config_map = volumes["config"]["configMap"]["name"]
    assert ("ConfigMap", config_map) in index
    assert mounts["config"] == "/etc/redis"
    assert "/etc/redis/redis.conf" in " ".join(redis_c["args"])
    # headless Service named by serviceName, with the redis_exporter sidecar's port
    service = index[("Service", sts["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"
    exporter = by_name["redis-exporter"]
    assert exporter["image"].startswith("oliver006/redis_exporter:")
    assert {p["containerPort"] for p in exporter["ports"]} == {9121}


def test_passwords_come_from_the_secret() -> None:
    """Every REDIS_PASSWORD env var is a secretKeyRef to the Secret; no literal passwords in workloads."""
    index = k8s_index()
    secret = index[("Secret", "sbqueue-redis")]
    seen = 0
    for workload in workloads(index):
        for container in containers(workload):
            for env in container.get("env", []):
                if "PASSWORD" in env["name"] or "AUTH" in env["name"]:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in secret["stringData"]
                    seen += 1
    assert seen >= 4, "redis, redis_exporter, the sbqueue exporter and the worker all need the password"


def _args(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in (*container.get("command", []), *container.get("args", []))]


def test_sbqueue_exporter_deployment() -> None:
    """`sbqueue exporter --url ... --port 9121`, exposed by a Service and scraped by a ServiceMonitor."""
    index = k8s_index()
    (container,) = containers(index[("Deployment", "sbqueue-exporter")])
    args = _args(container)
    assert args[:2] == ["sbqueue", "exporter"]
    assert args[args.index("--port") + 1] == "9121"
    assert args[args.index("--url") + 1].startswith("redis://:$(REDIS_PASSWORD)@")


def test_recorder_deployment_is_a_single_writer_with_a_volume() -> None:
    """`sbqueue record --to /history` (parsed by the real CLI), one replica, Recreate, the dataset on a PVC."""
    from sbqueue.cli.app import build_parser

    index = k8s_index()
    recorder = index[("Deployment", "sbqueue-recorder")]
    assert recorder["spec"]["replicas"] == 1 and recorder["spec"]["strategy"]["type"] == "Recreate"
    (container,) = containers(recorder)
    args = _args(container)
    assert args[:2] == ["sbqueue", "record"], "exec form: sbqueue must be PID 1 to receive SIGTERM"
    parsed = build_parser().parse_args(args[1:])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert parsed.to in mounts.values()
    volumes = {v["name"]: v for v in recorder["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[next(n for n, p in mounts.items() if p == parsed.to)]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in index
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_worker_deployment_shuts_down_gracefully() -> None:
    """terminationGracePeriodSeconds leaves the worker's --shutdown-timeout plus a margin before SIGKILL."""
    index = k8s_index()
    worker = index[("Deployment", "sbqueue-worker-emails")]
    (container,) = containers(worker)
    args = _args(container)
    assert args[:2] == ["sbqueue", "worker"], "exec form: sbqueue must be PID 1 to receive SIGTERM"
    assert re.fullmatch(r"[\w.]+:\w+", args[3]), "QUEUE module:function"
    shutdown_timeout = int(args[args.index("--shutdown-timeout") + 1])
    grace = int(worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    assert grace >= shutdown_timeout + 5


def test_backup_cronjob() -> None:
    """A daily `sbqueue backup --all` CronJob whose arguments sbqueue's own CLI accepts, never two at once,
    password from the Secret, writing to a PersistentVolumeClaim defined beside it."""
    from croniter import croniter

    from sbqueue.cli.app import build_parser

    index = k8s_index()
    cron = index[("CronJob", "sbqueue-backup")]
    assert croniter.is_valid(cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    (container,) = pod["containers"]
    args = _args(container)
    assert args[:2] == ["sbqueue", "backup"]
    parsed = build_parser().parse_args(args[1:])
    assert parsed.all and parsed.rdb is None and parsed.url.startswith("redis://:$(REDIS_PASSWORD)@sbqueue-redis:")
    (env,) = container["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "sbqueue-redis", "key": "password"}
    # the file lands in the working directory, which is the mounted claim
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (name,) = [n for n, path in mounts.items() if path == container["workingDir"]]
    claim = volumes[name]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in index
    assert parsed.output is None or parsed.output.startswith(container["workingDir"])


def test_services_and_monitors_select_real_targets() -> None:
    """Service selectors match pod labels; ServiceMonitors select Services and name ports they expose."""
    index = k8s_index()
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(index)]
    services = [doc for (kind, _), doc in index.items() if kind == "Service"]
    for service in services:
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), service["metadata"]["name"]
    monitors = [doc for (kind, _), doc in index.items() if kind == "ServiceMonitor"]
    assert monitors, "no ServiceMonitor"
    for monitor in monitors:
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert matched, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            for service in matched:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_configmap_is_a_copy_of_redis_conf() -> None:
    """The ConfigMap's redis.conf is byte-for-byte deploy/redis/redis.conf."""
    config_map = k8s_index()[("ConfigMap", "sbqueue-redis-config")]
    assert config_map["data"]["redis.conf"] == REDIS_CONF.read_text(encoding="utf-8"), (
        "deploy/k8s/redis-configmap.yaml is stale: run `python deploy/sync.py`"
    )


def test_prometheusrule_has_the_same_groups_as_alerts_yml() -> None:
    """The PrometheusRule wraps exactly the rule groups of alerts.yml."""
    rule = k8s_index()[("PrometheusRule", "sbqueue-alerts")]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"], (
        "deploy/k8s/prometheusrule.yaml is stale: run `python deploy/sync.py`"
    )


# ----------------------------------------------------------------------------------------------- Grafana


def test_dashboard_panels_have_titles_and_targets() -> None:
    """The dashboard parses; every panel except rows has a title, a grid position and PromQL targets."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert panel.get("title"), panel
        assert panel.get("gridPos"), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} has an empty query"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """Depth, processing and failure rate, duration percentiles, memory, command rate, slowlog."""
    exprs = "\n".join(dashboard_exprs())
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    for name in ("bullmq_queue_waiting", "bullmq_jobs_completed_total", "bullmq_jobs_failed_total",
                 "redis_memory_used_bytes", "redis_commands_processed_total", "redis_slowlog_length"):
        assert name in used, name
    assert re.search(r"histogram_quantile\(0\.99,[^\n]*bullmq_job_duration_seconds_bucket", exprs)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana variables replaced by sample values)."""
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$queue", ".*").replace("$instance", ".*")
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    run_promtool("check", "rules", str(path))


# ----------------------------------------------------------------------------------------------- metric names


def test_metric_name_extraction() -> None:
    """The PromQL scanner finds metrics and ignores functions, labels, keywords and Grafana variables."""
    expr = (
        'histogram_quantile(0.95, sum by (queue, le) (rate(a_bucket{queue=~"$queue"}[$__rate_interval])))'
        " / on (queue) group_left b_total > 1e3 and ignoring(x) c unless bool d offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def test_rules_and_dashboard_use_only_exporter_metrics() -> None:
    """Every metric in alerts.yml and the dashboard is one the exporters serve."""
    sources = {"alerts.yml": [r["expr"] for r in alert_rules()], "dashboard": dashboard_exprs()}
    for source, exprs in sources.items():
        unknown = set().union(*(metric_names(e) for e in exprs)) - EXPORTER_METRICS
        assert not unknown, f"{source} uses metrics no exporter provides: {sorted(unknown)}"


# ----------------------------------------------------------------------------------------------- no Kubernetes

COMPOSE = DEPLOY / "compose"
SYSTEMD = DEPLOY / "systemd"


def _shutdown_timeout(args: list[str]) -> int:
    return int(args[args.index("--shutdown-timeout") + 1])


def test_compose_file_uses_the_shared_config_and_stops_workers_gracefully() -> None:
    """docker-compose.yml mounts deploy/redis/redis.conf and gives workers their shutdown timeout."""
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["redis"]["image"] == "redis:7.2"
    assert "../redis/redis.conf:/etc/redis/redis.conf:ro" in services["redis"]["volumes"]
    assert "include /etc/redis/redis.conf" in " ".join(services["redis"]["command"])
    assert int(services["redis"]["ulimits"]["nofile"]["soft"]) >= int(REDIS_CONF_SETTINGS["maxclients"]) + 32
    assert services["sbqueue-exporter"]["command"][:2] == ["sbqueue", "exporter"]
    workers = [s for s in services.values() if s.get("command", [])[:2] == ["sbqueue", "worker"]]
    assert workers, "no example worker"
    for worker in workers:
        grace = int(str(worker["stop_grace_period"]).removesuffix("s"))
        assert grace >= _shutdown_timeout(worker["command"]) + 5


def test_compose_prometheus_config_is_valid() -> None:
    """promtool accepts compose/prometheus.yml, which loads the same alerts.yml."""
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["../prometheus/alerts.yml"]
    run_promtool("check", "config", str(COMPOSE / "prometheus.yml"))


def _unit(name: str) -> configparser.ConfigParser:
    # systemd allows repeated keys (EnvironmentFile=); strict=False keeps the parser from rejecting them
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"))
    return parser


def test_systemd_units() -> None:
    """Unit files have their sections; Redis gets enough descriptors; workers stop before SIGKILL."""
    names = sorted(p.name for p in SYSTEMD.glob("*.service"))
    assert names == ["sbqueue-backup.service", "sbqueue-exporter.service", "sbqueue-recorder.service",
                     "sbqueue-redis.service", "sbqueue-worker@.service"]  # fmt: skip
    for name in names:
        assert {"Unit", "Service", "Install"} <= set(_unit(name).sections()), name
    redis_unit = _unit("sbqueue-redis.service")["Service"]
    assert int(redis_unit["LimitNOFILE"]) >= int(REDIS_CONF_SETTINGS["maxclients"]) + 32
    assert "requirepass" not in redis_unit["ExecStart"], "the password belongs in a root-owned file"
    worker = _unit("sbqueue-worker@.service")["Service"]
    args = worker["ExecStart"].split()
    assert args[1:3] == ["worker", "%i"]
    assert int(worker["TimeoutStopSec"]) >= _shutdown_timeout(args) + 5
    assert worker["KillSignal"] == "SIGTERM"
    recorder = _unit("sbqueue-recorder.service")["Service"]
    from sbqueue.cli.app import build_parser

    parsed = build_parser().parse_args(recorder["ExecStart"].split()[1:])
    assert parsed.command == "record" and parsed.to.startswith("/var/lib/sbqueue/")
    assert recorder["StateDirectory"] == parsed.to.removeprefix("/var/lib/"), "systemd creates the dataset folder"
    assert recorder["KillSignal"] == "SIGTERM"


def test_systemd_backup_timer() -> None:
    """A daily timer starts a oneshot `sbqueue backup --all` whose arguments sbqueue's CLI accepts, writing only
    to its backup directory."""
    from sbqueue.cli.app import build_parser

    timer = _unit("sbqueue-backup.timer")
    assert {"Unit", "Timer", "Install"} <= set(timer.sections())
    assert timer["Timer"]["Unit"] == "sbqueue-backup.service" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = _unit("sbqueue-backup.service")["Service"]
    assert service["Type"] == "oneshot" and service["ProtectSystem"] == "strict"
    args = service["ExecStart"].split()
    parsed = build_parser().parse_args(args[1:])
    assert parsed.command == "backup" and parsed.all and parsed.url == "${SBQUEUE_REDIS_URL}"
    assert service["ReadWritePaths"].lstrip("-") == parsed.output
    assert parsed.output in service["ExecStartPre"]
