"""Model output tables to Parquet bytes.

A model may return, per output name: a pyarrow Table or RecordBatch, a polars DataFrame, a
pandas DataFrame, any object speaking the Arrow C stream interface, or a dict of columns
(lists, tuples or 1-D numpy arrays of one length). A dict of scalars is a one-row table.
polars and pandas are never imported here: their frames are recognised by type name and
converted with their own methods, so a model that does not use them does not pay for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SMALL_TABLE_ROWS", "Compression", "OutputTableError", "to_arrow", "to_parquet"]

Compression = Literal["zstd", "snappy"]

SMALL_TABLE_ROWS = 10_000
"""Tables up to this many rows are written without column statistics or dictionary encoding.

A per-task file is small and read whole, so neither pays for itself there, while skipping
them makes writing ~30% cheaper and the file smaller (the SIR example's two outputs: 0.19 ->
0.13 ms, 7.0 -> 5.6 KB), which counts at ~20 ms per task. Larger tables keep both.
"""


class OutputTableError(ValueError):
    """A model output cannot be turned into a table. Names the output and says what to return."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(
            f"output {name!r} {problem} (hint: return a pyarrow Table, polars or pandas "
            "DataFrame, or a dict of equal-length columns)"
        )
        self.name = name


def _frame_library(obj: object) -> str:
    """'pandas' or 'polars' if `obj` is one of their DataFrames, else ''. No import."""
    cls = type(obj)
    root = cls.__module__.partition(".")[0]
    if root in ("pandas", "polars"):
        return f"{root}.{cls.__name__}"
    return ""


def _is_column(value: object) -> bool:
    if isinstance(value, (list, tuple, pa.Array, pa.ChunkedArray)):
        return True
    # numpy arrays and pandas/polars Series: sized and typed; 0-d arrays are scalars
    return hasattr(value, "dtype") and hasattr(value, "__len__") and getattr(value, "ndim", 1) >= 1


def _dict_to_arrow(name: str, columns: Mapping[Any, Any]) -> pa.Table:
    if not columns:
        raise OutputTableError(name, "is an empty dict: it has no columns")
    bad_keys = [k for k in columns if not isinstance(k, str)]
    if bad_keys:
        raise OutputTableError(name, f"has non-string column names {bad_keys[:5]!r}")
    is_col = {k: _is_column(v) for k, v in columns.items()}
    if not any(is_col.values()):
        columns = {k: [v] for k, v in columns.items()}  # a dict of scalars: one row
    elif not all(is_col.values()):
        scalars = sorted(k for k, c in is_col.items() if not c)
        raise OutputTableError(name, f"mixes scalar values {scalars} with columns")
    for key, value in columns.items():
        if getattr(value, "ndim", 1) != 1:
            raise OutputTableError(name, f"column {key!r} has {value.ndim} dimensions, not 1")
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise OutputTableError(name, f"has columns of different lengths {lengths}")
    try:
        return pa.table(
            {k: v if isinstance(v, pa.ChunkedArray) else pa.array(v) for k, v in columns.items()}
        )
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise OutputTableError(name, f"has a column Arrow cannot type: {exc}") from exc


def to_arrow(name: str, obj: Any) -> pa.Table:
    """Convert one model output to a pyarrow Table, or raise OutputTableError naming it."""
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, Mapping):
        return _dict_to_arrow(name, obj)
    library = _frame_library(obj)
    try:
        if library == "pandas.DataFrame":
            return pa.Table.from_pandas(obj)
        if library == "polars.DataFrame":
            return obj.to_arrow()
        if library == "polars.LazyFrame":
            raise OutputTableError(
                name, "is a polars LazyFrame; call .collect() before returning it"
            )
        if hasattr(obj, "__arrow_c_stream__"):
            return pa.table(obj)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        if isinstance(exc, OutputTableError):
            raise
        raise OutputTableError(
            name, f"({library or type(obj).__name__}) failed to convert: {exc}"
        ) from exc
    raise OutputTableError(
        name, f"is a {type(obj).__module__}.{type(obj).__qualname__}, not a table"
    )


def to_parquet(name: str, obj: Any, *, compression: Compression = "zstd") -> bytes:
    """One model output as the bytes of a Parquet file."""
    table = to_arrow(name, obj)
    full = table.num_rows > SMALL_TABLE_ROWS
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(
            table, sink, compression=compression, write_statistics=full, use_dictionary=full
        )
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise OutputTableError(name, f"cannot be written as Parquet: {exc}") from exc
    return sink.getvalue().to_pybytes()
