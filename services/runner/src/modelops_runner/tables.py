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

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .wire import OutputTableError, RawTable, check_columns

__all__ = [
    "SMALL_TABLE_ROWS",
    "Compression",
    "OutputTableError",
    "encode_output",
    "raw_to_arrow",
    "table_to_parquet",
    "to_arrow",
    "to_parquet",
    "warm_up",
]

Compression = Literal["zstd", "snappy"]

SMALL_TABLE_ROWS = 10_000
"""Tables up to this many rows are written without column statistics or dictionary encoding.

A per-task file is small and read whole, so neither pays for itself there, while skipping
them makes writing ~30% cheaper and the file smaller (the SIR example's two outputs: 0.19 ->
0.13 ms, 7.0 -> 5.6 KB), which counts at ~20 ms per task. Larger tables keep both.
"""


def _frame_library(obj: object) -> str:
    """'pandas' or 'polars' if `obj` is one of their DataFrames, else ''. No import."""
    cls = type(obj)
    root = cls.__module__.partition(".")[0]
    if root in ("pandas", "polars"):
        return f"{root}.{cls.__name__}"
    return ""


def _dict_to_arrow(name: str, columns: Mapping[Any, Any]) -> pa.Table:
    if not any(check_columns(name, columns).values()):
        columns = {k: [v] for k, v in columns.items()}  # a dict of scalars: one row
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
    return table_to_parquet(name, to_arrow(name, obj), compression=compression)


def table_to_parquet(name: str, table: pa.Table, *, compression: Compression = "zstd") -> bytes:
    """A table as the bytes of a Parquet file (OutputTableError names `name` if it cannot)."""
    full = table.num_rows > SMALL_TABLE_ROWS
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(
            table, sink, compression=compression, write_statistics=full, use_dictionary=full
        )
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise OutputTableError(name, f"cannot be written as Parquet: {exc}") from exc
    return sink.getvalue().to_pybytes()


def raw_to_arrow(name: str, raw: RawTable) -> pa.Table:
    """The table a worker sent in raw form (wire.to_raw), as the worker would have built it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), list):
        raise OutputTableError(name, f"arrived as a {type(raw).__name__}, not a table")
    columns = {
        key: values if dtype is None else np.frombuffer(values, dtype=np.dtype(dtype))
        for key, dtype, values in raw["columns"]
    }
    table = _dict_to_arrow(name, columns)
    if table.num_rows != raw["rows"]:
        raise OutputTableError(name, f"arrived with {table.num_rows} rows, not {raw['rows']}")
    return table


def encode_output(name: str, output: bytes | RawTable, *, compression: Compression) -> bytes:
    """One output from a worker reply as Parquet bytes: written here if it came raw."""
    if isinstance(output, (bytes, bytearray, memoryview)):
        return bytes(output)
    return table_to_parquet(name, raw_to_arrow(name, output), compression=compression)


def warm_up() -> None:
    """Write one tiny raw table as Parquet, so that what pyarrow loads on first use is loaded.

    Paid in a thread while the runner starts, instead of during the first tasks. (The first
    `pa.array` call also imports pandas when it can, to check inputs for pandas types: the
    runner's process hides pandas, see __main__.hide_pandas.)
    """
    raw: RawTable = {"rows": 1, "columns": [["n", "<i8", bytes(8)], ["x", None, [0.5]]]}
    encode_output("warm_up", raw, compression="snappy")
