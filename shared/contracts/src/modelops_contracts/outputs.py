"""Where a stored task output is: a blob URI, or a row range of a Parquet file shared by tasks.

A runner writes the outputs of the tasks it stores together as one Parquet file per output
(a *pack*, keyed by the sha256 of its bytes: `blob_keys.result_pack`), and each task's
reference names its rows: `<blob uri>#rows=<start>-<stop>` (rows start to stop-1, counted
from 0). A reference without a fragment is a whole Parquet file holding one task's output
(results stored before packs existed, and outputs a worker wrote as Parquet itself).

Why packs: one file per output per task cost a ~20 ms task about 0.3 ms of the runner's CPU
(a Parquet writer and a file each), and the results builder a GET each.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["OutputRef", "output_ref", "parse_output_ref"]

_ROWS_RE = re.compile(r"rows=(\d+)-(\d+)")


class OutputRef(NamedTuple):
    """A parsed output reference: the blob to read, and the rows of it (None: all of them)."""

    uri: str
    rows: tuple[int, int] | None = None


def output_ref(uri: str, start: int, stop: int) -> str:
    """The reference to rows start..stop-1 of the Parquet file at `uri`. Pure."""
    if "#" in uri:
        raise ValueError(f"blob URI {uri!r} already has a fragment")
    if not 0 <= start <= stop:
        raise ValueError(f"row range {start}-{stop} is not 0 <= start <= stop")
    return f"{uri}#rows={start}-{stop}"


def parse_output_ref(ref: str) -> OutputRef:
    """Split a reference into its blob URI and row range; ValueError names a bad fragment."""
    uri, sep, fragment = ref.partition("#")
    if not sep:
        return OutputRef(uri)
    match = _ROWS_RE.fullmatch(fragment)
    if match is None:
        raise ValueError(
            f"output reference {ref!r} has fragment {fragment!r}; expected 'rows=<start>-<stop>'"
        )
    start, stop = int(match[1]), int(match[2])
    if start > stop:
        raise ValueError(f"output reference {ref!r} has rows {start}-{stop}: start > stop")
    return OutputRef(uri, (start, stop))
