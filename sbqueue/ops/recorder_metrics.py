"""Prometheus metrics of a running recorder, read from the status file it writes into its dataset.

``sbqueue exporter`` serves them when ``SBQUEUE_HISTORY`` names the dataset (the recorder's ``--to``):

- ``sbqueue_recorder_lag_seconds{queue}`` — how far behind the stream's newest entry the recorder was at its
  last write (stream time);
- ``sbqueue_recorder_gaps_total{queue}`` — holes recorded (the stream was trimmed before the recorder read it);
- ``sbqueue_recorder_position_timestamp_seconds{queue}`` — time of the last entry written to the dataset;
- ``sbqueue_recorder_status_age_seconds`` — age of the status file: grows when the recorder is down or stuck;
- ``sbqueue_recorder_up`` — 1 when the status file could be read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sbqueue.inspection.history_store import STATUS_FILE, open_fs, parse_id


class RecorderCollector(Collector):
    """A ``prometheus_client`` collector for the recorder writing the dataset at ``path``."""

    def __init__(self, path: Any, storage_options: dict[str, Any] | None = None) -> None:
        self.path = str(path)
        self.fs, self.root = open_fs(path, storage_options)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("sbqueue_recorder_up", "1 when the recorder's status file could be read")
        try:
            if hasattr(self.fs, "invalidate_cache"):
                self.fs.invalidate_cache(f"{self.root}/{STATUS_FILE}")
            with self.fs.open(f"{self.root}/{STATUS_FILE}", "r") as fh:
                status = json.load(fh)
            queues = dict(status["queues"])
            updated = float(status["updated_ms"]) / 1000
        except (OSError, ValueError, KeyError, TypeError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        age = GaugeMetricFamily("sbqueue_recorder_status_age_seconds", "Seconds since the recorder last wrote")
        age.add_metric([], max(0.0, time.time() - updated))
        yield age
        lag = GaugeMetricFamily("sbqueue_recorder_lag_seconds", "Recorder lag behind the events stream",
                                labels=["queue"])
        gaps = CounterMetricFamily("sbqueue_recorder_gaps", "Holes in the recorded history", labels=["queue"])
        pos = GaugeMetricFamily("sbqueue_recorder_position_timestamp_seconds",
                                "Time of the last entry written to the dataset", labels=["queue"])
        for name, q in sorted(queues.items()):
            lag.add_metric([name], float(q.get("lag_s") or 0))
            gaps.add_metric([name], float(q.get("gaps") or 0))
            if q.get("position"):
                pos.add_metric([name], parse_id(q["position"])[0] / 1000)
        yield lag
        yield gaps
        yield pos
