"""The `modelops` command (aliases `mops` and `modelops-bundle`).

Each command group lives in `commands/<group>.py` and exposes `register(app)`. Errors a person
can meet are printed as one readable line plus a hint and exit non-zero; `--verbose` shows the
traceback.
"""

from __future__ import annotations

import sys

import typer

from modelops_runtime.logging import configure_logging

from . import console
from .commands import bundle, demo, jobs, stack, study

__all__ = ["app", "run"]

app = typer.Typer(
    name="modelops",
    help="Run stochastic simulation studies reproducibly: register, bundle, submit, collect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show details and tracebacks."),
) -> None:
    console.set_verbose(verbose)
    # Library logs are for services; a person at a terminal sees them only with --verbose.
    configure_logging("cli", level="DEBUG" if verbose else "WARNING", fmt="console")


for _group in (bundle, study, jobs, stack, demo):
    _group.register(app)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, turning known errors into one line plus a hint."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        console.error("interrupted")
        sys.exit(130)
    except BaseException as exc:  # outermost loop of the process: report, never a raw traceback
        sys.exit(console.report_exception(exc))


if __name__ == "__main__":
    run()
