"""Packs: the raw outputs of tasks stored together become one Parquet file per output, each
task keeping its rows; whatever cannot join a pack fails its own task or stays its own file."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelops_contracts import parse_output_ref
from modelops_contracts.jobs import blob_keys
from modelops_runner import tables
from modelops_runner.packing import Placed, pack_outputs
from modelops_runner.results import BadOutputTable, ResultRecord, Saved, save_results
from modelops_runner.tables import OutputTableError, raw_to_arrow
from modelops_runner.wire import to_raw
from modelops_runtime.blobstore import open_blob_store
from modelops_runtime.outputs import read_output


def _series(seed: int, days: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"day": np.arange(days), "incidence": rng.poisson(5.0, days), "tag": [f"s{seed}"] * days}


def _raw(name: str, table: dict[str, Any]) -> dict[str, Any]:
    raw = to_raw(name, table)
    assert raw is not None
    return raw


def _read(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def _rows(place: Placed | OutputTableError, name: str) -> tuple[str, int, int]:
    assert isinstance(place, Placed), place
    return place.rows[name]


def test_tasks_share_one_pack_per_output_and_keep_their_own_rows() -> None:
    tasks = [
        {"series": _raw("series", _series(s, 5 + s)), "summary": _raw("summary", {"n": s})}
        for s in range(4)
    ]
    placed, packs = pack_outputs(tasks, compression="snappy")
    assert len(packs) == 2
    by_digest = {p.digest: _read(p.data) for p in packs}
    for pack in packs:
        assert hashlib.sha256(pack.data).hexdigest() == pack.digest
    start = 0
    for seed, (task, place) in enumerate(zip(tasks, placed, strict=True)):
        digest, a, b = _rows(place, "series")
        assert (a, b) == (start, start + 5 + seed)  # in task order, back to back
        start = b
        assert by_digest[digest].slice(a, b - a).equals(raw_to_arrow("series", task["series"]))
        digest, a, b = _rows(place, "summary")
        assert by_digest[digest].slice(a, b - a).to_pylist() == [{"n": seed}]


@pytest.mark.parametrize(
    ("first", "second"),
    [([1, 2], [0.5]), ([None, None], [3]), (np.array([1, 2]), np.array([0.5]))],
    ids=["ints_and_floats", "nones_and_ints", "numpy_dtypes"],
)
def test_columns_typed_differently_alone_go_to_different_packs(first: Any, second: Any) -> None:
    tasks = [{"t": _raw("t", {"x": first})}, {"t": _raw("t", {"x": second})}]
    placed, packs = pack_outputs(tasks, compression="snappy")
    assert len(packs) == 2
    (d0, a0, b0), (d1, a1, b1) = _rows(placed[0], "t"), _rows(placed[1], "t")
    assert d0 != d1 and (a0, b0, a1, b1) == (0, len(first), 0, 1)
    tables = {p.digest: _read(p.data) for p in packs}
    for task, digest in zip(tasks, (d0, d1), strict=True):  # each as it would be alone
        assert tables[digest].equals(raw_to_arrow("t", task["t"]))


def test_a_bad_output_fails_its_task_and_parquet_bytes_stay_whole_files() -> None:
    good = {"t": _raw("t", {"x": [1]}), "big": b"PAR1...PAR1"}
    broken = {"t": {"rows": 3, "columns": [["x", "<i8", bytes(8)]]}}  # says 3 rows, has 1
    placed, packs = pack_outputs([good, broken, good], compression="snappy")
    assert isinstance(placed[1], OutputTableError) and "not 3" in str(placed[1])
    assert isinstance(placed[0], Placed) and placed[0].files == {"big": b"PAR1...PAR1"}
    assert _rows(placed[0], "t")[1:] == (0, 1) and _rows(placed[2], "t")[1:] == (1, 2)
    assert len(packs) == 1


def test_a_table_parquet_refuses_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    write = tables.table_to_parquet  # packing imports it on use: patch it where it lives

    def refusing(name: str, table: pa.Table, **kw: Any) -> bytes:
        if -1 in table.column("x").to_pylist():
            raise OutputTableError(name, "cannot be written as Parquet: refused")
        return write(name, table, **kw)

    monkeypatch.setattr(tables, "table_to_parquet", refusing)
    tasks = [{"t": _raw("t", {"x": [v]})} for v in (1, -1, 2)]
    placed, packs = pack_outputs(tasks, compression="snappy")
    assert isinstance(placed[1], OutputTableError) and "refused" in str(placed[1])
    assert [isinstance(p, Placed) for p in placed] == [True, False, True]
    assert len(packs) == 2  # the two good ones, each written alone once the group failed


def test_a_pack_full_past_its_limit_starts_the_next() -> None:
    tasks = [{"t": _raw("t", {"x": np.arange(1000)})} for _ in range(5)]  # 8 KB each
    placed, packs = pack_outputs(tasks, compression="snappy", limit_bytes=16_000)
    assert len(packs) == 3  # 2 + 2 + 1
    assert [_rows(p, "t")[1:] for p in placed] == [(0, 1000), (1000, 2000)] * 2 + [(0, 1000)]


async def test_save_results_stores_packs_and_records_naming_rows(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    ids = [f"{i:02d}" + "c" * 62 for i in range(3)]
    tables = [_series(i, 3 + i) for i in range(3)]
    answers = await save_results(
        store,
        [
            (ResultRecord(task_id=t, job_id="j", attempt=1, outputs={}), {"s": _raw("s", tbl)})
            for t, tbl in zip(ids, tables, strict=True)
        ]
        + [(ResultRecord(task_id="ff" * 32, job_id="j", attempt=1, outputs={}), {"s": {}})],
    )
    *saved, bad = answers
    assert isinstance(bad, BadOutputTable)
    refs = []
    for answer, table in zip(saved, tables, strict=True):
        assert isinstance(answer, Saved) and answer.wrote and answer.record.version == 2
        ref = answer.record.outputs["s"]
        where = parse_output_ref(ref)
        assert where.rows is not None
        assert await read_output(store, ref) == raw_to_arrow("s", _raw("s", table))
        refs.append(where.uri)
    (uri,) = set(refs)  # one pack for the three tasks, under its digest
    digest = uri.rsplit("/", 1)[1].removesuffix(".parquet")
    assert uri == store.uri_for(blob_keys.result_pack(digest))
    assert hashlib.sha256(await store.get_bytes(uri)).hexdigest() == digest
