"""The worker subprocess: `python -m modelops_runner.worker`, spawned by WorkerPool.

It imports each model once, then serves tasks one at a time over the frame protocol
(see protocol.py) until it reads `exit` or its input ends. Models print, so before anything
else the worker moves the protocol off fds 0 and 1 (to private dups) and points fd 1 at the
stderr pipe, which the pool drains; fd 0 becomes /dev/null. A model can therefore write
anything anywhere without corrupting a frame or blocking on a full pipe.

Everything a task can do wrong comes back as a `failure` reply; only a death of the process
(signal, os._exit, the OOM killer) is left for the pool to diagnose from the exit status.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import resource
import signal
import sys
import time
from typing import Any, BinaryIO

from .model_contract import ModelCache, ModelTaskError, format_traceback, run_model
from .protocol import (
    MAX_FRAME_BYTES,
    FrameTooLarge,
    Message,
    ProtocolError,
    encode_frame,
    read_frame,
    write_frame,
)
from .wire import OutputTableError, RawTable, to_raw

__all__ = ["EXIT_IMPORT_ERROR", "EXIT_PROTOCOL_ERROR", "main", "run_task"]

EXIT_IMPORT_ERROR = 3
"""Exit status after reporting that a preloaded model cannot be imported."""
EXIT_PROTOCOL_ERROR = 70
"""Exit status when the pool sent something that is not the protocol (EX_SOFTWARE)."""

_PR_SET_PDEATHSIG = 1


def _claim_protocol_fds() -> tuple[BinaryIO, BinaryIO]:
    """Take fds 0/1 for the protocol; the model gets /dev/null and the stderr pipe instead."""
    proto_in = os.dup(0)
    proto_out = os.dup(1)  # os.dup fds are not inherited by the model's own subprocesses
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return os.fdopen(proto_in, "rb"), os.fdopen(proto_out, "wb")


def _die_with_parent() -> None:
    """On Linux, ask for SIGKILL when the pool's process dies, so no hung model outlives a runner.

    (An idle worker needs no help: its protocol input ends and it exits.)
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _apply_memory_limit(limit: int | None) -> None:
    """RLIMIT_AS caps address space, so an exhausting model gets MemoryError, not the machine.

    Arrow's default allocator (mimalloc) reserves ~1 GiB of address space up front; under a
    limit the worker uses the system allocator instead so the limit buys usable memory.
    """
    if not limit:
        return
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _flush_std_streams() -> None:
    """Push buffered model prints into the stderr pipe before the reply, so tails are complete."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError, AttributeError):
            stream.flush()


def _failure(task_id: str, kind: str, message: str, **extra: Any) -> Message:
    return {
        "op": "failure",
        "id": task_id,
        "kind": kind,
        "message": message,
        "error_type": "",
        "traceback": "",
        "retire": False,
        **extra,
    }


def _encode_output(name: str, table: Any, compression: str) -> bytes | RawTable:
    """The output as it goes to the pool: raw columns when it can (see wire.py), else the
    Parquet bytes written here (pyarrow is imported at the first such output)."""
    raw = to_raw(name, table)
    if raw is not None:
        return raw
    from .tables import to_parquet

    return to_parquet(name, table, compression=compression)  # type: ignore[arg-type]


def run_task(cache: ModelCache, task: Message, *, compression: str = "zstd") -> Message:
    """Run one task message and build its reply; never raises for anything the model does."""
    task_id = task["id"]
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    try:
        model, scenario = cache.get(task["entrypoint"])
        tables = run_model(
            model,
            scenario=scenario,
            params=task["params"],
            seed=task["seed"],
            config=task.get("config"),
            outputs=task.get("outputs"),
        )
        outputs = {name: _encode_output(name, table, compression) for name, table in tables.items()}
    except ModelTaskError as exc:
        return _failure(
            task_id, exc.kind, exc.message, error_type=exc.error_type, traceback=exc.traceback_text
        )
    except OutputTableError as exc:
        return _failure(
            task_id,
            "bad_output",
            str(exc),
            error_type=type(exc).__name__,
            traceback=format_traceback(exc),
        )
    except MemoryError as exc:
        # the heap may be fragmented or half-initialised: the pool replaces this worker
        return _failure(
            task_id,
            "oom",
            f"model ran out of memory: MemoryError: {exc}",
            error_type="MemoryError",
            traceback=format_traceback(exc),
            retire=True,
        )
    except (Exception, SystemExit) as exc:  # the model's own error: reported, never swallowed
        return _failure(
            task_id,
            "model_error",
            f"{type(exc).__name__}: {exc}",
            error_type=type(exc).__name__,
            traceback=format_traceback(exc),
        )
    finally:
        _flush_std_streams()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "op": "result",
        "id": task_id,
        "outputs": outputs,
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": _cpu_seconds() - cpu0,
        "peak_rss": usage.ru_maxrss * 1024,
    }


def _serve(proto_in: BinaryIO, proto_out: BinaryIO, cache: ModelCache, init: Message) -> int:
    max_frame = int(init.get("max_frame_bytes") or MAX_FRAME_BYTES)
    compression = init.get("compression") or "zstd"
    while True:
        message = read_frame(proto_in, max_bytes=max_frame)
        if message is None or message["op"] == "exit":
            return 0
        if message["op"] != "task":
            raise ProtocolError(
                f"worker expected a 'task' or 'exit' message, got {message['op']!r}"
            )
        reply = run_task(cache, message, compression=compression)
        try:
            frame = encode_frame(reply, max_bytes=max_frame)
        except FrameTooLarge as exc:
            frame = encode_frame(
                _failure(message["id"], "bad_output", str(exc), error_type="FrameTooLarge")
            )
        except (TypeError, ValueError, OverflowError) as exc:  # msgpack refused a value
            frame = encode_frame(
                _failure(
                    message["id"],
                    "bad_output",
                    f"the task's outputs cannot be sent to the runner: {exc} "
                    "(hint: return columns of numbers, strings or booleans)",
                    error_type=type(exc).__name__,
                )
            )
        proto_out.write(frame)
        proto_out.flush()


def main() -> int:
    """Worker entry point; returns the process exit status."""
    proto_in, proto_out = _claim_protocol_fds()
    faulthandler.enable()  # a segfaulting model leaves a Python traceback in the stderr tail
    _die_with_parent()
    try:
        init = read_frame(proto_in)
        if init is None:
            return 0
        if init["op"] != "init":
            raise ProtocolError(f"worker expected an 'init' message first, got {init['op']!r}")
        _apply_memory_limit(init.get("memory_limit"))
        cache = ModelCache(init.get("import_paths") or [])
        for entrypoint in init.get("preload") or []:
            try:
                cache.get(entrypoint)
            except ModelTaskError as exc:
                write_frame(
                    proto_out,
                    {
                        "op": "import_error",
                        "entrypoint": entrypoint,
                        "kind": exc.kind,
                        "error_type": exc.error_type,
                        "message": exc.message,
                        "traceback": exc.traceback_text,
                    },
                )
                return EXIT_IMPORT_ERROR
        write_frame(proto_out, {"op": "ready", "pid": os.getpid()})
        return _serve(proto_in, proto_out, cache, init)
    except ProtocolError as exc:
        print(f"modelops worker {os.getpid()}: protocol error: {exc}", file=sys.stderr, flush=True)
        return EXIT_PROTOCOL_ERROR
    except BrokenPipeError:
        return 0  # the pool went away; nobody is left to answer


if __name__ == "__main__":
    sys.exit(main())
