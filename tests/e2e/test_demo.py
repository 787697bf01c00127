"""`modelops demo` as `make demo` runs it: the whole workflow on the embedded stack, exit 0 only
if every step worked, and the stack left as it was found."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODELOPS = Path(sys.executable).parent / "modelops"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    return {**env, "COLUMNS": "200"}


def _modelops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODELOPS), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_demo_from_the_repository_starts_and_stops_its_stack(tmp_path: Path) -> None:
    here = tmp_path / "checkout"
    here.mkdir()
    proc = _modelops(
        "demo",
        "--example",
        str(REPO / "examples" / "sir"),
        "--workdir",
        str(tmp_path / "work"),
        cwd=here,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Started the embedded stack" in out and "Demo complete." in out
    assert "tasks      100 (0 failed)" in out
    for step in (
        "register the model",
        "build and push",
        "create the study",
        "submit it",
        "watch it run",
        "plot",
    ):
        assert step in out
    assert "$ modelops-bundle build --push" in out and "local/sir@sha256:" in out
    project = tmp_path / "work" / "sir"
    table = pq.read_table(project / "results" / "timeseries.parquet")
    assert table.num_rows == 100 * 161
    assert (project / "results" / "summary.csv").read_text().count("\n") == 101
    assert (project / "results" / "timeseries.png").stat().st_size > 0
    # it started the stack, so it stopped it: nothing of it is left running
    assert not (here / ".modelops" / "stack.json").exists()
    port = json.loads((here / ".modelops" / "ports.json").read_text())["nats"]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the demo's nats-server still listens"


def test_demo_uses_a_running_stack_and_fails_loudly_on_a_broken_step(tmp_path: Path) -> None:
    here = tmp_path / "checkout"
    here.mkdir()
    assert _modelops("up", "--detach", cwd=here).returncode == 0
    stack = json.loads((here / ".modelops" / "stack.json").read_text())
    try:
        broken = tmp_path / "broken" / "sir"
        shutil.copytree(
            REPO / "examples" / "sir", broken, ignore=shutil.ignore_patterns(".modelops*")
        )
        (broken / "parameters.yaml").write_text("parameters: {beta: {lower: 0.5}}\n")  # no upper
        proc = _modelops(
            "demo", "--example", str(broken), "--workdir", str(tmp_path / "work"), cwd=here
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Using the embedded stack" in proc.stdout
        assert "the demo failed at 3. create the study" in proc.stderr
        assert "failed" in proc.stdout  # the summary marks the step
        assert not _gone(stack["pid"])  # not started by the demo: left running
    finally:
        assert _modelops("down", cwd=here).returncode == 0
    assert _gone(stack["pid"]) and _gone(stack["nats_pid"])
