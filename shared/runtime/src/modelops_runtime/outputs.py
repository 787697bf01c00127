"""Read one stored task output by its reference: a whole Parquet file, or rows of a pack.

For a single output (tests, a user looking at one task). Reading many, the results builder
fetches each pack once for all the tasks in it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from modelops_contracts import OutputRef, parse_output_ref

from .blobstore import BlobStore

__all__ = ["read_output", "slice_rows"]


def slice_rows(table: pa.Table, where: OutputRef) -> pa.Table:
    """The rows of `table` (the whole file `where` points into) that `where` names; ValueError
    when the range runs past the file's end."""
    if where.rows is None:
        return table
    start, stop = where.rows
    if stop > table.num_rows:
        raise ValueError(f"rows {start}-{stop} are beyond the {table.num_rows} rows of {where.uri}")
    return table.slice(start, stop - start)


async def read_output(store: BlobStore, ref: str) -> pa.Table:
    """The table a task output reference (TaskCompleted.outputs) points at."""
    where = parse_output_ref(ref)
    data = await store.get_bytes(where.uri)
    return slice_rows(pq.ParquetFile(pa.BufferReader(data)).read(), where)
