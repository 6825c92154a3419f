"""jobs(dtype_backend=...): the Arrow-backed and nullable frames hold the same rows as the default frame."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import redis

import sbqueue
from sbqueue.inspection import SCHEMAS, Inspector
from sbqueue.inspection.query import JSON_COLUMNS


@pytest.fixture
def insp(r: redis.Redis, prefix: str) -> Iterator[Inspector]:
    inspector = Inspector(r, prefix=prefix, progress=False)
    yield inspector
    inspector.close()


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def assert_same_rows(default: pd.DataFrame, arrow: pd.DataFrame) -> None:
    """Same columns, row order and values; Arrow's JSON columns hold the stored text of the parsed values."""
    assert arrow.columns.tolist() == default.columns.tolist()
    assert len(arrow) == len(default)
    for col in default.columns:
        if col in SCHEMAS["jobs"]:
            assert isinstance(arrow[col].dtype, pd.ArrowDtype), col
        for i, (want, got) in enumerate(zip(default[col].tolist(), arrow[col].tolist(), strict=True)):
            where = f"{col}[{i}]: {want!r} vs {got!r}"
            if _missing(want):
                assert _missing(got), where
            elif col in JSON_COLUMNS:
                assert isinstance(got, str), where
                invalid = f"{col}: invalid JSON" in str(default.parse_error.iloc[i])
                assert (got == want) if invalid else (json.loads(got) == want), where
            elif col == "age_s":  # measured from each call's own "now"
                assert abs(got - want) < 60, where
            else:
                assert got == want, where


def _bad_queue(r: redis.Redis, prefix: str) -> None:
    base = f"{prefix}:bad:"
    r.hset(base + "1", mapping={"name": "j", "data": "{not json", "opts": "[1,2]", "timestamp": "yesterday",
                                "atm": "x", "progress": "{", "returnvalue": "nope"})  # fmt: skip
    r.hset(base + "2", mapping={"name": "ok", "data": '{"a":1}', "timestamp": "99999999999999999"})
    r.set(base + "3", "a string where a hash should be")
    r.hset(base + "4", mapping={"data": b"\xff\xfe not utf-8", "progress": ""})
    r.hset(base + "6", mapping={"name": "fine", "data": '{"a": 2, "b": "x", "c": [1]}', "timestamp": "1700000000123.5",
                                "processedOn": "1700000001000", "finishedOn": "1700000002000", "returnvalue": "5",
                                "progress": "50", "opts": '{"attempts": 3}', "pb": "w1", "failedReason": "boom",
                                "priority": "4", "delay": "1.9"})  # fmt: skip
    r.hset(base + "7", mapping={"name": "fine", "data": '{"a": 3}', "timestamp": "1700000000000", "opts": "{}"})
    r.rpush(base + "wait", "1", "2", "3", "4", "5", "6", "7")  # 5 has no hash at all
    r.zadd(base + "failed", {"6": 1700000002000, "7": 1700000003000})
    r.set(base + "completed", "a string where a sorted set should be")


@pytest.mark.parametrize("scripts", [True, False], ids=["lua", "pipeline"])
@pytest.mark.parametrize(
    "kw",
    [{}, {"data_fields": ["a", "b", "c", "missing"]}, {"query": {"data.a": [2, 3]}},
     {"query": {"data.a": 2}, "data_fields": ["a"]}, {"name": "fine"}, {"states": "failed", "limit": 1},
     {"limit": 3}, {"query": {"returnvalue": "5"}}, {"states": "waiting", "query": {"name": "nope"}}],
    ids=["all", "data_fields", "query", "query+fields", "name", "limit-failed", "limit", "raw-json", "none"],
)  # fmt: skip
def test_backends_hold_the_same_rows(r: redis.Redis, prefix: str, insp: Inspector, scripts: bool,
                                     kw: dict[str, Any]) -> None:  # fmt: skip
    if not scripts:
        insp._ctx.use_script = False
    _bad_queue(r, prefix)
    default = insp.jobs("bad", **kw)
    arrow = insp.jobs("bad", **kw, dtype_backend="pyarrow")
    assert_same_rows(default, arrow)
    bound = insp.queue("bad").jobs(**kw, dtype_backend="pyarrow")
    assert_same_rows(default, bound)
    nullable = insp.jobs("bad", **kw, dtype_backend="numpy_nullable")
    assert nullable.columns.tolist() == default.columns.tolist()
    for col, dtype in SCHEMAS["jobs"].items():
        want = {"int64": "Int64", "float64": "Float64", "bool": "boolean"}.get(dtype, dtype)
        assert str(nullable[col].dtype) == str(pd.Series([], dtype=want).dtype), col
        assert nullable[col].isna().tolist() == default[col].isna().tolist(), col


