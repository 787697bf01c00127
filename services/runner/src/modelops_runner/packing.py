"""The outputs of the tasks stored together, as one Parquet file per output: packs.

A ~20 ms task paid ~0.3 ms of the runner's CPU to write each output as its own Parquet file
(a writer, its footer, a file), and the results builder a GET per file. Here the raw tables
of a stored batch (wire.py) become one table per output name, split where the schema changes
or the pack grows past PACK_LIMIT_BYTES, written once; each task keeps its row range. A pack
is named by the sha256 of its bytes, so writing it twice (a retry, a race) is harmless.

Outputs a worker already wrote as Parquet (tables too large or too rich for the raw form)
stay whole files of their task. An output that cannot become a table fails its own task
only; so does one that Parquet refuses, found by writing the group's tables one by one.
Runs in a thread: pyarrow releases the GIL. No I/O. pyarrow is imported on first use, as
in results.py: the runner loads it in the background while it starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .wire import OutputTableError

if TYPE_CHECKING:
    import pyarrow as pa

    from .tables import Compression

__all__ = ["PACK_LIMIT_BYTES", "Pack", "Placed", "pack_outputs"]

PACK_LIMIT_BYTES = 32 * 1024 * 1024
"""A pack takes tables until their Arrow size passes this; then the next pack starts."""


@dataclass(frozen=True)
class Pack:
    """One Parquet file of several tasks' rows of one output."""

    digest: str  # sha256 of `data`, hex: its name in the store
    data: bytes


@dataclass
class Placed:
    """Where one task's outputs go: rows of packs, or whole files of its own."""

    rows: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name -> digest, rows
    files: dict[str, bytes] = field(default_factory=dict)  # name -> Parquet bytes


@dataclass
class _Group:
    """Tables of one output name with one schema, in task order, for one pack."""

    name: str
    schema: pa.Schema
    members: list[tuple[int, pa.Table]] = field(default_factory=list)
    nbytes: int = 0


def pack_outputs(
    outputs: Sequence[Mapping[str, Any]],
    *,
    compression: Compression,
    limit_bytes: int = PACK_LIMIT_BYTES,
) -> tuple[list[Placed | OutputTableError], list[Pack]]:
    """Place every task's outputs (Parquet bytes or raw tables); per task, in order, its
    placement or the error that fails it, and the packs to store."""
    placed: list[Placed | OutputTableError] = []
    open_groups: dict[str, list[_Group]] = {}
    full: list[_Group] = []
    for index, task_outputs in enumerate(outputs):
        try:
            place, tables = _convert(task_outputs)
        except OutputTableError as exc:
            placed.append(exc)
            continue
        placed.append(place)
        for name, table in tables.items():
            group = _group_for(open_groups.setdefault(name, []), name, table.schema)
            group.members.append((index, table))
            group.nbytes += table.nbytes
            if group.nbytes >= limit_bytes:
                open_groups[name].remove(group)
                full.append(group)
    packs: list[Pack] = []
    for group in [*full, *(g for groups in open_groups.values() for g in groups)]:
        _write(group, placed, packs, compression)
    return placed, packs


def _convert(task_outputs: Mapping[str, Any]) -> tuple[Placed, dict[str, pa.Table]]:
    from .tables import raw_to_arrow

    place, tables = Placed(), {}
    for name, output in task_outputs.items():
        if isinstance(output, (bytes, bytearray, memoryview)):
            place.files[name] = bytes(output)
        else:
            tables[name] = raw_to_arrow(name, output)
    return place, tables


def _group_for(groups: list[_Group], name: str, schema: pa.Schema) -> _Group:
    for group in groups:
        if group.schema.equals(schema, check_metadata=True):
            return group
    group = _Group(name, schema)
    groups.append(group)
    return group


def _write(
    group: _Group,
    placed: list[Placed | OutputTableError],
    packs: list[Pack],
    compression: Compression,
) -> None:
    import pyarrow as pa

    from .tables import table_to_parquet

    members = [(i, t) for i, t in group.members if isinstance(placed[i], Placed)]
    if not members:
        return
    try:
        data = table_to_parquet(
            group.name, pa.concat_tables([t for _, t in members]), compression=compression
        )
    except OutputTableError as exc:
        if len(members) == 1:
            placed[members[0][0]] = exc
            return
        for member in members:  # find the table Parquet refuses: it fails alone
            _write(_Group(group.name, group.schema, [member]), placed, packs, compression)
        return
    digest = hashlib.sha256(data).hexdigest()
    packs.append(Pack(digest, data))
    start = 0
    for index, table in members:
        place = placed[index]
        assert isinstance(place, Placed)
        place.rows[group.name] = (digest, start, start + table.num_rows)
        start += table.num_rows
