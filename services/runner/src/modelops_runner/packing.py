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
    """Outputs of one name and one shape, in task order, for one pack.

    Raw tables of one signature (column names, numpy dtypes, Python value types) are joined
    column by column before Arrow sees them: one `pa.array` per column per pack instead of
    per task, which was most of the cost. Anything else joins as the table it converts to,
    grouped by its schema.
    """

    name: str
    raw: bool  # members are raw tables of one signature, else Tables of one schema
    members: list[tuple[int, Any]] = field(default_factory=list)  # (task, raw table or Table)
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
    groups = _Groups(limit_bytes)
    for index, task_outputs in enumerate(outputs):
        place, joining = Placed(), []
        try:
            for name, output in task_outputs.items():
                if isinstance(output, (bytes, bytearray, memoryview)):
                    place.files[name] = bytes(output)
                else:
                    joining.append((name, *_shape(name, output)))
        except OutputTableError as exc:
            placed.append(exc)
            continue
        placed.append(place)
        for name, raw, shape, member, nbytes in joining:
            groups.add(name, raw, shape, (index, member), nbytes)
    packs: list[Pack] = []
    for group in groups.all():
        _write(group, placed, packs, compression)
    return placed, packs


class _Groups:
    """Open groups by (name, shape); a group past the size limit is closed, the next opens."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.open: dict[tuple[str, object], _Group] = {}
        self.closed: list[_Group] = []

    def add(
        self, name: str, raw: bool, shape: object, member: tuple[int, Any], nbytes: int
    ) -> None:
        key = (name, raw, shape)
        group = self.open.get(key)
        if group is None:
            group = self.open[key] = _Group(name, raw)
        group.members.append(member)
        group.nbytes += nbytes
        if group.nbytes >= self.limit_bytes:
            self.closed.append(self.open.pop(key))

    def all(self) -> list[_Group]:
        return [*self.closed, *self.open.values()]


def _shape(name: str, raw: Any) -> tuple[bool, object, Any, int]:
    """(joins raw?, shape, member, size) of one raw output: its signature and itself when it
    is well-formed, else the table it converts to, shaped by its schema (serialized: equal
    schemas, metadata included, give equal bytes). OutputTableError says what is wrong."""
    signature = _signature(raw)
    if signature is not None:
        size = sum(len(v) if d is not None else 16 * len(v) for _, d, v in raw["columns"])
        return True, signature, raw, size
    from .tables import raw_to_arrow

    table = raw_to_arrow(name, raw)
    return False, table.schema.serialize().to_pybytes(), table, table.nbytes


def _signature(raw: Any) -> tuple[tuple[str, object], ...] | None:
    """Column names with their numpy dtype, or the set of Python types of a list column's
    values (which decides the Arrow type inferred for it): tables of equal signatures join
    into exactly the table each would have been alone. None when the raw table is not
    well-formed (left to raw_to_arrow, which says what is wrong)."""
    if not isinstance(raw, dict):
        return None
    columns, rows = raw.get("columns"), raw.get("rows")
    if type(columns) is not list or not columns or type(rows) is not int:
        return None
    signature: list[tuple[str, object]] = []
    for column in columns:
        if type(column) is not list or len(column) != 3:
            return None
        key, dtype, values = column
        if type(key) is not str:
            return None
        if dtype is None:
            if type(values) is not list or len(values) != rows:
                return None
            signature.append((key, frozenset(map(type, values))))
            continue
        itemsize = _itemsize(dtype)
        if not itemsize or type(values) is not bytes or len(values) != rows * itemsize:
            return None
        signature.append((key, dtype))
    if len({key for key, _ in signature}) != len(signature):
        return None
    return tuple(signature)


_ITEMSIZES: dict[str, int] = {}


def _itemsize(dtype: object) -> int:
    """The item size of a numpy dtype string (0: not a valid one, or of size 0)."""
    if type(dtype) is not str:
        return 0
    size = _ITEMSIZES.get(dtype)
    if size is None:
        import numpy as np

        try:
            size = np.dtype(dtype).itemsize
        except TypeError:
            size = 0
        _ITEMSIZES[dtype] = size
    return size


def _join_raw(raws: list[Any]) -> pa.Table:
    """Raw tables of one signature as one table, column by column."""
    import itertools

    import numpy as np
    import pyarrow as pa

    arrays = {}
    for j, column in enumerate(raws[0]["columns"]):
        key, dtype = column[0], column[1]
        parts = [raw["columns"][j][2] for raw in raws]
        if dtype is None:
            arrays[key] = pa.array(list(itertools.chain.from_iterable(parts)))
        else:
            arrays[key] = pa.array(np.frombuffer(b"".join(parts), dtype=np.dtype(dtype)))
    return pa.table(arrays)


def _rows(member: Any) -> int:
    return member["rows"] if isinstance(member, dict) else member.num_rows


def _write(
    group: _Group,
    placed: list[Placed | OutputTableError],
    packs: list[Pack],
    compression: Compression,
) -> None:
    import pyarrow as pa

    from .tables import raw_to_arrow, table_to_parquet

    members = [(i, m) for i, m in group.members if isinstance(placed[i], Placed)]
    if not members:
        return
    try:
        if group.raw:
            table = _join_raw([m for _, m in members])
        else:
            table = pa.concat_tables([m for _, m in members])
        data = table_to_parquet(group.name, table, compression=compression)
    except (OutputTableError, pa.ArrowException, TypeError, ValueError) as exc:
        if len(members) == 1 and not group.raw:
            placed[members[0][0]] = (
                exc
                if isinstance(exc, OutputTableError)
                else OutputTableError(group.name, f"cannot be written as Parquet: {exc}")
            )
            return
        for index, member in members:  # find the table at fault: it fails alone
            try:
                table = member if not group.raw else raw_to_arrow(group.name, member)
            except OutputTableError as exc:
                placed[index] = exc
                continue
            _write(_Group(group.name, False, [(index, table)]), placed, packs, compression)
        return
    digest = hashlib.sha256(data).hexdigest()
    packs.append(Pack(digest, data))
    start = 0
    for index, member in members:
        place = placed[index]
        assert isinstance(place, Placed)
        rows = _rows(member)
        place.rows[group.name] = (digest, start, start + rows)
        start += rows
