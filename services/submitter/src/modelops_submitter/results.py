"""The results tables of a finished job, streamed from the tasks' stored outputs.

For each output name, `jobs/<job_id>/results/<output>.parquet`: the key columns of the task
(task_id, param_id, parameters, seed, replicate) repeated on each of the output's rows, then
the output's own columns. Plus `jobs/<job_id>/results/tasks.parquet`: one row per task with
its status (completed, failed or cached), failure kind and message, and wall time.

Where a task's outputs are is in its record (`blob_keys.result_done`; on file:// a record set
holding it): per output a reference
(`modelops_contracts.parse_output_ref`), either rows of a *pack* (one Parquet file holding
the output of several tasks a runner stored together) or a whole Parquet file of its own.
A task whose record is missing or unreadable is read the old way, at
`blob_keys.result_output(task_id, name)`; a task without outputs costs no read at all.

Memory stays bounded: the task index is read in batches; a batch's records are fetched in
one `get_batch` and the files they name in another (each file once, however many tasks it
holds; the packs of the previous batch are kept, since a pack often straddles two batches);
the batch's tables are appended as one row group to one Parquet writer per output (local
temporary files) and dropped, and the finished files are uploaded at the end. Every output
of a task must have the columns of the first one written; a table that cannot be cast to
them is left out of that output's table and named in the task's `note` (its Parquet file
stays in the store), as is an output whose file is missing or unreadable or whose reference
is bad.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from modelops_contracts import OutputRef, blob_keys, parse_output_ref
from modelops_runtime.blobstore import BlobNotFound, BlobStore, key_of
from modelops_runtime.outputs import slice_rows

from .cache import RecordReader
from .errors import ResultsError
from .job_files import task_index_key
from .task_table import CACHED_COLUMN, status_schema
from .tracker import JobTracker, Outcome

__all__ = [
    "BATCH_TASKS",
    "TASKS_TABLE",
    "ResultsBuilder",
    "results_folder",
    "table_name",
    "write_results",
]

log = structlog.get_logger(__name__)

TASKS_TABLE = "tasks"
BATCH_TASKS = 512  # tasks per read-back and per row group of the results tables


def table_name(output: str) -> str:
    """The results file name of an output; an output called `tasks` must not hide tasks.parquet."""
    return f"output_{output}" if output == TASKS_TABLE else output


def results_folder(job_id: str) -> str:
    return blob_keys.results_table(job_id, TASKS_TABLE).rsplit("/", 1)[0]


@dataclass
class _OutputWriter:
    """One output's Parquet file: its schema is fixed by the first table written."""

    path: Path
    key_schema: pa.Schema
    writer: pq.ParquetWriter | None = None
    value_schema: pa.Schema | None = None
    renames: dict[str, str] = field(default_factory=dict)
    rows: int = 0

    def _prepare(self, table: pa.Table) -> pa.Table:
        if self.value_schema is None:
            taken = set(self.key_schema.names)
            for name in table.column_names:
                column = name
                while column in taken:
                    column = f"out_{column}"
                taken.add(column)
                self.renames[name] = column
            self.value_schema = table.schema
        if table.column_names != self.value_schema.names:
            if set(table.column_names) != set(self.value_schema.names):
                raise ValueError(
                    f"columns {table.column_names} differ from {self.value_schema.names}"
                )
            table = table.select(self.value_schema.names)
        if table.schema != self.value_schema:
            table = table.cast(self.value_schema)
        return table

    def write_batch(
        self, keys: pa.RecordBatch, parts: list[tuple[int, pa.Table]]
    ) -> dict[int, str]:
        """Append a batch's tables (row in `keys`, table) as one row group; the reason each
        table that cannot join its output's columns was left out, by row.

        One write per batch, not per task: a row group per ~250-row task made writing the
        table the slowest step of a finished job (4.4 ms per task for the SIR example).
        """
        left_out: dict[int, str] = {}
        rows: list[int] = []
        tables: list[pa.Table] = []
        for row, table in parts:
            try:
                tables.append(self._prepare(table))
                rows.append(row)
            except (pa.ArrowException, ValueError) as exc:
                left_out[row] = str(exc)
        if not tables:
            return left_out
        values = pa.concat_tables(tables)
        owners = pa.array(
            [row for row, table in zip(rows, tables, strict=True) for _ in range(table.num_rows)],
            pa.int64(),
        )
        repeated = pa.Table.from_batches([keys]).take(owners)
        names = [*self.key_schema.names, *(self.renames[c] for c in values.column_names)]
        combined = pa.Table.from_arrays([*repeated.columns, *values.columns], names=names)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, combined.schema, compression="zstd")
        self.writer.write_table(combined)
        self.rows += combined.num_rows
        return left_out

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _Assembler:
    """The CPU half (Arrow/Parquet work), run in a thread one batch at a time."""

    def __init__(self, folder: Path, key_schema: pa.Schema) -> None:
        self.folder = folder
        self.key_schema = key_schema
        self.outputs: dict[str, _OutputWriter] = {}
        self.tasks_path = folder / f"{TASKS_TABLE}.parquet"
        self.tasks = pq.ParquetWriter(
            self.tasks_path,
            pa.schema([*key_schema, *status_schema()]),
            compression="zstd",
        )
        self.counts = {"completed": 0, "failed": 0, "cached": 0, "pending": 0}
        self.packs: dict[str, pa.Table] = {}  # the previous batch's packs, by URI

    def add(self, keys: pa.RecordBatch, outcomes: list[Outcome | None], fetched: _Fetched) -> None:
        notes: dict[int, list[str]] = {}
        by_output: dict[str, list[tuple[int, pa.Table]]] = {}
        tables: dict[str, pa.Table | str] = dict(fetched.kept)
        for where, data in fetched.blobs.items():
            if data is None:
                tables[where] = f"is missing from the store ({where})"
                continue
            try:
                # ParquetFile.read, not pq.read_table: the dataset layer behind read_table
                # costs ~0.4 ms more per file, which is most of it for a task's small output
                tables[where] = pq.ParquetFile(pa.BufferReader(data)).read()
            except (pa.ArrowException, ValueError) as exc:
                tables[where] = f"left out of its table: {exc}"
        for (row, output), ref in fetched.refs.items():  # in row order, as the tables are
            table = tables[ref.uri] if isinstance(ref, OutputRef) else ref
            if isinstance(table, str):
                notes.setdefault(row, []).append(f"output {output!r} {table}")
                continue
            assert isinstance(ref, OutputRef)
            try:
                table = slice_rows(table, ref)
            except ValueError as exc:
                notes.setdefault(row, []).append(f"output {output!r} left out of its table: {exc}")
                continue
            by_output.setdefault(output, []).append((row, table))
        self.packs = {
            ref.uri: table
            for ref in fetched.refs.values()
            if isinstance(ref, OutputRef)
            and ref.rows is not None
            and isinstance(table := tables[ref.uri], pa.Table)
        }
        for output, parts in by_output.items():
            writer = self.outputs.get(output)
            if writer is None:
                path = self.folder / f"{table_name(output)}.parquet"
                writer = self.outputs[output] = _OutputWriter(path, self.key_schema)
            for row, reason in writer.write_batch(keys, parts).items():
                note = f"output {output!r} left out of its table: {reason}"
                notes.setdefault(row, []).append(note)
        status, failure, message, wall, note = [], [], [], [], []
        for row, outcome in enumerate(outcomes):
            key = outcome.status if outcome is not None else "pending"
            self.counts[key] += 1
            status.append(key)
            failure.append(outcome.failure if outcome is not None and outcome.failure else None)
            message.append(outcome.message if outcome is not None and outcome.message else None)
            wall.append(
                outcome.wall_s if outcome is not None and outcome.status == "completed" else None
            )
            note.append("; ".join(notes[row]) if row in notes else None)
        extra = [
            pa.array(col, f.type)
            for col, f in zip((status, failure, message, wall, note), status_schema(), strict=True)
        ]
        self.tasks.write_table(
            pa.Table.from_arrays([*keys.columns, *extra], schema=self.tasks.schema)
        )

    def close(self) -> None:
        self.tasks.close()
        for writer in self.outputs.values():
            writer.close()


