"""`modelops demo`: the seed's workflow end to end on the embedded stack, as a user types it.

In a scratch copy of examples/sir it runs, each as its own `modelops` process:
register-model, build --push (the digest), study create, submit, watch, results (Parquet and
CSV) and plot; then prints a summary. It starts the embedded stack if none is running here and
stops it at the end if it started it. Exit 0 only if every step worked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from rich.console import Console
from rich.table import Table

from .config import CliConfig
from .errors import CliError, ConfigError
from .stack import ensure_running, stop_stack

__all__ = ["DEPLOYMENT_VARS", "DemoPlan", "DemoReport", "find_example", "run_demo"]

log = structlog.get_logger(__name__)

EXAMPLE = Path("examples") / "sir"
_COPY_IGNORE = shutil.ignore_patterns(".modelops", ".modelops-bundle", "__pycache__", "*.pyc")
# Variables that would point the demo's commands away from the embedded stack.
DEPLOYMENT_VARS = (
    "MODELOPS_NATS_URL",
    "MODELOPS_REGISTRY",
    "MODELOPS_REPOSITORY",
    "MODELOPS_BLOB_STORE",
    "MODELOPS_S3_ENDPOINT",
    "MODELOPS_LAUNCHER",
)


@dataclass(frozen=True)
class DemoPlan:
    """The study the demo runs: small enough to finish in seconds (~20 ms per task)."""

    sets: int = 20
    replicates: int = 5
    seed: int = 42
    method: str = "lhs"

    @property
    def tasks(self) -> int:
        return self.sets * self.replicates


@dataclass
class StepResult:
    name: str
    command: str
    seconds: float
    ok: bool


@dataclass
class DemoReport:
    """What happened, for the summary table and the exit code."""

    project: Path
    steps: list[StepResult] = field(default_factory=list)
    bundle_ref: str = ""
    job_id: str = ""
    results: list[Path] = field(default_factory=list)
    tasks: int = 0
    failed: int | None = None
    stack_started: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps) and self.failed == 0


def find_example(given: Path | None) -> Path:
    """The example project: `given`, else ./examples/sir, else the one beside this package."""
    candidates = (
        [given] if given else [Path.cwd() / EXAMPLE, Path(__file__).resolve().parents[3] / EXAMPLE]
    )
    for path in candidates:
        if (path / "src" / "model.py").is_file():
            return path.resolve()
    raise ConfigError(
        f"cannot find the example project ({', '.join(str(p) for p in candidates)})",
        hint="run 'modelops demo' from the repository root or pass --example PATH",
    )


class _Runner:
    """Runs `modelops` commands in the scratch project and records each as a step."""

    def __init__(self, out: Console, project: Path, home: Path, report: DemoReport) -> None:
        self.out = out
        self.project = project
        self.report = report
        env = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_VARS}
        self.env = {**env, "MODELOPS_HOME": str(home)}

    def run(self, name: str, shown: str, args: Sequence[str], *, capture: bool = True) -> str:
        """Run `modelops ARGS` (shown to the user as `shown`); return its stdout's last line."""
        self.out.rule(f"[bold]{name}")
        self.out.print(f"[dim]$[/] [bold]{shown}[/]", highlight=False)
        argv = [sys.executable, "-m", "modelops_cli.main", *args]
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE if capture else None,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        if capture and proc.stdout:
            self.out.print(proc.stdout.rstrip(), markup=False, highlight=False)
        ok = proc.returncode == 0
        self.report.steps.append(StepResult(name, shown, seconds, ok))
        if not ok:
            raise _StepFailed(name, proc.returncode)
        lines = (proc.stdout or "").strip().splitlines()
        return lines[-1].strip() if lines else ""


class _StepFailed(Exception):
    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"step '{name}' failed (exit code {code})")
        self.name, self.code = name, code


