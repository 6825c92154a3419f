# %% [markdown]
# # Runbook: Redis health

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "bull"  # key prefix of the queues
queue = None  # unused here (health covers the server and every queue); kept for a uniform interface
dry_run = True  # True: report and plan only; False: also fix an evicting maxmemory-policy
window_s = 1.0  # seconds between the two samples that rates (evictions/s, slow queries/s, CPU) come from

# %%
import sbqueue
from sbqueue import runbook
from sbqueue.connection import url_of
from sbqueue.inspection import Inspector
from sbqueue.workbench import render

conn = sbqueue.connect(redis_url)  # None -> SBQUEUE_REDIS_URL / REDIS_URL / the embedded server
insp = Inspector(conn, prefix, progress=False)  # no progress bars in reports
context = {"Redis": sbqueue.mask_url(url_of(conn)), "prefix": prefix}

# %%
# the evidence as it was before any fix: alerts (firing first, critical first), persistence, slow log, latency, audit
SEVERITY = {"critical": 0, "warning": 1}
alerts = insp.alerts(window_s=window_s)
alerts = (alerts.assign(_quiet=~alerts["firing"], _rank=alerts["severity"].map(SEVERITY).fillna(2))
          .sort_values(["_quiet", "_rank", "scope", "name"]).drop(columns=["_quiet", "_rank"]))  # fmt: skip
persistence = insp.persistence()
slowlog = insp.slowlog(10)
slowlog["args"] = [render.shorten(a) for a in slowlog["args"]]  # script bodies: a few words, not pages
latency = insp.latency()
audit = insp.config_audit()
audit = audit.assign(_rank=audit["severity"].map(SEVERITY).fillna(2)).sort_values("_rank").drop(columns="_rank")

# %%
# diagnose; set an evicting maxmemory-policy back to noeviction unless this is a dry run; verify
finding = runbook.diagnose_health(conn, prefix, window_s=window_s)
finding.carry_out(dry_run=dry_run)  # dry run: only the audit trail records the plan

# %%
render.banner(finding, dry_run=dry_run, context=context)

# %%
ALERT_COLUMNS = ["name", "scope", "severity", "evidence"]
ALERT_HEADERS = {"name": "alert", "scope": "where (server or queue)"}
render.section("Firing alerts", render.table(alerts[alerts["firing"]], ALERT_COLUMNS, headers=ALERT_HEADERS))
render.section("Plan", render.table(finding.plan, headers={"automatic": "automatic (no: for a human)"}))
render.section("Configuration audit", render.table(audit[audit["severity"] != "ok"] if len(audit) else audit))
render.section("Persistence", render.record(persistence))
render.section("Slow log (latest 10)", render.table(slowlog, ["ts", "duration_s", "args", "client_addr"],
                                                   headers={"ts": "when", "duration_s": "took", "args": "command"}))
render.section("Latency spikes", render.table(latency))
render.section("Every alert evaluated", render.table(alerts, ["firing", *ALERT_COLUMNS], headers=ALERT_HEADERS),
               intro=f"{int(alerts['firing'].sum())} of {len(alerts)} firing; firing ones first.")

# %% [markdown]
# ## About this runbook
#
# The ten alerts of the deployment guide (down, memory, connections, rejections, evictions, replication lag, RDB/AOF
# failures, slow queries, CPU) plus queue alerts (each naming its queue), evaluated now; persistence, slow log, latency
# and the config audit. The one automatic fix: an evicting `maxmemory-policy` goes back to `noeviction` (an evicting
# policy deletes job keys silently).
