"""Raw outputs (wire.py): what the worker sends instead of Parquet, and what the runner writes.

The promise: an output that travels raw is stored as exactly the Parquet the worker would
have written itself, and whatever cannot travel raw still travels (as Parquet).
"""

from __future__ import annotations

import datetime as dt

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelops_runner.tables import encode_output, to_parquet
from modelops_runner.wire import RAW_LIMIT_BYTES, OutputTableError, to_raw

SAME_AS_WORKER_PARQUET = {
    "lists": {"day": [1, 2, 3], "name": ["a", "b", None], "ok": [True, False, True]},
    "tuples": {"x": (0.5, 1.5, float("nan"))},
    "numpy": {
        "i": np.arange(4, dtype=np.int32),
        "f": np.linspace(0, 1, 4),
        "b": np.array([True, False, True, True]),
        "t": np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"], "M8[D]"),
        "s": np.array(["a", "bb", "ccc", ""]),
    },
    "strided numpy": {"every_other": np.arange(10)[::2]},
    "scalars": {"peak": 4199, "rate": 0.977, "label": "x", "none": None},
    "numpy scalars": {"peak": np.int64(4199), "rate": np.float32(0.5)},
    "empty columns": {"day": np.array([], dtype=np.int64), "name": []},
}


@pytest.mark.parametrize("output", SAME_AS_WORKER_PARQUET.values(), ids=SAME_AS_WORKER_PARQUET)
def test_a_raw_output_is_stored_as_the_parquet_the_worker_would_write(output: dict) -> None:
    raw = to_raw("out", output)
    assert raw is not None
    over_the_pipe = msgpack.unpackb(msgpack.packb(raw, use_bin_type=True), raw=False)
    stored = encode_output("out", over_the_pipe, compression="snappy")
    assert stored == to_parquet("out", output, compression="snappy")


@pytest.mark.parametrize(
    "output",
    [
        pa.table({"x": [1, 2]}),
        pd.DataFrame({"x": [1, 2]}),
        {"x": pd.Series([1, 2])},
        {"x": np.array([{"a": 1}, None], dtype=object)},
        {"x": np.ma.masked_array([1, 2], mask=[False, True])},
        {"when": [dt.date(2020, 1, 1)]},
        {"big": [2**64]},
        {"x": np.zeros(RAW_LIMIT_BYTES // 8 + 1)},
    ],
    ids=[
        "pyarrow",
        "pandas",
        "series column",
        "object array",
        "masked array",
        "dates in a list",
        "int over 64 bits",
        "over the raw limit",
    ],
)
def test_what_cannot_travel_raw_is_left_to_the_worker(output: object) -> None:
    assert to_raw("out", output) is None


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ({}, "empty dict"),
        ({1: [1]}, "non-string column names"),
        ({"a": [1, 2], "b": 3}, "mixes scalar values ['b'] with columns"),
        ({"a": np.zeros((2, 2))}, "has 2 dimensions"),
        ({"a": [1, 2], "b": [1]}, "different lengths"),
    ],
)
def test_a_dict_that_is_no_table_fails_in_the_worker(output: dict, problem: str) -> None:
    with pytest.raises(OutputTableError, match="output 'out'") as caught:
        to_raw("out", output)
    assert problem in str(caught.value) and "hint:" in str(caught.value)


def test_a_raw_column_arrow_cannot_type_fails_its_task_by_name() -> None:
    raw = to_raw("out", {"x": np.array([1 + 2j, 3 + 4j])})  # numpy can, Arrow cannot
    assert raw is not None
    with pytest.raises(OutputTableError, match="output 'out' has a column Arrow cannot type"):
        encode_output("out", raw, compression="snappy")


def test_parquet_from_the_worker_passes_through_and_garbage_is_refused() -> None:
    parquet = to_parquet("out", pa.table({"x": [1]}), compression="snappy")
    assert encode_output("out", parquet, compression="snappy") == parquet
    with pytest.raises(OutputTableError, match="arrived as a str"):
        encode_output("out", "not a table", compression="snappy")  # type: ignore[arg-type]
    raw = to_raw("out", {"x": [1, 2]})
    assert raw is not None
    with pytest.raises(OutputTableError, match="arrived with 2 rows, not 3"):
        encode_output("out", {**raw, "rows": 3}, compression="snappy")
