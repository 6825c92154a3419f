"""Queue history: keep what Redis forgets (the capped events stream) in a Parquet dataset, and analyse it.

* :class:`Recorder` (``sbqueue record``) tails every queue's events stream into a Hive-partitioned Parquet
  dataset (``queue=<name>/hour=<YYYY-MM-DDTHH>``), locally or at any fsspec URL, resuming exactly where it
  stopped and recording the holes it could not prevent.
* :class:`History` reads it back: events, one row per job attempt, percentiles, throughput, failure rates,
  before/after comparisons, gaps.

Needs the ``history`` extra (pyarrow, fsspec; s3fs for ``s3://``).
"""

from sbqueue.inspection.history import History
from sbqueue.inspection.history_store import DATASET_SCHEMA, FILE_SCHEMA, SCHEMA_VERSION
from sbqueue.ops.recorder import Recorder

__all__ = ["DATASET_SCHEMA", "FILE_SCHEMA", "SCHEMA_VERSION", "History", "Recorder"]
