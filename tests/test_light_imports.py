"""Producers, workers and process-pool children start without pandas: it costs ~0.4 s per interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = "import sys; {imports}; print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))"


@pytest.mark.parametrize(
    "imports",
    [
        "import sbqueue",
        "import sbqueue; sbqueue.Queue; sbqueue.Worker; sbqueue.FlowProducer; sbqueue.QueueEvents",
        "import sbqueue.engine.worker.process_child",
    ],
)
def test_the_engine_starts_without_pandas(imports: str) -> None:
    out = subprocess.run([sys.executable, "-c", CHECK.format(imports=imports)], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_inspector_still_loads_on_first_use() -> None:
    code = "import sys, sbqueue; from sbqueue import Inspector; print(Inspector.__module__, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["sbqueue.inspection.inspector", "True"], out.stdout + out.stderr
