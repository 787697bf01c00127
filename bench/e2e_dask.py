"""The baseline: the same model functions on Dask's `LocalCluster`, the engine the original
ModelOps tooling used, with the same worker processes (2 processes x 1 thread here).

Each task is `client.map` over the same (params, seed) list, calling the model class's
`simulate` in a worker that imports the model once (as our workers do); each worker turns the
outputs into pyarrow tables (our workers write Parquet), and the client gathers them and
concatenates one results table per output with `seed` and the parameters as columns (our
submitter's results table). The cluster is started once and kept warm between repetitions:
the baseline's best case, while every ModelOps job launches its runner process afresh.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import structlog

__all__ = ["DaskRun", "dask_cluster", "run_dask"]

log = structlog.get_logger(__name__)

_MODELS: dict[tuple[str, str], Any] = {}  # per worker process: one model instance per class


def _model(src: str, entrypoint: str) -> Any:
    key = (src, entrypoint)
    if key not in _MODELS:
        if src not in sys.path:
            sys.path.insert(0, src)
        module, _, cls = entrypoint.partition(":")
        _MODELS[key] = getattr(__import__(module), cls)()
    return _MODELS[key]


def run_task(src: str, entrypoint: str, config: dict, params: dict, seed: int) -> dict:
    """One task in a Dask worker: simulate, then each output as a pyarrow table."""
    model = _model(src, entrypoint)
    model.config = {**getattr(type(model), "config", {}), **config}
    outputs = model.simulate(params, seed)
    return {name: _table(value) for name, value in outputs.items()}


def _table(value: Any) -> pa.Table:
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, dict):
        return pa.table({k: v if hasattr(v, "__len__") else [v] for k, v in value.items()})
    return pa.Table.from_pandas(value)  # pandas; polars has to_arrow (not used by our models)


def results_tables(
    params: list[dict], seeds: list[int], outputs: list[dict]
) -> dict[str, pa.Table]:
    """One table per output: each task's rows with its seed and parameters as columns."""
    pieces: dict[str, list[pa.Table]] = {}
    for p, seed, out in zip(params, seeds, outputs, strict=True):
        for name, table in out.items():
            extra = {
                "seed": [seed] * table.num_rows,
                **{k: [v] * table.num_rows for k, v in p.items()},
            }
            for col, values in extra.items():
                table = table.append_column(col, pa.array(values))
            pieces.setdefault(name, []).append(table)
    return {name: pa.concat_tables(tables) for name, tables in pieces.items()}


@dataclass(frozen=True)
class DaskRun:
    """Seconds from the first `client.map` to the results tables, and to the first result."""

    n_tasks: int
    first_task_s: float
    total_s: float
    rows: int


@contextlib.contextmanager
def dask_cluster(workers: int) -> Iterator[Any]:
    """A LocalCluster of `workers` processes x 1 thread and its client; both closed on exit."""
    from dask.distributed import Client, LocalCluster

    # Workers unpickle `run_task` by reference: they need the repository on their path.
    repo = str(Path(__file__).resolve().parent.parent)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, saved]))
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=logging.WARNING,  # the harness prints a table, not Dask's INFO lines
        )
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def run_dask(
    client: Any, src: Path, entrypoint: str, config: dict, params: dict, seeds: list[int]
) -> DaskRun:
    """Map the tasks over the cluster, gather, build the tables; time it all."""
    from dask.distributed import as_completed

    n = len(seeds)
    plist = [params] * n
    t0 = time.perf_counter()
    futures = client.map(
        run_task, [str(src)] * n, [entrypoint] * n, [config] * n, plist, seeds, pure=False
    )
    first = None
    for _ in as_completed(futures[:1]):
        first = time.perf_counter() - t0
    outputs = client.gather(futures)
    tables = results_tables(plist, seeds, outputs)
    total = time.perf_counter() - t0
    rows = sum(t.num_rows for t in tables.values())
    del futures
    return DaskRun(n_tasks=n, first_task_s=first or total, total_s=total, rows=rows)
