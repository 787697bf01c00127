"""The task index: one row per task of a job, as Arrow record batches. Pure (no I/O).

Columns: `task_id`, `param_id`, one column per parameter, `seed`, `replicate`, and
`cached_outputs` (the outputs a task had already stored at submit, comma-joined; null for a
task that was enqueued, "" for a cached task that stores no outputs). The submitter stores it
next to job.json, so that tracking after a restart and writing the results table stream it
instead of holding every SimTask in memory.
The results tables start with the same key columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa

from modelops_contracts import SimJob, SimTask

__all__ = [
    "CACHED_COLUMN",
    "KEY_COLUMNS",
    "TASK_STATUS_COLUMNS",
    "index_batches",
    "index_schema",
    "key_schema",
    "param_columns",
    "status_schema",
]

KEY_COLUMNS = ("task_id", "param_id", "seed", "replicate")
CACHED_COLUMN = "cached_outputs"
TASK_STATUS_COLUMNS = ("status", "failure", "message", "wall_s", "note")
_RESERVED = frozenset({*KEY_COLUMNS, CACHED_COLUMN, *TASK_STATUS_COLUMNS})


def _arrow_type(values: set[type]) -> pa.DataType:
    """One column type for a parameter whose values across sets have these Python types."""
    if values <= {bool}:
        return pa.bool_()
    if values <= {int}:
        return pa.int64()
    if values <= {int, float}:
        return pa.float64()
    return pa.string()  # mixed kinds (e.g. str and int): kept readable, never dropped


def param_columns(tasks: Iterable[SimTask]) -> dict[str, tuple[str, pa.DataType]]:
    """Parameter name -> (column name, Arrow type), over every distinct parameter set.

    A parameter whose name clashes with a fixed column is written as `param_<name>`.
    """
    kinds: dict[str, set[type]] = {}
    seen: set[int] = set()
    for task in tasks:
        ps = task.params
        if id(ps) in seen:  # replicates share their ParameterSet object
            continue
        seen.add(id(ps))
        for name, value in ps.params.items():
            kinds.setdefault(name, set()).add(type(value))
    columns: dict[str, tuple[str, pa.DataType]] = {}
    for name in sorted(kinds):
        column = name
        while column in _RESERVED:
            column = f"param_{column}"
        columns[name] = (column, _arrow_type(kinds[name]))
    return columns


def key_schema(params: Mapping[str, tuple[str, pa.DataType]]) -> pa.Schema:
    """task_id, param_id, the parameters, seed, replicate."""
    fields = [pa.field("task_id", pa.string()), pa.field("param_id", pa.string())]
    fields += [pa.field(column, type_) for column, type_ in params.values()]
    fields += [pa.field("seed", pa.int64()), pa.field("replicate", pa.int64())]
    return pa.schema(fields)


def index_schema(params: Mapping[str, tuple[str, pa.DataType]]) -> pa.Schema:
    return key_schema(params).append(pa.field(CACHED_COLUMN, pa.string()))


def status_schema() -> pa.Schema:
    """The columns tasks.parquet adds to the key columns."""
    return pa.schema(
        [
            pa.field("status", pa.string()),
            pa.field("failure", pa.string()),
            pa.field("message", pa.string()),
            pa.field("wall_s", pa.float64()),
            pa.field("note", pa.string()),
        ]
    )


def _cell(value: object, type_: pa.DataType) -> object:
    if value is None:
        return None
    if pa.types.is_string(type_) and not isinstance(value, str):
        return repr(value) if isinstance(value, float) else str(value)
    if pa.types.is_floating(type_) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def index_batches(
    job: SimJob,
    *,
    cached: Mapping[str, Iterable[str]],
    params: Mapping[str, tuple[str, pa.DataType]] | None = None,
    batch_size: int = 8192,
) -> Iterator[pa.RecordBatch]:
    """The task index of `job` in batches, tasks in job order."""
    params = param_columns(job.tasks()) if params is None else params
    schema = index_schema(params)
    names = list(params)
    rows: list[SimTask] = []

    def flush() -> pa.RecordBatch:
        columns: list[pa.Array] = [
            pa.array([t.task_id for t in rows], pa.string()),
            pa.array([t.params.param_id for t in rows], pa.string()),
        ]
        for name in names:
            type_ = params[name][1]
            columns.append(pa.array([_cell(t.params.params.get(name), type_) for t in rows], type_))
        columns.append(pa.array([t.seed for t in rows], pa.int64()))
        columns.append(pa.array([t.replicate for t in rows], pa.int64()))
        columns.append(
            pa.array(
                [
                    ",".join(sorted(cached[t.task_id])) if t.task_id in cached else None
                    for t in rows
                ],
                pa.string(),
            )
        )
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    for task in job.tasks():
        rows.append(task)
        if len(rows) >= batch_size:
            yield flush()
            rows = []
    if rows:
        yield flush()
