"""Pure parts of the pool: exit diagnosis and the stderr tail buffer."""

from __future__ import annotations

import signal

import pytest

from modelops_runner.pool import TaskFailure, WorkerStartError, _TailBuffer, classify_exit


@pytest.mark.parametrize(
    ("returncode", "kwargs", "kind", "exit_code", "sig"),
    [
        (-signal.SIGSEGV, {}, "signal", None, signal.SIGSEGV),
        (-signal.SIGABRT, {"memory_pressure": True}, "signal", None, signal.SIGABRT),
        (-signal.SIGKILL, {}, "signal", None, signal.SIGKILL),
        (-signal.SIGKILL, {"memory_pressure": True}, "oom", None, signal.SIGKILL),
        (137, {"memory_pressure": True}, "oom", None, signal.SIGKILL),
        (3, {}, "crashed", 3, None),
        (0, {}, "crashed", 0, None),
        (
            -signal.SIGKILL,
            {"killed_by_pool": True, "memory_pressure": True},
            "crashed",
            None,
            signal.SIGKILL,
        ),
    ],
)
def test_classify_exit(
    returncode: int, kwargs: dict, kind: str, exit_code: int | None, sig: int | None
) -> None:
    got_kind, description, got_code, got_sig = classify_exit(returncode, **kwargs)
    assert (got_kind, got_code, got_sig) == (kind, exit_code, sig)
    assert description


def test_signal_names_are_spelled_out() -> None:
    assert "SIGSEGV (11)" in classify_exit(-11)[1]
    assert "signal 77" in classify_exit(-77)[1]


def test_tail_buffer_keeps_the_last_bytes_since_a_mark() -> None:
    buf = _TailBuffer(10)
    buf.append(b"hello ")
    mark = buf.total
    buf.append(b"world")
    assert buf.tail(mark) == "world"
    assert buf.tail() == "hello world"[-10:]
    for _ in range(1000):
        buf.append(b"0123456789abcdef")
    assert buf.total == 11 + 16000
    assert buf.tail(mark) == "6789abcdef"
    assert len(buf.tail()) == 10
    assert buf.tail(buf.total) == ""


def test_tail_buffer_decodes_broken_utf8_without_failing() -> None:
    buf = _TailBuffer(4)
    buf.append("ééé".encode())  # 6 bytes: the cut lands inside a character
    assert buf.tail().endswith("éé")


def test_start_error_becomes_a_task_failure_and_shows_the_traceback() -> None:
    exc = WorkerStartError(
        "cannot load model 'm:X'",
        kind="import_error",
        error_type="SyntaxError",
        traceback_tail="Traceback...\nSyntaxError: bad",
        stderr_tail="warn",
    )
    assert "SyntaxError: bad" in str(exc)
    failure = exc.as_failure("t9")
    assert failure == TaskFailure(
        task_id="t9",
        kind="import_error",
        message="cannot load model 'm:X'",
        error_type="SyntaxError",
        traceback_tail="Traceback...\nSyntaxError: bad",
        stderr_tail="warn",
    )
