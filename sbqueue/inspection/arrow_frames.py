"""The ``dtype_backend`` option of jobs(): the same rows as Arrow-backed or nullable-dtype columns.

``"pyarrow"`` builds the frame straight from the decoded batches as pyarrow tables, a chunk at a time
(:class:`ArrowJobRows`), and hands them to pandas as ``pd.ArrowDtype`` columns without a copy, so the scan
never holds a million-row object frame; the JSON columns (``data``, ``returnvalue``, ``progress``,
``opts``) keep their stored JSON text (checked all the same: ``parse_error`` is identical) instead of
millions of parsed Python objects. ``"numpy_nullable"`` casts today's numbers to pandas' nullable dtypes.
pyarrow is an optional extra, imported only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sbqueue.errors import ConfigurationError, InvalidOptionError
from sbqueue.inspection.job_decoding import FIELD_INDEX, FIELDS, decode_columns, json_column
from sbqueue.inspection.query import Condition
from sbqueue.inspection.schemas import MAX_MS, SCHEMAS, TS

#: the accepted values of ``dtype_backend`` (None: the default frame)
BACKENDS = (None, "numpy_nullable", "pyarrow")
#: rows decoded into one Arrow table at a time: big enough for cheap conversions, small enough that the raw
#: strings of one chunk are all the scan holds besides the tables built so far
CHUNK_ROWS = 32_768
_NULLABLE = {"int64": "Int64", "float64": "Float64", "bool": "boolean"}
_PRIMITIVE = ("bool", "int64", "double", "string", "large_string")


def check_backend(value: Any) -> str | None:
    """A valid ``dtype_backend`` (pyarrow importable when it is ``"pyarrow"``), else a clear error."""
    if not (value is None or (isinstance(value, str) and value in BACKENDS)):
        raise InvalidOptionError(
            f"dtype_backend must be None, 'numpy_nullable' or 'pyarrow', got {value!r}", option="dtype_backend"
        )
    if value == "pyarrow":
        pyarrow()
    return value  # type: ignore[no-any-return]


def pyarrow() -> Any:
    """The pyarrow module, or :class:`ConfigurationError` naming the extra that installs it."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise ConfigurationError(
            "dtype_backend='pyarrow' needs pyarrow, which is not installed: pip install 'sbqueue[history]'"
        ) from None


def nullable(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """``df`` (schema ``name``) with int64/float64/bool as Int64/Float64/boolean (NaN becomes <NA>)."""
    for col, dtype in SCHEMAS[name].items():
        if dtype in _NULLABLE:
            df[col] = df[col].astype(_NULLABLE[dtype])  # type: ignore[call-overload]
    return df


def _arrow_type(pa: Any, dtype: str) -> Any:
    if dtype == TS:
        return pa.timestamp("ns", tz="UTC")
    return {"int64": pa.int64(), "Int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
            "boolean": pa.bool_()}.get(dtype, pa.string())  # fmt: skip  # string, and JSON text for object


def arrow_schema(name: str) -> Any:
    pa = pyarrow()
    return pa.schema([(col, _arrow_type(pa, dtype)) for col, dtype in SCHEMAS[name].items()])


def _arrow_column(pa: Any, values: Any, dtype: str, n: int) -> Any:
    kind = _arrow_type(pa, dtype)
    if values is None:
        return pa.nulls(n, kind)
    if dtype == TS:  # epoch ms -> ns, exact to the microsecond as schemas.ms_to_ts; out of range is missing
        arr = np.asarray(values, dtype=np.float64)
        valid = np.isfinite(arr) & (np.abs(arr) < MAX_MS)
        ns = np.round(np.where(valid, arr, 0.0) * 1000.0).astype(np.int64) * 1000
        return pa.array(ns, type=kind, mask=~valid)
    if dtype == "float64":
        return pa.array(np.asarray(values, dtype=np.float64), type=kind, from_pandas=True)  # NaN -> missing
    if dtype in ("int64", "bool"):
        return pa.array(np.asarray(values, dtype=dtype), type=kind)
    return pa.array(values, type=kind, from_pandas=True)


def arrow_table(name: str, cols: dict[str, Any], n: int) -> Any:
    """A pyarrow table of schema ``name`` from columns as :func:`sbqueue.inspection.schemas.build_frame` takes
    them (object columns as text); missing columns are null."""
    pa = pyarrow()
    schema = arrow_schema(name)
    arrays = [_arrow_column(pa, cols.get(col), dtype, n) for col, dtype in SCHEMAS[name].items()]
    return pa.Table.from_arrays(arrays, schema=schema)


def arrow_frame(name: str, tables: Sequence[Any]) -> pd.DataFrame:
    """One ``pd.ArrowDtype`` frame of the tables (no copy; zero rows keep the schema's types)."""
    pa = pyarrow()
    table = pa.concat_tables(tables) if tables else arrow_schema(name).empty_table()
    return table.to_pandas(types_mapper=pd.ArrowDtype)  # type: ignore[no-any-return]


def field_column(values: list[Any]) -> pd.Series:
    """A ``data.<field>`` column: Arrow-backed when every value is a scalar of one kind (numbers, text or
    booleans), else object holding the values as jobs() without a backend does."""
    pa = pyarrow()
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = None
    if arr is not None and str(arr.type) in _PRIMITIVE:
        return pd.Series(pd.arrays.ArrowExtensionArray(arr))
    return pd.Series(values, dtype=object)


class ArrowJobRows:
    """Collects the rows of one jobs() scan and decodes them into Arrow tables a chunk at a time.

    :meth:`add` parses the batch's ``data`` right away (while Redis answers the next read): to check it, as
    the default frame does, and to pick the ``data_fields`` values; the parsed objects are dropped after.
    """

    def __init__(self, now_ms: int, data_fields: Sequence[str] | None) -> None:
        self.now_ms = now_ms
        self.getters = [(f"data.{f}", Condition(f"data.{f}", None)) for f in data_fields or ()]
        self.fields: dict[str, list[Any]] = {col: [] for col, _ in self.getters}
        self.tables: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.states: list[str] = []
        self.status: list[Any] = []
        self.cols: list[list[Any]] = [[] for _ in FIELDS]
        self.data_errors: list[Any] = []

    def add(self, ids: Sequence[str], state: str, status: Sequence[Any], cols: Sequence[Sequence[Any]]) -> None:
        """Rows of one batch, all in ``state``."""
        problems: list[Any] = [None] * len(ids)
        parsed = json_column(cols[FIELD_INDEX["data"]], "data", problems)
        for col, getter in self.getters:
            self.fields[col] += [getter.value(d) for d in parsed]
        del parsed
        self.data_errors += problems
        self.ids += ids
        self.states += [state] * len(ids)
        self.status += status
        for acc, values in zip(self.cols, cols, strict=True):
            acc += values
        if len(self.ids) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        n = len(self.ids)
        if n:
            decoded = decode_columns(self.ids, self.states, self.status, self.cols, self.now_ms,
                                     data=(None, self.data_errors), json_text=True)  # fmt: skip
            self.tables.append(arrow_table("jobs", decoded, n))
        self._reset()

    def add_table(self, table: Any) -> None:
        """Rows built elsewhere (e.g. a row per unreadable state key), after the rows added so far."""
        self.flush()
        self.tables.append(table)
        for col in self.fields:
            self.fields[col] += [None] * table.num_rows

    def frame(self) -> pd.DataFrame:
        self.flush()
        df = arrow_frame("jobs", self.tables)
        self.tables = []
        for col, values in self.fields.items():
            df[col] = field_column(values).set_axis(df.index)
        return df
