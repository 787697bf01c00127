"""A finished job's results tables: which outputs exist, picking one, saving it as Parquet or CSV.

The submitter writes one table per model output at `jobs/<job_id>/results/<output>.parquet`
(task_id, param_id, one column per parameter, seed, replicate, then the output's columns) and
`tasks.parquet` (one row per task with its status). Parquet is copied byte for byte, so the
saved file is the stored one; CSV is converted in record batches, so a large table never sits
in memory whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import structlog

from modelops_bundle.errors import BundleError
from modelops_bundle.oci import BundleIndex
from modelops_bundle.pull import read_bundle_index
from modelops_bundle.registry_file import parse_registry
from modelops_bundle.stores import open_store
from modelops_contracts import JobRecord, JobSpec, blob_keys, decode
from modelops_runtime.blobstore import BlobStore, BlobStoreError, open_blob_store

from .config import CliConfig
from .errors import ConfigError, JobNotFinished, ResultsNotFound

__all__ = [
    "FIXED_COLUMNS",
    "TASKS_TABLE",
    "ResultsFile",
    "choose_output",
    "column_groups",
    "locate_results",
    "open_results_store",
    "read_table",
    "save_table",
]

log = structlog.get_logger(__name__)

TASKS_TABLE = "tasks"
FIXED_COLUMNS = ("task_id", "param_id", "seed", "replicate")
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class ResultsFile:
    """One stored results table of a job."""

    job_id: str
    output: str
    key: str
    others: tuple[str, ...]  # the job's other tables, for a hint


def open_results_store(cfg: CliConfig) -> BlobStore:
    """The blob store the services write results to (the embedded stack's folder by default)."""
    return open_blob_store(cfg.blob_store, endpoint_url=cfg.s3_endpoint)


def choose_output(available: list[str], requested: str | None, declared: list[str]) -> str:
    """The output table to use: the one asked for, else the model's first declared output that
    exists, else the first by name. `tasks` (the per-task table) is never the default."""
    if requested:
        if requested in available:
            return requested
        raise ResultsNotFound(
            f"the job has no output table {requested!r}",
            hint="its tables are: " + ", ".join(available) if available else None,
        )
    outputs = [name for name in available if name != TASKS_TABLE]
    if not outputs:
        raise ResultsNotFound(
            "the job stored no model output table",
            hint="every task may have failed: see 'modelops logs JOB'; "
            f"'--output {TASKS_TABLE}' gives the per-task table",
        )
    for name in declared:
        if name in outputs:
            return name
    return sorted(outputs)[0]


def column_groups(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(parameter columns, output columns) of a results table.

    The layout is fixed by the submitter: task_id, param_id, parameters..., seed, replicate,
    then the output's own columns.
    """
    names = schema.names
    try:
        start, seed_at, rep_at = (
            names.index("param_id") + 1,
            names.index("seed"),
            names.index("replicate"),
        )
    except ValueError as exc:
        raise ResultsNotFound(
            f"table does not look like a ModelOps results table (columns: {', '.join(names[:8])})"
        ) from exc
    return names[start:seed_at], names[rep_at + 1 :]


def _outputs_in_order(index: BundleIndex, entrypoint: str) -> list[str]:
    """The model's outputs as it declares them: registry.yaml (in the bundle) keeps the
    model's order, the index's own list is sorted."""
    model = index.model_for(entrypoint)
    if index.registry_yaml:
        entry = parse_registry(index.registry_yaml.encode()).models.get(model.id)
        if entry is not None:
            return list(entry.outputs)
    return list(model.outputs)


async def _declared_outputs(cfg: CliConfig, store: BlobStore, record: JobRecord) -> list[str]:
    """The model's outputs in declaration order (best effort: [] if the bundle is out of reach)."""
    try:
        spec = decode(await store.get_bytes(blob_keys.job_spec(record.job_id)), JobSpec)
        bundles = open_store(cfg.registry)
        try:
            index = await asyncio.to_thread(read_bundle_index, bundles, record.bundle_ref)
        finally:
            bundles.close()
        return [o for ep in spec.entrypoints for o in _outputs_in_order(index, ep)]
    except (BlobStoreError, BundleError, msgspec.ValidationError, ValueError) as exc:
        log.debug("results.declared_outputs_unknown", job_id=record.job_id, error=str(exc))
        return []


async def locate_results(
    cfg: CliConfig, store: BlobStore, record: JobRecord, output: str | None
) -> ResultsFile:
    """Find the results table to read for a finished job (JobNotFinished / ResultsNotFound)."""
    job_id = record.job_id
    if not record.terminal:
        done = record.completed + record.failed + record.n_cached
        raise JobNotFinished(
            f"job {job_id} is still {record.state} ({done}/{record.n_tasks} tasks done)",
            hint=f"wait for it with 'modelops watch {job_id}'",
        )
    prefix = blob_keys.results_table(job_id, "x")[: -len("x.parquet")]
    available = sorted(
        [
            key[len(prefix) : -len(".parquet")]
            async for key in store.list(prefix)
            if key.endswith(".parquet") and "/" not in key[len(prefix) :]
        ]
    )
    if not available:
        if record.state == "cancelled":
            raise ResultsNotFound(
                f"job {job_id} was cancelled, so it has no results table",
                hint="resubmit the study: finished tasks are reused and only the rest run",
            )
        raise ResultsNotFound(
            f"job {job_id} is {record.state} but has no results table in {cfg.blob_store}",
            hint="results live where the services write them: check MODELOPS_BLOB_STORE",
        )
    declared = [] if output else await _declared_outputs(cfg, store, record)
    name = choose_output(available, output, declared)
    return ResultsFile(
        job_id=job_id,
        output=name,
        key=blob_keys.results_table(job_id, name),
        others=tuple(n for n in available if n != name),
    )


@contextlib.contextmanager
def _scratch_file(suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="modelops-results-") as tmp:
        yield Path(tmp) / f"table{suffix}"


def _format_of(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot tell which format to write {path} in",
            hint="name the file *.parquet or *.csv",
        )
    return fmt


def _parquet_to_csv(src: Path, dest: Path) -> int:
    """Convert batch by batch; returns the number of rows."""
    reader = pq.ParquetFile(src)
    rows = 0
    with pacsv.CSVWriter(dest, reader.schema_arrow) as writer:
        for batch in reader.iter_batches(batch_size=64_000):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


async def save_table(store: BlobStore, results: ResultsFile, dest: Path) -> tuple[int, int]:
    """Save the table at `dest` (format by extension); returns (rows, columns)."""
    fmt = _format_of(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        await store.get_file(results.key, dest)
        meta = pq.read_metadata(dest)
        return meta.num_rows, meta.num_columns
    with _scratch_file(".parquet") as tmp:
        await store.get_file(results.key, tmp)
        columns = len(pq.read_schema(tmp).names)
        partial = dest.with_name(f".{dest.name}.partial")
        rows = await asyncio.to_thread(_parquet_to_csv, tmp, partial)
        partial.replace(dest)  # a reader never sees half a CSV
    return rows, columns


async def read_table(store: BlobStore, results: ResultsFile) -> pa.Table:
    """The whole table in memory (for plotting and the Python API)."""
    with _scratch_file(".parquet") as tmp:
        await store.get_file(results.key, tmp)
        return pq.read_table(tmp)
