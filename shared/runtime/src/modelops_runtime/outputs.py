"""Read one stored task output by its reference: a whole Parquet file, or rows of a pack.

For a single output (tests, a user looking at one task). Reading many, the results builder
fetches each pack once for all the tasks in it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from modelops_contracts import parse_output_ref

from .blobstore import BlobStore

__all__ = ["read_output", "slice_rows"]


def slice_rows(table: pa.Table, ref: str) -> pa.Table:
    """The rows of `table` (the whole file `ref` points into) that `ref` names; ValueError
    when the range runs past the file's end."""
    rows = parse_output_ref(ref).rows
    if rows is None:
        return table
    start, stop = rows
    if stop > table.num_rows:
        raise ValueError(
            f"output reference {ref!r} names rows up to {stop}, "
            f"but its file has {table.num_rows} rows"
        )
    return table.slice(start, stop - start)


async def read_output(store: BlobStore, ref: str) -> pa.Table:
    """The table a task output reference (TaskCompleted.outputs) points at."""
    data = await store.get_bytes(parse_output_ref(ref).uri)
    return slice_rows(pq.ParquetFile(pa.BufferReader(data)).read(), ref)
