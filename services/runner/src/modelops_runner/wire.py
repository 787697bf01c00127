"""Model outputs as they cross the worker pipe: raw columns, written as Parquet by the runner.

Why not Parquet straight from the worker: right after `simulate` the CPU's caches hold the
model, not pyarrow, and a cold Parquet write of the SIR example's two small tables costs
2.3-2.7 ms of a ~20 ms task (0.45 ms warm). The worker therefore sends the columns as they
are (a numpy array's bytes and dtype, or a list of plain values), which costs it ~0.05 ms and
no pyarrow at all, and the runner writes the Parquet files of all the tasks it stores
together, one after another, warm (tables.encode_output).

Only the common shape takes this path: a dict of 1-D numpy arrays, lists or tuples of plain
values, or a dict of scalars (one row), under RAW_LIMIT_BYTES in all. Everything else
(pyarrow, pandas and polars tables, object arrays, larger outputs) returns None here and the
worker writes its Parquet itself, as before: big outputs are then encoded in parallel across
workers rather than in one runner thread. Either way the same checks run first, with the
same messages, so a bad output fails its own task in its worker.

The raw form (msgpack-ready): `{"rows": n, "columns": [[name, dtype, values], ...]}` where
`dtype` is a numpy dtype string and `values` the array's bytes, or `dtype` is None and
`values` a list. This module imports neither numpy nor pyarrow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RAW_LIMIT_BYTES", "OutputTableError", "RawTable", "to_raw"]

RAW_LIMIT_BYTES = 1024 * 1024
"""Outputs of a task larger than this (raw) are written as Parquet by the worker itself."""

RawTable = dict[str, Any]

_PLAIN = frozenset({type(None), bool, int, float, str, bytes})
_INT64 = range(-(2**63), 2**63)


class OutputTableError(ValueError):
    """A model output cannot be turned into a table. Names the output and says what to return."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(
            f"output {name!r} {problem} (hint: return a pyarrow Table, polars or pandas "
            "DataFrame, or a dict of equal-length columns)"
        )
        self.name = name


def is_column(value: object) -> bool:
    """Whether a dict value is a column (else a scalar of a one-row table). No import."""
    if isinstance(value, (list, tuple)):
        return True
    cls = type(value)
    if cls.__module__.startswith("pyarrow") and cls.__name__.endswith("Array"):
        return True  # pa.Array (and its typed subclasses) and pa.ChunkedArray
    return hasattr(value, "dtype") and hasattr(value, "__len__") and getattr(value, "ndim", 1) >= 1


def check_columns(name: str, columns: Mapping[Any, Any]) -> dict[str, bool]:
    """Which values are columns; raise OutputTableError for a dict that is no table. Pure."""
    if not columns:
        raise OutputTableError(name, "is an empty dict: it has no columns")
    bad_keys = [k for k in columns if not isinstance(k, str)]
    if bad_keys:
        raise OutputTableError(name, f"has non-string column names {bad_keys[:5]!r}")
    is_col = {k: is_column(v) for k, v in columns.items()}
    if any(is_col.values()) and not all(is_col.values()):
        scalars = sorted(k for k, c in is_col.items() if not c)
        raise OutputTableError(name, f"mixes scalar values {scalars} with columns")
    if all(is_col.values()):
        for key, value in columns.items():
            if getattr(value, "ndim", 1) != 1:
                raise OutputTableError(name, f"column {key!r} has {value.ndim} dimensions, not 1")
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise OutputTableError(name, f"has columns of different lengths {lengths}")
    return is_col


def _raw_column(value: Any) -> tuple[str | None, Any] | None:
    """(dtype, bytes) of a numpy array, (None, list) of plain values, or None: not raw-able."""
    if isinstance(value, (list, tuple)):
        types = {type(v) for v in value}
        if not types <= _PLAIN:
            return None
        if int in types and not all(v in _INT64 for v in value if type(v) is int):
            return None  # msgpack cannot carry it; Arrow decides what it becomes
        return None, list(value)
    dtype = getattr(value, "dtype", None)
    if type(value).__module__ != "numpy" or dtype is None or dtype.kind == "O":
        return None  # masked arrays, pandas/polars series, object arrays: pyarrow knows them
    return dtype.str, value.tobytes()  # C order; a copy of a strided view


def to_raw(name: str, obj: Any) -> RawTable | None:
    """The raw form of a dict-of-columns output, or None when the worker must write Parquet.

    Raises OutputTableError for a dict that is no table (the same checks as tables.to_arrow).
    """
    if not isinstance(obj, Mapping):
        return None
    is_col = check_columns(name, obj)
    one_row = not any(is_col.values())
    columns: list[list[Any]] = []
    size = 0
    for key, value in obj.items():
        raw = _raw_column(value if not one_row else _as_column(value))
        if raw is None:
            return None
        dtype, values = raw
        size += len(values) if dtype is not None else 16 * len(values)
        if size > RAW_LIMIT_BYTES:
            return None
        columns.append([key, dtype, values])
    rows = 1 if one_row else len(next(iter(obj.values())))
    return {"rows": rows, "columns": columns}


def _as_column(scalar: Any) -> Any:
    """A scalar as a one-value column: a numpy scalar keeps its dtype (its 1-element array)."""
    if type(scalar).__module__ == "numpy" and hasattr(scalar, "reshape"):
        return scalar.reshape(1)
    return [scalar]
