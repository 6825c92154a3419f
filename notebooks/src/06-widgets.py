# %% [markdown]
# # 06 · Widgets
#
# The panels people use during an incident. Destructive actions show what they will do and need **Confirm**. (In a
# report these render as static placeholders; open the notebook in JupyterLab to click.)

# %% tags=["parameters"]
redis_url = None  # Redis URL, or None: SBQUEUE_REDIS_URL, then REDIS_URL, then the embedded server
prefix = "nb-widgets"  # key prefix for this notebook

# %%
import sbqueue
from sbqueue import scenarios
from sbqueue.workbench.widgets import CleanPanel, FailureTriage, JobBrowser, QueueDashboard

conn = sbqueue.connect(redis_url)
planted = scenarios.failing(conn, prefix, "demo-failing", jobs=40)
print(planted.description)

# %%
QueueDashboard(connection=conn, prefix=prefix)

# %%
browser = JobBrowser(sbqueue.Queue('demo-failing', conn, prefix=prefix), state='failed')
browser

# %%
FailureTriage('demo-failing', connection=conn, prefix=prefix)

# %%
CleanPanel('demo-failing', connection=conn, prefix=prefix)