@dataclass
class _Fetched:
    """A batch's outputs as read from the store, before any Parquet is parsed."""

    # (row, output) -> the file and rows to take, or the note saying why there are none;
    # in row order
    refs: dict[tuple[int, str], OutputRef | str]
    blobs: dict[str, bytes | None]  # key or URI -> its bytes (None: missing), each read once
    kept: dict[str, pa.Table]  # URI -> table of a pack the previous batch read


_PACK_KEY_RE = re.compile(r"packs/[0-9a-f]{2}/[0-9a-f]{64}\.parquet\Z")


def _locate(store: BlobStore, task_id: str, output: str, ref: str | None) -> OutputRef | str:
    """Where one output is, from its reference in the task's record (None: the record does
    not name it, or could not be read); a str is the note saying why it cannot be read."""
    own_file = OutputRef(blob_keys.result_output(task_id, output))
    if ref is None:
        return own_file  # results stored before records named their outputs
    try:
        parsed = parse_output_ref(ref)
    except ValueError as exc:
        return f"left out of its table: {exc}"
    try:
        key_of(store.uri, parsed.uri)  # get_batch raises for a URI outside this store
    except ValueError as exc:  # InvalidBlobUri, UnsafeKey
        if parsed.rows is None:
            return own_file  # a task's own file is at its key, whatever the store's URI was
        pack = _PACK_KEY_RE.search(parsed.uri)
        if pack is not None:  # a pack is named by its bytes: the same key here is the same file
            return OutputRef(pack[0], parsed.rows)
        return f"left out of its table: {exc}"
    return parsed