def test_arrow_types_and_fields(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    _bad_queue(r, prefix)
    df = insp.jobs("bad", data_fields=["a", "c"], dtype_backend="pyarrow")
    assert df["id"].dtype == pd.ArrowDtype(pa.string()) and df["data"].dtype == pd.ArrowDtype(pa.string())
    assert df["timestamp"].dtype == pd.ArrowDtype(pa.timestamp("ns", tz="UTC"))
    assert df["priority"].dtype == pd.ArrowDtype(pa.int64()) and df["wait_s"].dtype == pd.ArrowDtype(pa.float64())
    assert df["data.a"].dtype == pd.ArrowDtype(pa.int64())  # one scalar kind: Arrow-backed
    assert df["data.c"].dtype == object  # lists stay Python values
    row = df[(df["id"] == "6") & (df["state"] == "waiting")].iloc[0]
    assert row.timestamp == pd.Timestamp(1700000000123500, unit="us", tz="UTC") and row.delay_ms == 1
    assert json.loads(row.data) == {"a": 2, "b": "x", "c": [1]} and row.run_s == 1.0


@pytest.mark.parametrize("backend", ["pyarrow", "numpy_nullable"])
def test_empty_results_keep_their_types(insp: Inspector, backend: str) -> None:
    df = insp.jobs("nothing-here", dtype_backend=backend, data_fields=["x"])
    full = insp.jobs("nothing-here", data_fields=["x"])
    assert df.empty and df.columns.tolist() == full.columns.tolist()
    if backend == "pyarrow":
        assert all(isinstance(df[c].dtype, pd.ArrowDtype) for c in SCHEMAS["jobs"])
        assert df["timestamp"].dtype == pd.ArrowDtype(pa.timestamp("ns", tz="UTC"))
    else:
        assert str(df["priority"].dtype) == "Int64" and str(df["wait_s"].dtype) == "Float64"


def test_bad_backend_values(insp: Inspector) -> None:
    for bad in ("arrow", "numpy", "", 1, True, ["pyarrow"]):
        with pytest.raises(sbqueue.InvalidOptionError, match="dtype_backend"):
            insp.jobs("q", dtype_backend=bad)  # type: ignore[arg-type]


def test_pyarrow_missing_names_the_extra(insp: Inspector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(sbqueue.ConfigurationError, match=r"sbqueue\[history\]"):
        insp.jobs("q", dtype_backend="pyarrow")
    assert insp.jobs("q", dtype_backend="numpy_nullable").empty  # the other backends do not need it


def test_arrow_frame_is_smaller(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    """20k jobs over a few batches and Arrow chunks: same rows, less memory than the object frame."""
    q = sbqueue.Queue("mem", r, prefix=prefix)
    n = 20_000
    for start in range(0, n, 1000):
        q.add_bulk([{"name": "render", "data": {"i": i, "customer": f"c{i % 97}", "items": [i, i + 1]}}
                    for i in range(start, start + 1000)])  # fmt: skip
    default = insp.jobs("mem", data_fields=["customer"])
    arrow = insp.jobs("mem", data_fields=["customer"], dtype_backend="pyarrow")
    assert len(arrow) == n and arrow["id"].tolist() == default["id"].tolist()
    assert arrow["data.customer"].tolist() == default["data.customer"].tolist()
    assert [json.loads(d) for d in arrow["data"].head(50)] == default["data"].head(50).tolist()
    used_default = default.memory_usage(deep=True).sum()
    used_arrow = arrow.memory_usage(deep=True).sum()
    assert used_arrow < 0.6 * used_default, (used_arrow, used_default)
