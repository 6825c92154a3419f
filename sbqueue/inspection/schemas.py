"""Every inspection DataFrame's columns and dtypes, declared once.

Conventions: timestamps are ``datetime64[ns, UTC]``; durations are float seconds named ``*_s``; text is
pandas' ``string`` dtype (missing = ``<NA>``); counts that can be unknown are nullable ``Int64``; parsed
JSON (job data, return values, event fields, lists of ids) is ``object``. :func:`build_frame` casts to
these dtypes, so a frame has the same columns and dtypes whether it has a million rows or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

TS = "datetime64[ns, UTC]"
STR = "string"
#: largest |epoch ms| a nanosecond timestamp can hold (year 2262)
MAX_MS = 9.2e12


def _cols(spec: str) -> dict[str, str]:
    """``"a:string b:int64"`` -> ``{"a": "string", "b": "int64"}`` (``ts`` = UTC timestamp)."""
    out = {}
    for item in spec.split():
        name, dtype = item.split(":")
        out[name] = TS if dtype == "ts" else dtype
    return out


SCHEMAS: dict[str, dict[str, str]] = {
    "queues": _cols(
        "queue:string waiting:int64 active:int64 prioritized:int64 delayed:int64 waiting_children:int64 "
        "completed:int64 failed:int64 paused_legacy:int64 paused:bool dead_letter:bool global_concurrency:Int64 "
        "rate_limit_max:Int64 rate_limit_duration_s:float64 workers:int64 oldest_waiting:ts "
        "oldest_waiting_age_s:float64 completed_window:int64 failed_window:int64 failure_rate:float64 "
        "schedulers:int64 events:int64 events_max_len:Int64 version:string parse_error:string"
    ),
    "jobs": _cols(
        "id:string name:string state:string priority:int64 delay_ms:int64 attempts_made:int64 "
        "attempts_started:int64 stalled_count:int64 max_attempts:int64 timestamp:ts processed_on:ts "
        "finished_on:ts wait_s:float64 run_s:float64 age_s:float64 progress:object failed_reason:string "
        "returnvalue:object data:object data_bytes:Int64 opts:object processed_by:string parent:string "
        "scheduler_id:string dedup_id:string deferred_failure:string parse_error:string"
    ),
    "failures": _cols(
        "signature:string error:string top_frame:string count:int64 first_seen:ts last_seen:ts "
        "names:object example_ids:object ids:object example_reason:string parse_error:string"
    ),
    "stalled": _cols(
        "id:string name:string processed_by:string lock_token:string lock_ttl_s:float64 in_stalled_set:bool "
        "worker_connected:bool workers_on_queue:int64 stalled_count:Int64 attempts_made:Int64 "
        "attempts_started:Int64 max_attempts:Int64 processed_on:ts active_s:float64 deferred_failure:string "
        "verdict:string detail:string parse_error:string"
    ),
    "audit": _cols(
        "ts:ts action:string queue:string mode:string count:Int64 ids:object params:object result:string "
        "source:string notebook:string user:string host:string pid:Int64 id:string"
    ),
    "events": _cols("event_id:string ts:ts event:string job_id:string prev:string fields:object parse_error:string"),
    "timeline": _cols(
        "ts:ts source:string event:string detail:string since_created_s:float64 fields:object parse_error:string"
    ),
    "metrics": _cols("minute:ts completed:int64 failed:int64 total:int64 failure_rate:float64 partial:bool"),
    "workers": _cols(
        "queue:string prefix:string role:string worker_name:string naming:string client_name:string "
        "client_id:Int64 addr:string user:string age_s:float64 idle_s:float64 cmd:string blocked:bool "
        "lib_name:string lib_ver:string"
    ),
    "schedulers": _cols(
        "scheduler_id:string name:string next_run:ts next_in_s:float64 pattern:string tz:string every_s:float64 "
        "offset_s:float64 limit:Int64 start_date:ts end_date:ts iteration_count:Int64 pending_job_id:string "
        "pending_job_exists:bool legacy:bool data:object opts:object parse_error:string"
    ),
    "flow": _cols(
        "root_id:string queue:string prefix:string job_id:string name:string depth:int64 parent_id:string "
        "parent_queue:string state:string pending:int64 processed:int64 ignored:int64 failed:int64 "
        "deferred_failure:string stuck:string"
    ),
    "consistency": _cols(
        "check:string severity:string key:string job_id:string state:string detail:string suggested_fix:string"
    ),
    "info": _cols("section:string field:string value:object number:float64"),
    "clients": _cols(
        "id:Int64 name:string addr:string laddr:string user:string db:Int64 age_s:float64 idle_s:float64 "
        "flags:string cmd:string blocked:bool multi:Int64 sub:Int64 psub:Int64 qbuf:Int64 omem:Int64 "
        "tot_mem:Int64 lib_name:string lib_ver:string queue:string role:string"
    ),
    "persistence": _cols(
        "loading:boolean aof_enabled:boolean appendfsync:string save:string rdb_changes_since_last_save:Int64 "
        "rdb_bgsave_in_progress:boolean rdb_last_save:ts last_save_age_s:float64 rdb_last_bgsave_status:string "
        "rdb_last_bgsave_s:float64 aof_rewrite_in_progress:boolean aof_rewrite_scheduled:boolean "
        "aof_last_bgrewrite_status:string aof_last_write_status:string aof_last_rewrite_s:float64 "
        "aof_current_size:Int64 aof_base_size:Int64 aof_delayed_fsync:Int64"
    ),
    "slowlog": _cols(
        "id:Int64 ts:ts duration_s:float64 command:string args:object script:string client_addr:string "
        "client_name:string"
    ),
    "latency": _cols("event:string last_spike:ts latest_s:float64 max_s:float64"),
    "memory": _cols("metric:string value:object number:float64"),
    "commandstats": _cols(
        "command:string calls:int64 total_s:float64 per_call_s:float64 share:float64 rejected_calls:Int64 "
        "failed_calls:Int64 p50_s:float64 p99_s:float64 p999_s:float64"
    ),
    "bigkeys": _cols("key:string type:string length:Int64 bytes:Int64 ttl_s:float64 queue:string role:string"),
    "memory_by_queue": _cols("queue:string role:string keys:int64 bytes:int64 share:float64"),
    "config_audit": _cols("scope:string setting:string value:string recommended:string severity:string why:string"),
    "dead_letters": _cols(
        "dead_letter_id:string queue:string state:string name:string source_queue:string source_prefix:string "
        "source_job_id:string failed_reason:string attempts_made:Int64 created:ts processed:ts dead_lettered:ts "
        "stacktrace:object"
    ),
    "dead_letter_replay": _cols(
        "dead_letter_id:string source_queue:string source_job_id:string target_queue:string new_job_id:string "
        "name:string failed_reason:string dead_lettered:ts action:string"
    ),
    "alerts": _cols(
        "name:string scope:string firing:bool severity:string value:float64 threshold:float64 evidence:string"
    ),
}


def columns(name: str) -> list[str]:
    """Column names of frame ``name``."""
    return list(SCHEMAS[name])


def empty_frame(name: str) -> pd.DataFrame:
    """A zero-row frame with the declared columns and dtypes of ``name``."""
    return pd.DataFrame({col: pd.Series([], dtype=dtype) for col, dtype in SCHEMAS[name].items()})


def ms_to_ts(values: Any) -> pd.DatetimeIndex:
    """Epoch milliseconds (numbers, None/NaN for missing) -> tz-aware UTC nanosecond timestamps.

    Exact to the microsecond (float ns would be off by up to 256 ns); values outside pandas' range
    (corrupt data) become NaT instead of raising.
    """
    arr = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(arr) & (np.abs(arr) < MAX_MS)
    ns = np.where(valid, np.round(np.where(valid, arr, 0.0) * 1000.0), 0.0).astype(np.int64) * 1000
    ns[~valid] = np.iinfo(np.int64).min  # NaT
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def _column(values: Any, dtype: str, n: int) -> Any:
    if values is None:
        values = [None] * n
    if dtype == TS:
        if isinstance(values, (pd.Series, pd.DatetimeIndex)) and str(values.dtype) == TS:
            return pd.Series(values).reset_index(drop=True)
        return pd.Series(ms_to_ts(values))
    if dtype == "object":
        return pd.Series(list(values), dtype=object)
    if dtype in ("int64", "float64", "bool"):
        return pd.Series(np.asarray(values, dtype=dtype))
    if dtype == "Int64":
        arr = np.asarray(values, dtype=object) if isinstance(values, list) else values
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
            arr = np.where(np.isfinite(arr), np.trunc(arr), np.nan)
            return pd.Series(pd.array(arr, dtype="Float64").astype("Int64"))
        return pd.Series(pd.array(list(arr), dtype="Int64"))
    return pd.Series(pd.array(values, dtype=dtype))


def build_frame(name: str, cols: Mapping[str, Any], n: int | None = None) -> pd.DataFrame:
    """A frame of schema ``name`` from column values (lists/arrays; timestamp columns as epoch ms).

    Columns missing from ``cols`` are filled with missing values.
    """
    schema = SCHEMAS[name]
    if n is None:
        n = next((len(v) for v in cols.values() if v is not None), 0)
    if n == 0:
        return empty_frame(name)
    return pd.DataFrame({col: _column(cols.get(col), dtype, n) for col, dtype in schema.items()})


def from_records(name: str, records: list[dict[str, Any]]) -> pd.DataFrame:
    """A frame of schema ``name`` from row dicts (timestamp columns as epoch ms)."""
    if not records:
        return empty_frame(name)
    return build_frame(name, {col: [r.get(col) for r in records] for col in SCHEMAS[name]}, len(records))


def check_frame(name: str, df: pd.DataFrame) -> None:
    """Assert ``df`` has exactly the declared columns and dtypes (extra ``data.*`` columns allowed)."""
    schema = SCHEMAS[name]
    got = [c for c in df.columns if not str(c).startswith("data.")]
    if got != list(schema):
        raise AssertionError(f"{name}: columns {got} != {list(schema)}")
    for col, dtype in schema.items():
        if str(df[col].dtype) != str(pd.Series([], dtype=dtype).dtype):
            raise AssertionError(f"{name}.{col}: dtype {df[col].dtype} != {dtype}")