def _steps(run: _Runner, plan: DemoPlan, report: DemoReport) -> None:
    run.run(
        "1. register the model",
        "modelops-bundle register-model model:StochasticSIR --path src/model.py --data data/",
        ["register-model", "model:StochasticSIR", "--path", "src/model.py", "--data", "data/"],
    )
    report.bundle_ref = run.run(
        "2. build and push the bundle", "modelops-bundle build --push", ["build", "--push"]
    )
    digest = report.bundle_ref.rsplit("@", 1)[-1]
    if not digest.startswith("sha256:"):
        raise CliError(f"build --push printed {report.bundle_ref!r}, not a bundle reference")
    study = (
        f"study create --space parameters.yaml --method {plan.method} --n {plan.sets} "
        f"--replicates {plan.replicates} --seed {plan.seed} --name sir-demo -o study.json"
    )
    run.run("3. create the study", f"modelops {study}", study.split())
    report.job_id = run.run(
        "4. submit it",
        f"modelops submit study.json --bundle {digest}",
        ["submit", "study.json", "--bundle", digest],
    )
    report.tasks = plan.tasks
    try:
        run.run(
            "5. watch it run",
            f"modelops watch {report.job_id}",
            ["watch", report.job_id],
            capture=False,
        )
        report.failed = 0
    except _StepFailed:
        report.failed = None  # watch names the failures; the summary says the step failed
        raise
    for output, name in (("timeseries", "timeseries.parquet"), ("summary", "summary.csv")):
        path = f"results/{name}"
        run.run(
            f"6. results: {output}",
            f"modelops results {report.job_id} --output {output} -o {path}",
            ["results", report.job_id, "--output", output, "-o", path],
        )
        report.results.append(run.project / path)
    plot = "results/timeseries.png"
    run.run(
        "7. plot",
        f"modelops plot {report.job_id} --output timeseries -o {plot}",
        ["plot", report.job_id, "--output", "timeseries", "-o", plot],
    )
    report.results.append(run.project / plot)


def _summary(out: Console, report: DemoReport, wall_s: float) -> None:
    table = Table(title="ModelOps demo", show_header=True)
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for step in report.steps:
        table.add_row(
            step.name, f"{step.seconds:.1f}", "[green]ok[/]" if step.ok else "[red]failed[/]"
        )
    out.print(table)
    failed = "?" if report.failed is None else str(report.failed)
    out.print(f"tasks      {report.tasks} ({failed} failed)")
    out.print(f"wall time  {wall_s:.1f}s")
    if report.bundle_ref:
        out.print(f"bundle     {report.bundle_ref}")
    if report.job_id:
        out.print(f"job        {report.job_id}")
    out.print(f"project    {report.project}")
    for path in report.results:
        out.print(f"results    {path}")


def run_demo(
    cfg: CliConfig,
    out: Console,
    *,
    example: Path | None = None,
    workdir: Path | None = None,
    plan: DemoPlan | None = None,
) -> DemoReport:
    """Run the demo; the report's `ok` says whether every step worked."""
    plan = plan or DemoPlan()
    source = find_example(example)
    base = workdir or Path(tempfile.mkdtemp(prefix="modelops-demo-"))
    project = base / source.name
    if project.exists():
        raise ConfigError(f"{project} already exists", hint="pass an empty --workdir")
    shutil.copytree(source, project, ignore=_COPY_IGNORE)
    report = DemoReport(project=project)
    started = time.monotonic()
    info, report.stack_started = ensure_running(cfg)
    step = "0. start the embedded stack" if report.stack_started else "0. use the running stack"
    report.steps.append(StepResult(step, "modelops up --detach", time.monotonic() - started, True))
    out.print(
        f"{'Started' if report.stack_started else 'Using'} the embedded stack "
        f"({info.nats_url}, home {cfg.home}); demo project: {project}",
        highlight=False,
    )
    try:
        _steps(_Runner(out, project, cfg.home, report), plan, report)
    except _StepFailed as exc:
        log.debug("demo.step_failed", step=exc.name, code=exc.code)
    finally:
        if report.stack_started:
            stop_stack(cfg)
        _summary(out, report, time.monotonic() - started)
    return report
