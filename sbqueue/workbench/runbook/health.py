"""The redis-health runbook: the Redis and queue alerts, persistence and the config audit, in one Finding.

The one automatic fix is the setting that loses jobs silently: an evicting ``maxmemory-policy`` is set back to
``noeviction``. Everything else the audit flags is a plan for a human.
"""

from __future__ import annotations

from typing import Any

from sbqueue.connection import clients
from sbqueue.engine import audit as _audit
from sbqueue.inspection import Inspector
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of

#: maxmemory policies that delete keys (job hashes included) when memory is full
EVICTING = ("allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random",
            "volatile-ttl")  # fmt: skip


def diagnose_health(connection: Any = None, prefix: str = "bull", *, window_s: float = 1.0) -> Finding:
    """The seed guide's 10 Redis alerts + queue alerts, persistence and the config audit. Fix: only the one
    setting that loses jobs silently — an evicting ``maxmemory-policy`` is set back to ``noeviction``."""
    client = clients.sync_client(connection).client
    insp = Inspector(client, prefix)
    alerts = insp.alerts(window_s=window_s)
    audit = insp.config_audit()
    policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    firing = alerts[alerts["firing"]] if len(alerts) else alerts
    if len(firing):  # critical first: the headline names the worst alert first
        rank = firing["severity"].map({"critical": 0, "warning": 1}).fillna(2)
        firing = firing.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")
    checks = [(f"alert {r['name']}", bool(r["firing"]), str(r["evidence"])) for _, r in alerts.iterrows()]
    checks.append(("evicting maxmemory-policy", policy in EVICTING, f"maxmemory-policy={policy}"))
    df = frame_of([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    plan = []
    if policy in EVICTING:
        plan.append({"action": "set maxmemory-policy noeviction", "target": "redis", "jobs": 0, "automatic": True,
                     "detail": f"{policy} silently deletes job keys when memory is full"})  # fmt: skip
    # the firing alerts first: they are the incident; the audit's advice comes after
    if len(firing):
        plan.append({"action": "investigate the firing alerts", "target": "redis", "jobs": 0, "automatic": False,
                     "detail": ", ".join(f"{r['name']} [{r['scope']}]: {r['evidence']}"
                                         for _, r in firing.iterrows())[:500]})  # fmt: skip
    bad = audit[audit["severity"].isin(["critical", "warning"])] if len(audit) else audit
    for _, row in bad.iterrows():
        if row["setting"] != "maxmemory-policy":
            plan.append({"action": f"review {row['setting']}", "target": str(row["scope"]), "jobs": 0,
                         "automatic": False,
                         "detail": f"{row['value']} -> {row['recommended']}: {row['why']}"})  # fmt: skip
    if policy in EVICTING:
        cause = f"evicting maxmemory-policy ({policy})"
    elif len(firing):
        cause = f"{len(firing)} alerts firing"
    else:
        cause = "healthy"
    summary = ", ".join(f"{r['name']} [{r['scope']}]" for _, r in firing.iterrows()) or "no alert is firing"

    def apply() -> list[str]:
        if policy in EVICTING:
            client.config_set("maxmemory-policy", "noeviction")
            # a server setting, not a queue call: recorded here (under the prefix being diagnosed)
            _audit.note(client, prefix, "config-set", "*", params={"maxmemory-policy": [policy, "noeviction"]})
            return [f"maxmemory-policy {policy} -> noeviction"]
        return []

    def verify() -> tuple[bool, str]:
        now = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
        return now not in EVICTING, f"maxmemory-policy={now}"

    return Finding(
        "redis-health", "*", cause, summary, df, frame_of(plan, PLAN_COLUMNS), apply, verify, ok=cause == "healthy",
        audit_to=(client, prefix),
    )
