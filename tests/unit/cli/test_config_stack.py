"""Config resolution with and without a running embedded stack; the stack's pure parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelops_cli import console
from modelops_cli.config import load_config
from modelops_cli.errors import StackNotRunning, UnknownJob
from modelops_cli.stack import _local_runners, _ports, _start_time, _stop_local_runners, service_env


def _write_stack(home: Path, pid: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "stack.json").write_text(
        json.dumps(
            {
                "nats_url": "nats://127.0.0.1:4999",
                "pid": pid,
                "bundle_store": "oci-layout:/s/oci",
                "blob_store": "file:///s/blobs",
            }
        )
    )


def _await_cmdline(pid: int, deadline_s: float = 5.0) -> None:
    """Poll until the child's exec shows in /proc (the stack check reads its command line)."""
    end = time.monotonic() + deadline_s
    while b"modelops" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < end, "child never showed its command line"


def test_no_stack_and_no_url_is_a_clear_error(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert cfg.stack() is None
    with pytest.raises(StackNotRunning) as info:
        cfg.require_nats_url()
    assert "modelops up" in (info.value.hint or "")
    assert cfg.with_stack() is cfg


def test_a_dead_stack_is_not_running(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    _write_stack(tmp_path / ".modelops", int(proc.stdout))  # that process has exited
    assert load_config(tmp_path, env={}).stack() is None


def test_a_pid_that_is_not_modelops_is_not_our_stack(tmp_path: Path) -> None:
    _write_stack(tmp_path / ".modelops", os.getpid())  # pytest is alive but not 'modelops'
    cmdline = Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
    expected = b"modelops" in cmdline
    assert (load_config(tmp_path, env={}).stack() is not None) == expected


def test_running_stack_fills_defaults_but_not_configured_values(tmp_path: Path) -> None:
    home = tmp_path / ".modelops"
    with subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "modelops"]
    ) as sleeper:
        try:
            _write_stack(home, sleeper.pid)
            _await_cmdline(sleeper.pid)
            cfg = load_config(tmp_path, env={"MODELOPS_BLOB_STORE": "s3://bucket/x"}).with_stack()
            assert cfg.nats_url == "nats://127.0.0.1:4999"
            assert cfg.registry == "oci-layout:/s/oci"
            assert cfg.blob_store == "s3://bucket/x"  # configured: the stack's does not win
            assert cfg.sources["registry"] == "stack.json"
            assert cfg.require_nats_url() == "nats://127.0.0.1:4999"
        finally:
            sleeper.kill()


def test_service_env_configures_services_like_a_deployment(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={"MODELOPS_S3_ENDPOINT": "http://127.0.0.1:9"})
    env = service_env(cfg, "nats://127.0.0.1:1", {"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["MODELOPS_NATS_URL"] == "nats://127.0.0.1:1"
    assert env["MODELOPS_STATE_DIR"] == str(tmp_path / ".modelops")
    assert env["MODELOPS_BUNDLE_STORE"] == f"oci-layout:{tmp_path / '.modelops' / 'oci'}"
    assert env["MODELOPS_BLOB_STORE"] == (tmp_path / ".modelops" / "blobs").as_uri()
    assert env["MODELOPS_S3_ENDPOINT"] == "http://127.0.0.1:9"


def test_ports_are_reused_while_free(tmp_path: Path) -> None:
    first = _ports(tmp_path)
    assert _ports(tmp_path) == first
    assert first[0] != first[1]


def test_known_errors_print_one_line_and_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code = console.report_exception(UnknownJob("job-1", where="nats://x"))
    err = capsys.readouterr().err
    assert code == 1
    assert "error: no job 'job-1' on nats://x" in err and "hint: list jobs" in err
    assert "Traceback" not in err


def test_down_stops_the_local_runners_it_finds_and_nothing_else(tmp_path: Path) -> None:
    home = tmp_path / ".modelops"
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        (home / "jobs" / "job-1").mkdir(parents=True)
        runners = [
            {"pid": sleeper.pid, "start": _start_time(sleeper.pid)},
            {"pid": bystander.pid, "start": 1},  # pid reused by another program: not ours
        ]
        (home / "jobs" / "job-1" / "runners.json").write_text(json.dumps({"runners": runners}))
        assert _local_runners(home) == {sleeper.pid: _start_time(sleeper.pid)}
        _stop_local_runners(home, grace_s=5.0)
        assert sleeper.wait(timeout=5) == -15  # SIGTERM, within the grace period
        assert bystander.poll() is None
    finally:
        for proc in (sleeper, bystander):
            proc.kill()
            proc.wait()
