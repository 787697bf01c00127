"""CLI commands for studies: `study create` writes a study file from a sampling design."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import console
from ..config import load_config
from ..errors import ConfigError
from ..studies import (
    check_declared,
    pick_method,
    registered_model,
    save_study,
    space_from_params,
)

__all__ = ["register"]

study_app = typer.Typer(
    name="study",
    help="Create studies: parameter sets x replicates for one model.",
    no_args_is_help=True,
)


@study_app.command("create")
def create(
    space: Path | None = typer.Option(
        None,
        "--space",
        "-s",
        help="Parameter-space file (YAML, JSON or TOML: parameters: {name: {lower, upper}}).",
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="A parameter range NAME=LOW:HIGH[:int][:log]; repeat for each."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Entrypoint module:Class; default: the project's only registered model.",
    ),
    scenario: str | None = typer.Option(None, "--scenario", help="Scenario the model applies."),
    method: str | None = typer.Option(
        None,
        "--method",
        help="grid, random, sobol, lhs or explicit "
        "(default: lhs; grid with --levels; explicit with --table).",
    ),
    n: int | None = typer.Option(
        None, "--n", "-n", help="Parameter sets to draw (random, sobol, lhs)."
    ),
    levels: int | None = typer.Option(None, "--levels", help="Levels per parameter (grid)."),
    table: Path | None = typer.Option(
        None, "--table", help="CSV or Parquet of explicit parameter sets."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: the same seed gives the same sets."),
    replicates: int = typer.Option(
        1, "--replicates", "-r", help="Replicate runs (seeds) per parameter set."
    ),
    base_seed: int = typer.Option(0, "--base-seed", help="Base of the replicate seeds."),
    name: str = typer.Option("study", "--name", help="Study name (recorded in the job)."),
    output: Path = typer.Option(Path("study.json"), "--output", "-o", help="Study file to write."),
) -> None:
    """Write a study file (JSON) of parameter sets x replicates; submit it with 'modelops submit'.

    The parameter space comes from --space, else --param flags, else the ranges the registered
    model declares. The file path is printed alone on the last line of stdout.
    """
    # scipy takes a second to import: only this command pays for it
    from modelops_contracts.sampling import build_study, load_space

    cfg = load_config()
    entry = registered_model(cfg.project_root, model)
    entrypoint = model or (entry.entrypoint if entry else None)
    assert entrypoint is not None  # registered_model raised if neither is known
    if space is not None:
        parameter_space = load_space(space)
    elif param:
        parameter_space = space_from_params(param)
    else:
        parameter_space = entry.parameter_space if entry else None
    chosen = pick_method(method, table=table, levels=levels)
    sampled = chosen in ("random", "sobol", "lhs")
    if parameter_space is None and chosen != "explicit":
        raise ConfigError(
            f"no parameter space for {entrypoint}: the model declares no ranges",
            hint="pass --space parameters.yaml or --param NAME=LOW:HIGH for each parameter",
        )
    if sampled and n is None:
        raise ConfigError(
            f"--method {chosen} needs --n, the number of parameter sets", hint="e.g. --n 20"
        )
    study = build_study(
        entrypoint,
        parameter_space,
        chosen,  # type: ignore[arg-type]  # build_study names unknown methods
        n=n if sampled else None,
        seed=seed if sampled else None,
        n_levels=levels,
        table=str(table) if table else None,
        n_replicates=replicates,
        name=name,
        scenario=scenario,
        base_seed=base_seed,
    )
    check_declared(study, entry)
    save_study(study, output)
    console.err.print(
        f"Study {name!r}: {len(study.parameter_sets)} parameter sets x {replicates} replicates "
        f"= {study.n_tasks} tasks ({chosen}) for {study.entrypoint}"
    )
    console.out.print(str(output))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.add_typer(study_app)