async def _read_records(store: BlobStore, task_ids: list[str]) -> list[bytes | None]:
    """Each task's record bytes; where there is none, the record stored before records left
    the task's folder (`blob_keys.result_done_legacy`), if any."""
    found = await store.get_batch([blob_keys.result_done(t) for t in task_ids])
    missing = [i for i, data in enumerate(found) if data is None]
    if missing:
        legacy = await store.get_batch([blob_keys.result_done_legacy(task_ids[i]) for i in missing])
        for i, data in zip(missing, legacy, strict=True):
            found[i] = data
    return found


async def _fetch(
    store: BlobStore,
    task_ids: list[str],
    outcomes: list[Outcome | None],
    packs: Mapping[str, pa.Table],
) -> _Fetched:
    """Where every output of the batch's finished tasks is, and the bytes of those files.

    Two `get_batch` calls (one thread hop each on file://, pooled concurrent GETs on S3):
    the record of each task that has outputs, then each file they name, once (a pack
    in `packs`, read by the previous batch, is not read again). A task without outputs
    costs nothing. A task whose record is missing or unreadable is looked for at its
    per-task keys, where results were stored before packs.
    """
    rows = [
        row
        for row, outcome in enumerate(outcomes)
        if outcome is not None and outcome.status != "failed" and outcome.outputs
    ]
    if not rows:
        return _Fetched({}, {}, {})
    records = await _read_records(store, [task_ids[row] for row in rows])
    refs: dict[tuple[int, str], OutputRef | str] = {}
    reader = RecordReader()
    for row, data in zip(rows, records, strict=True):
        outcome = outcomes[row]
        assert outcome is not None
        stored: dict[str, str] = {}
        if data is not None:
            try:
                stored = reader.read(data, task_ids[row]).outputs
            except ValueError as exc:  # msgspec.DecodeError, or not in its record set
                log.warning("results.record_unreadable", task_id=task_ids[row], reason=str(exc))
        for output in outcome.outputs:
            refs[row, output] = _locate(store, task_ids[row], output, stored.get(output))
    wanted = list(dict.fromkeys(r.uri for r in refs.values() if isinstance(r, OutputRef)))
    kept = {uri: packs[uri] for uri in wanted if uri in packs}
    to_read = [uri for uri in wanted if uri not in kept]
    found = await store.get_batch(to_read) if to_read else []
    return _Fetched(refs, dict(zip(to_read, found, strict=True)), kept)


