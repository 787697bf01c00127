"""Handing memory back to the OS after a large submit or a large results table.

Binding and enqueueing a 100k-task job builds ~150 MB of short-lived objects, and writing its
results table passes many buffers through Arrow's allocator. Once freed, CPython keeps much
of it in its pools, Arrow's pool caches buffers and glibc keeps freed heap pages, so each
large job would leave the process bigger. A full collection, Arrow's `release_unused` and
glibc's `malloc_trim` return what they can (measured: tens of MB a job).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

import pyarrow as pa
import structlog

__all__ = ["LARGE_JOB", "release_memory", "tune_allocator"]

log = structlog.get_logger(__name__)

LARGE_JOB = 10_000  # tasks: from this size on, memory is handed back after a submit/completion


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed


@functools.cache
def _libc_function(name: str) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        return getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return None


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold at its initial 128 KiB (call once, at process start).

    glibc raises the threshold dynamically each time a large mmapped block is freed (up to
    32 MiB), after which big buffers (job.json of a large job, Parquet tables) come from the
    heap, where they fragment and stay. Measured with bench_submitter (3 jobs of 100k tasks in
    one submitter): peak RSS while tracking grew 287 -> 319 -> 352 MiB with the dynamic
    threshold, 270 -> 284 -> 293 MiB with it fixed. The same as MALLOC_MMAP_THRESHOLD_=131072.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def release_memory() -> None:
    """Collect garbage and return free heap pages to the OS (a no-op where unsupported)."""
    before = _rss_kib()
    gc.collect()
    pa.default_memory_pool().release_unused()  # Arrow's allocator caches freed buffers
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
    after = _rss_kib()
    if before is not None and after is not None:
        log.debug("memory.released", rss_mib=after // 1024, freed_mib=(before - after) // 1024)
