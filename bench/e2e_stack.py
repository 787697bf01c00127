"""The benchmark project on its own embedded stack, set up the way a modeler does it.

A copy of examples/sir plus bench/models/noop.py, `modelops up --detach`, `register-model` for
both models, `build --push`; on exit `modelops down`, then a check that the stack process,
its nats-server and every runner it launched are gone (a benchmark must leave nothing running).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from modelops_cli.config import CliConfig, load_config

__all__ = ["NOOP", "SIR", "BenchStack", "bench_stack"]

log = structlog.get_logger(__name__)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "sir"
MODELS = Path(__file__).resolve().parent / "models"
BIN = Path(sys.executable).parent
NOOP = "noop:NoOp"
SIR = "model:StochasticSIR"
_CLI_TIMEOUT_S = 180


class StackSetupError(RuntimeError):
    """A CLI step of the benchmark's set-up failed; the message carries its output."""


@dataclass(frozen=True)
class BenchStack:
    """A running embedded stack with the benchmark bundle pushed to it."""

    root: Path
    env: dict[str, str]
    bundle_ref: str

    @property
    def config(self) -> CliConfig:
        return load_config(self.root, env=self.env).with_stack()

    @property
    def pid(self) -> int:
        return int(json.loads((self.root / ".modelops" / "stack.json").read_text())["pid"])

    @property
    def bundle_cache(self) -> Path:
        """Where runners keep pulled bundles (MODELOPS_BUNDLE_CACHE of the stack)."""
        return self.root / ".modelops" / "bundle-cache"

    def cli(self, *args: str, tool: str = "modelops") -> str:
        """Run a console script in the project; its stdout, or StackSetupError."""
        proc = subprocess.run(
            [str(BIN / tool), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=_CLI_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise StackSetupError(
                f"`{tool} {' '.join(args)}` exited {proc.returncode} in {self.root}:\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        return proc.stdout


def _make_project(folder: Path) -> Path:
    root = folder / "project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".modelops*"))
    shutil.copy2(MODELS / "noop.py", root / "src" / "noop.py")
    return root


def _env() -> dict[str, str]:
    """This environment minus any MODELOPS_* of the caller's: the project decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env["MODELOPS_LOG_LEVEL"] = "WARNING"
    return env


def _stack_processes(root: Path) -> list[psutil.Process]:
    try:
        data = json.loads((root / ".modelops" / "stack.json").read_text())
    except (OSError, ValueError):
        return []
    procs = []
    for pid in (data.get("pid"), data.get("nats_pid")):
        with contextlib.suppress(psutil.Error, TypeError, ValueError):
            procs.append(psutil.Process(pid))
    return procs


@contextlib.contextmanager
def bench_stack(folder: Path) -> Iterator[BenchStack]:
    """Project + running stack + pushed bundle; everything stopped on exit."""
    root = _make_project(folder)
    stack = BenchStack(root=root, env=_env(), bundle_ref="")
    stack.cli("up", "--detach")
    procs = _stack_processes(root)
    watched = [*procs, *(c for p in procs[:1] for c in _children(p))]
    try:
        stack.cli(
            "register-model",
            SIR,
            "--path",
            "src/model.py",
            "--data",
            "data/",
            tool="modelops-bundle",
        )
        stack.cli("register-model", NOOP, "--path", "src/noop.py", tool="modelops-bundle")
        ref = stack.cli("build", "--push", tool="modelops-bundle").strip().splitlines()[-1]
        log.info("bench.e2e.bundle", bundle_ref=ref)
        yield BenchStack(root=root, env=stack.env, bundle_ref=ref)
    finally:
        watched += [c for p in procs[:1] for c in _children(p)]
        try:
            stack.cli("down")
        finally:
            _reap(watched)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return proc.children(recursive=True)
    return []


def _reap(procs: list[psutil.Process]) -> None:
    """Kill (by pid, ours only) whatever of the stack outlived `modelops down`, and say so."""
    alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if not alive:
        return
    log.warning("bench.e2e.leftovers", pids=[p.pid for p in alive])
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=10)
