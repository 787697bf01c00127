"""Model outputs of every supported type become Parquet with the same rows."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelops_runner.tables import SMALL_TABLE_ROWS, OutputTableError, to_arrow, to_parquet

ROWS = [{"day": 1, "name": "a", "value": 0.5}, {"day": 2, "name": "b", "value": 1.5}]
COLUMNS = {"day": [1, 2], "name": ["a", "b"], "value": [0.5, 1.5]}


def _rows(parquet: bytes) -> list[dict]:
    return pq.read_table(io.BytesIO(parquet)).to_pylist()


@pytest.mark.parametrize(
    "table",
    [
        pa.table(COLUMNS),
        pa.RecordBatch.from_pydict(COLUMNS),
        dict(COLUMNS),
        {"day": np.array([1, 2]), "name": ("a", "b"), "value": np.array([0.5, 1.5])},
        pd.DataFrame(COLUMNS),
        pl.DataFrame(COLUMNS),
    ],
    ids=["pyarrow", "record_batch", "dict_of_lists", "dict_of_numpy", "pandas", "polars"],
)
@pytest.mark.parametrize("compression", ["zstd", "snappy"])
def test_every_table_type_decodes_to_the_same_rows(table: object, compression: str) -> None:
    parquet = to_parquet("incidence", table, compression=compression)  # type: ignore[arg-type]
    assert parquet[:4] == b"PAR1"
    assert _rows(parquet) == ROWS
    codec = pq.ParquetFile(io.BytesIO(parquet)).metadata.row_group(0).column(0).compression
    assert codec.lower() == compression


def test_small_tables_skip_statistics_and_dictionaries_large_ones_keep_them() -> None:
    def first_column(rows: int) -> pq.ColumnChunkMetaData:
        parquet = to_parquet("t", {"label": ["x", "y"] * (rows // 2)}, compression="snappy")
        return pq.ParquetFile(io.BytesIO(parquet)).metadata.row_group(0).column(0)

    small, large = first_column(SMALL_TABLE_ROWS), first_column(SMALL_TABLE_ROWS + 2)
    assert not small.is_stats_set and not any("DICTIONARY" in e for e in small.encodings)
    assert large.is_stats_set and any("DICTIONARY" in e for e in large.encodings)


def test_a_dict_of_scalars_is_one_row() -> None:
    parquet = to_parquet("summary", {"peak": np.int64(412), "beta": 0.3, "label": "x", "ok": True})
    assert _rows(parquet) == [{"peak": 412, "beta": 0.3, "label": "x", "ok": True}]


def test_pandas_frames_keep_a_meaningful_index_as_a_column() -> None:
    frame = pd.DataFrame({"value": [0.5, 1.5]}, index=pd.Index([1, 2], name="day"))
    assert to_arrow("t", frame).to_pylist() == [{"value": 0.5, "day": 1}, {"value": 1.5, "day": 2}]


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"a": [1, 2], "b": [1]}, r"columns of different lengths \{'a': 2, 'b': 1\}"),
        ({"a": [1, 2], "b": 3}, r"mixes scalar values \['b'\] with columns"),
        ({}, "empty dict"),
        ({1: [1]}, "non-string column names"),
        ({"a": np.zeros((2, 2))}, "column 'a' has 2 dimensions"),
        ({"a": [1, "x"]}, "Arrow cannot type"),
        ([1, 2, 3], "is a builtins.list, not a table"),
        (object(), "is a builtins.object, not a table"),
        (pl.DataFrame(COLUMNS).lazy(), r"LazyFrame; call .collect\(\)"),
    ],
)
def test_unconvertible_outputs_name_the_output_and_the_problem(table: object, problem: str) -> None:
    with pytest.raises(OutputTableError, match=problem) as info:
        to_parquet("incidence", table)
    assert info.value.name == "incidence"
    assert "output 'incidence'" in str(info.value)
    assert "hint:" in str(info.value)
