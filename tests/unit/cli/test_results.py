"""Finding and saving results tables, against a real file:// blob store."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from modelops_cli.config import load_config
from modelops_cli.errors import ConfigError, JobNotFinished, ResultsNotFound
from modelops_cli.results import (
    choose_output,
    column_groups,
    locate_results,
    read_table,
    save_table,
)
from modelops_contracts import JobRecord, blob_keys
from modelops_runtime.blobstore import open_blob_store

from .tables import summary, timeseries

JOB = "job-00000000000a"
REF = "local/sir@sha256:" + "0" * 64


def record(state: str = "completed") -> JobRecord:
    return JobRecord(job_id=JOB, state=state, bundle_ref=REF, n_tasks=12, created="t", updated="t")  # type: ignore[arg-type]


def test_choose_output() -> None:
    assert (
        choose_output(["summary", "tasks", "timeseries"], None, ["timeseries", "summary"])
        == "timeseries"
    )
    assert choose_output(["summary", "tasks", "timeseries"], None, []) == "summary"
    assert choose_output(["summary", "tasks"], "tasks", []) == "tasks"
    with pytest.raises(ResultsNotFound, match="'nope'") as info:
        choose_output(["summary", "tasks"], "nope", [])
    assert "summary, tasks" in (info.value.hint or "")
    with pytest.raises(ResultsNotFound, match="no model output"):
        choose_output(["tasks"], None, [])


def test_column_groups() -> None:
    assert column_groups(timeseries().schema) == (["beta", "I0"], ["day", "I"])
    with pytest.raises(ResultsNotFound):
        column_groups(timeseries().drop(["seed"]).schema)


async def _store_with_tables(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = open_blob_store((tmp_path / "blobs").as_uri())
    for name, table in (("timeseries", timeseries()), ("summary", summary())):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        await store.put_bytes(blob_keys.results_table(JOB, name), buf.getvalue())
    return store


async def test_locate_and_save_parquet_and_csv(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    async with await _store_with_tables(tmp_path) as store:
        found = await locate_results(cfg, store, record(), None)
        assert (found.output, found.others) == ("summary", ("timeseries",))  # no bundle: by name
        found = await locate_results(cfg, store, record(), "timeseries")
        rows, cols = await save_table(store, found, tmp_path / "out" / "ts.parquet")
        assert (rows, cols) == (120, 8)
        assert pq.read_table(tmp_path / "out" / "ts.parquet").equals(timeseries())
        rows, cols = await save_table(store, found, tmp_path / "out" / "ts.csv")
        csv = pacsv.read_csv(tmp_path / "out" / "ts.csv")
        assert (rows, cols, csv.num_rows) == (120, 8, 120)
        assert csv.column_names == timeseries().column_names
        assert (await read_table(store, found)).num_rows == 120
        with pytest.raises(ConfigError, match=r"\*.parquet or \*.csv"):
            await save_table(store, found, tmp_path / "out" / "ts.xlsx")


async def test_unfinished_cancelled_and_empty_jobs(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    async with open_blob_store((tmp_path / "blobs").as_uri()) as store:
        with pytest.raises(JobNotFinished, match="still running") as running:
            await locate_results(cfg, store, record("running"), None)
        assert "modelops watch" in (running.value.hint or "")
        with pytest.raises(ResultsNotFound, match="cancelled"):
            await locate_results(cfg, store, record("cancelled"), None)
        with pytest.raises(ResultsNotFound, match="no results table"):
            await locate_results(cfg, store, record("completed"), None)