class ResultsBuilder:
    """Builds a job's results tables while it runs, batch by batch in task-index order.

    `advance` writes every leading batch whose tasks are all terminal (runners take tasks in
    roughly index order, so the cursor follows the run); `finish` writes the rest and uploads
    the files. The output is the same as writing everything at the end (same order, same row
    groups), but a finished job only waits for its last batches: for 2,000 SIR tasks that was
    1.6 s of reading outputs back, and it grows with the study. Not thread-safe; one
    coroutine at a time (Tracking serialises the calls). Nothing survives a restart: the
    next process starts a new builder.
    """

    def __init__(self, store: BlobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.batches_written = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._assembler: _Assembler | None = None
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._next: pa.RecordBatch | None = None
        self._exhausted = False

    async def _open(self) -> None:
        try:
            data = await self.store.get_bytes(task_index_key(self.job_id))
        except BlobNotFound as exc:
            raise ResultsError(
                f"job {self.job_id} has no task index in {self.store.uri}",
                hint="was the job submitted by this version of the submitter?",
            ) from exc
        index = pq.ParquetFile(pa.BufferReader(data))
        key_names = [n for n in index.schema_arrow.names if n != CACHED_COLUMN]
        key_schema = pa.schema([index.schema_arrow.field(n) for n in key_names])
        self._tmp = tempfile.TemporaryDirectory(prefix=f"mops-results-{self.job_id}-")
        self._assembler = _Assembler(Path(self._tmp.name), key_schema)
        self._batches = index.iter_batches(batch_size=BATCH_TASKS, columns=key_names)

    async def advance(self, tracker: JobTracker, *, final: bool = False) -> int:
        """Write the leading batches whose tasks are all terminal (all of them if `final`);
        returns how many were written."""
        if self._assembler is None:
            await self._open()
        assert self._assembler is not None and self._batches is not None
        written = 0
        while not self._exhausted:
            if self._next is None:
                self._next = next(self._batches, None)
                if self._next is None:
                    self._exhausted = True
                    break
            task_ids = self._next.column(0).to_pylist()
            outcomes = [tracker.outcome(t) for t in task_ids]
            if not final and any(o is None for o in outcomes):
                break
            fetched = await _fetch(self.store, task_ids, outcomes, self._assembler.packs)
            await asyncio.to_thread(self._assembler.add, self._next, outcomes, fetched)
            self._next = None
            written += 1
        self.batches_written += written
        return written

    async def finish(self, tracker: JobTracker) -> str:
        """Write what is left, upload every table; the results folder's URI."""
        await self.advance(tracker, final=True)
        assembler = self._assembler
        assert assembler is not None
        folder = results_folder(self.job_id)
        try:
            await asyncio.to_thread(assembler.close)
            await self.store.put_file(f"{folder}/{TASKS_TABLE}.parquet", assembler.tasks_path)
            for output, writer in sorted(assembler.outputs.items()):
                await self.store.put_file(f"{folder}/{table_name(output)}.parquet", writer.path)
        finally:
            self.discard()
        log.info(
            "results.written",
            job_id=self.job_id,
            outputs={o: w.rows for o, w in sorted(assembler.outputs.items())},
            **assembler.counts,
        )
        return self.store.uri_for(folder)

    def discard(self) -> None:
        """Drop the partial files (a cancelled job, a failed attempt, a finished upload)."""
        if self._assembler is not None:
            with contextlib.suppress(OSError, pa.ArrowException):  # a full or vanished disk
                self._assembler.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        self._tmp = None


async def write_results(store: BlobStore, job_id: str, tracker: JobTracker) -> str:
    """Write every results table of a finished job at once; returns the results folder's URI."""
    builder = ResultsBuilder(store, job_id)
    try:
        return await builder.finish(tracker)
    finally:
        builder.discard()
