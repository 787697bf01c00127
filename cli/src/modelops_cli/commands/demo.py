"""CLI command `demo`: the seed's workflow end to end on the embedded stack."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .. import console
from ..config import load_config
from ..demo import DEPLOYMENT_VARS, DemoPlan, run_demo

__all__ = ["register"]


def demo(
    example: Path | None = typer.Option(
        None, "--example", help="Example project to copy (default: examples/sir)."
    ),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Folder for the scratch copy (default: a new temporary folder)."
    ),
    sets: int = typer.Option(20, "--sets", help="Parameter sets in the demo study."),
    replicates: int = typer.Option(5, "--replicates", help="Replicates per parameter set."),
) -> None:
    """Register, build --push, study create, submit, watch, results and plot the StochasticSIR
    example on the embedded stack (started for the demo if none is running); exit 0 only if
    every step worked."""
    env = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_VARS}
    cfg = load_config(env=env)
    report = run_demo(
        cfg,
        console.out,
        example=example,
        workdir=workdir,
        plan=DemoPlan(sets=sets, replicates=replicates),
    )
    if not report.ok:
        failed = next((s.name for s in report.steps if not s.ok), "a step")
        console.error(
            f"the demo failed at {failed}", hint="see its output above; rerun with --verbose"
        )
        raise typer.Exit(1)
    console.out.print("[bold green]Demo complete.[/]")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.command("demo")(demo)
