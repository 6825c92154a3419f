"""redis_exporter-compatible Redis metrics from ``INFO`` and the slow log (used by :mod:`sbqueue.ops.exporter`).

Names, types and labels follow oliver006/redis_exporter, so its alert rules and dashboards (and
``deploy/prometheus/alerts.yml``) work unchanged whichever of the two exporters serves them.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sbqueue.connection import full as _full

# INFO field -> redis_exporter metric name (oliver006/redis_exporter, metricMapGauges/metricMapCounters)
_INFO_GAUGES = {
    "uptime_in_seconds": "redis_uptime_in_seconds",
    "connected_clients": "redis_connected_clients",
    "blocked_clients": "redis_blocked_clients",
    "used_memory": "redis_memory_used_bytes",
    "used_memory_rss": "redis_memory_used_rss_bytes",
    "used_memory_peak": "redis_memory_used_peak_bytes",
    "maxmemory": "redis_memory_max_bytes",
    "mem_fragmentation_ratio": "redis_mem_fragmentation_ratio",
    "loading": "redis_loading_dump_file",
    "rdb_changes_since_last_save": "redis_rdb_changes_since_last_save",
    "rdb_bgsave_in_progress": "redis_rdb_bgsave_in_progress",
    "rdb_last_save_time": "redis_rdb_last_save_timestamp_seconds",
    "rdb_last_bgsave_time_sec": "redis_rdb_last_bgsave_duration_sec",
    "aof_enabled": "redis_aof_enabled",
    "aof_rewrite_in_progress": "redis_aof_rewrite_in_progress",
    "aof_rewrite_scheduled": "redis_aof_rewrite_scheduled",
    "aof_last_rewrite_time_sec": "redis_aof_last_rewrite_duration_sec",
    "connected_slaves": "redis_connected_slaves",
    "master_repl_offset": "redis_master_repl_offset",
}
#: ``ok`` -> 1, anything else -> 0
_INFO_STATUS = {
    "rdb_last_bgsave_status": "redis_rdb_last_bgsave_status",
    "aof_last_bgrewrite_status": "redis_aof_last_bgrewrite_status",
    "aof_last_write_status": "redis_aof_last_write_status",
}
_INFO_COUNTERS = {
    "total_connections_received": "redis_connections_received_total",
    "total_commands_processed": "redis_commands_processed_total",
    "rejected_connections": "redis_rejected_connections_total",
    "evicted_keys": "redis_evicted_keys_total",
    "expired_keys": "redis_expired_keys_total",
    "keyspace_hits": "redis_keyspace_hits_total",
    "keyspace_misses": "redis_keyspace_misses_total",
    "total_net_input_bytes": "redis_net_input_bytes_total",
    "total_net_output_bytes": "redis_net_output_bytes_total",
    "used_cpu_sys": "redis_cpu_sys_seconds_total",
    "used_cpu_user": "redis_cpu_user_seconds_total",
    "used_cpu_sys_children": "redis_cpu_sys_children_seconds_total",
    "used_cpu_user_children": "redis_cpu_user_children_seconds_total",
}
_SLAVE_LABELS = ["slave_ip", "slave_port", "slave_state"]
_MASTER_LABELS = ["master_host", "master_port"]


def number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number (INFO strings, missing fields)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def redis_families(info: dict[str, Any], slowlog_length: Any = None, slowlog_last: Any = None) -> list[Metric]:
    """redis_exporter-named metrics from a parsed ``INFO`` (plus ``SLOWLOG LEN`` / ``SLOWLOG GET 1``)."""
    out: list[Metric] = []
    for field, name in _INFO_GAUGES.items():
        value = number(info.get(field))
        if value is not None:
            out.append(GaugeMetricFamily(name, f"INFO {field}", value=value))
    for field, name in _INFO_COUNTERS.items():
        value = number(info.get(field))
        if value is not None:
            out.append(CounterMetricFamily(name, f"INFO {field}", value=value))
    for field, name in _INFO_STATUS.items():
        if field in info:
            out.append(GaugeMetricFamily(name, f"INFO {field} (1 = ok)", value=float(info[field] == "ok")))
    labels = {k: str(info.get(k, "")) for k in ("redis_version", "redis_mode", "role", "os", "maxmemory_policy")}
    info_family = GaugeMetricFamily("redis_instance_info", "Redis version, mode and role", labels=list(labels))
    info_family.add_metric(list(labels.values()), 1)
    out.append(info_family)
    if "used_memory" in info:
        full, _evidence = _full.state(info)
        out.append(GaugeMetricFamily("sbqueue_redis_full", "1 when Redis reached maxmemory under noeviction and "
                                     "refuses writes (runbook redis-memory)", value=float(full)))  # fmt: skip

    lag = GaugeMetricFamily("redis_connected_slave_lag_seconds", "seconds since the replica's last ack",
                            labels=_SLAVE_LABELS)  # fmt: skip
    offset = GaugeMetricFamily("redis_connected_slave_offset_bytes", "replication offset of the replica",
                               labels=_SLAVE_LABELS)  # fmt: skip
    for i in range(int(number(info.get("connected_slaves")) or 0)):
        slave = info.get(f"slave{i}")
        if isinstance(slave, dict):
            values = [str(slave.get("ip", "")), str(slave.get("port", "")), str(slave.get("state", ""))]
            if number(slave.get("lag")) is not None:
                lag.add_metric(values, number(slave["lag"]) or 0.0)
            if number(slave.get("offset")) is not None:
                offset.add_metric(values, number(slave["offset"]) or 0.0)
    out += [f for f in (lag, offset) if f.samples]

    if info.get("role") == "slave":  # this Redis is a replica: how is its link to the primary?
        master = [str(info.get("master_host", "")), str(info.get("master_port", ""))]
        for name, value in (
            ("redis_master_link_up", float(info.get("master_link_status") == "up")),
            ("redis_master_last_io_seconds_ago", number(info.get("master_last_io_seconds_ago"))),
            ("redis_master_sync_in_progress", number(info.get("master_sync_in_progress"))),
            ("redis_slave_repl_offset", number(info.get("slave_repl_offset"))),
        ):
            if value is not None:
                link = GaugeMetricFamily(name, f"replica: {name[6:]}", labels=_MASTER_LABELS)
                link.add_metric(master, value)
                out.append(link)

    keys = GaugeMetricFamily("redis_db_keys", "keys per database", labels=["db"])
    expiring = GaugeMetricFamily("redis_db_keys_expiring", "keys with a TTL per database", labels=["db"])
    for db, stats in info.items():
        if db.startswith("db") and db[2:].isdigit() and isinstance(stats, dict):
            keys.add_metric([db], number(stats.get("keys")) or 0.0)
            expiring.add_metric([db], number(stats.get("expires")) or 0.0)
    out += [keys, expiring]

    if slowlog_length is not None:
        out.append(GaugeMetricFamily("redis_slowlog_length", "SLOWLOG LEN", value=float(slowlog_length)))
    if slowlog_last is not None:  # the id keeps growing past slowlog-max-len: its rate is slow commands/s
        last = slowlog_last[0] if slowlog_last else {}
        out.append(GaugeMetricFamily("redis_slowlog_last_id", "id of the newest slow-log entry",
                                     value=float(last.get("id", 0))))  # fmt: skip
        out.append(GaugeMetricFamily("redis_last_slow_execution_duration_seconds",
                                     "duration of the newest slow-log entry",
                                     value=float(last.get("duration", 0)) / 1e6))  # fmt: skip
    return out
