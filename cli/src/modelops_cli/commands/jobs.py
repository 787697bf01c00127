"""CLI commands for jobs: `submit`, `watch`, `jobs`, `results`, `cancel`, `logs`, `plot`.

Each is a thin layer over `modelops_cli.api`: parse flags, call the API, print. Values a script
wants (the job id, the file written) go alone on the last line of stdout; progress and
summaries go to stderr.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Column, Table

from modelops_contracts import JobCancelled, TaskFailed

from .. import api, console
from ..config import CliConfig, load_config
from ..errors import CliError
from ..jobstate import JobView
from ..progress import JobProgressDisplay

__all__ = ["register"]

_STATE_STYLE = {
    "submitted": "cyan",
    "running": "cyan",
    "completed": "green",
    "cancelled": "yellow",
    "failed": "red",
}


def _cfg() -> CliConfig:
    return load_config().with_stack()


def _follow(job_id: str, cfg: CliConfig, timeout: float | None) -> JobView:
    """Show the live bar on stderr until the job ends; print its summary; fail unless ok."""
    with JobProgressDisplay(console.err, job_id) as display:
        view = api.wait(job_id, on_update=display.update, timeout_s=timeout, config=cfg)
    took = f" in {view.final.duration_s:.1f}s" if view.final and view.final.duration_s else ""
    console.err.print(view.summary() + took, highlight=False)
    api.raise_unless_ok(view)
    return view


def submit(
    study: Path = typer.Argument(..., help="Study file written by 'modelops study create'."),
    bundle: str = typer.Option(
        ..., "--bundle", "-b", help="Bundle: host/repo@sha256:…, a bare sha256:… digest, or a tag."
    ),
    runners: int = typer.Option(1, "--runners", help="Runner processes (pods) for the job."),
    workers: int = typer.Option(
        0, "--workers", help="Worker processes per runner (0: one per core)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Per-task timeout in seconds (default: one hour)."
    ),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Resubmitting with the same key returns the same job."
    ),
    wait: bool = typer.Option(False, "--wait", "-w", help="Follow the job until it finishes."),
) -> None:
    """Submit a study on a bundle; prints the job id."""
    cfg = _cfg()
    options = api.launch_options(runners=runners, workers=workers, task_timeout_s=timeout)
    answer = api.submit_job(
        study, bundle, options=options, idempotency_key=idempotency_key, config=cfg
    )
    cached = f", {answer.n_cached} already computed" if answer.n_cached else ""
    console.err.print(
        f"Submitted {answer.job_id}: {answer.n_tasks} tasks{cached} on {answer.bundle_ref}",
        highlight=False,
    )
    console.out.print(answer.job_id, highlight=False)
    if wait:
        _follow(answer.job_id, cfg, None)


def watch(
    job_id: str = typer.Argument(..., help="Job id printed by 'modelops submit'."),
    timeout: float | None = typer.Option(None, "--timeout", help="Stop watching after S seconds."),
) -> None:
    """Follow a job live: done, failed, rate, ETA. Exits 1 if any task failed."""
    _follow(job_id, _cfg(), timeout)


def jobs(limit: int = typer.Option(20, "--limit", "-n", help="Show at most N jobs.")) -> None:
    """List jobs, newest first, with their states and counts."""
    records = api.jobs(config=_cfg())
    if not records:
        console.out.print("No jobs yet. Submit one with 'modelops submit STUDY --bundle REF'.")
        return
    table = Table("state", "done/total", "failed", "cached", "study", "created (UTC)")
    table.columns.insert(0, Column("job", no_wrap=True, min_width=16))
    for r in records[:limit]:
        style = _STATE_STYLE.get(r.state, "")
        done = r.completed + r.failed + r.n_cached
        table.add_row(
            r.job_id,
            f"[{style}]{r.state}[/]",
            f"{done}/{r.n_tasks}",
            str(r.failed),
            str(r.n_cached),
            escape(r.study),
            r.created[5:19].replace("T", " "),
        )
    console.out.print(table)
    if len(records) > limit:
        console.err.print(f"({len(records) - limit} older jobs not shown; use --limit)")


def results(
    job_id: str = typer.Argument(..., help="A finished job."),
    output_file: Path = typer.Option(
        ..., "-o", "--output-file", help="File to write: *.parquet or *.csv."
    ),
    output: str | None = typer.Option(
        None, "--output", help="Which model output table (default: the model's first)."
    ),
) -> None:
    """Save a finished job's results table (task_id, param_id, parameters, seed, replicate,
    then the output's columns) as Parquet or CSV."""
    saved = api.save_results(job_id, output_file, output=output, config=_cfg())
    others = f"; other tables: {', '.join(saved.others)} (--output NAME)" if saved.others else ""
    console.err.print(
        f"Wrote {saved.rows} rows x {saved.columns} columns of output {saved.output!r} "
        f"of {job_id}{others}",
        highlight=False,
    )
    console.out.print(str(saved.path), highlight=False)


def cancel(
    job_id: str = typer.Argument(...),
    reason: str = typer.Option("cancelled by user", "--reason", help="Recorded with the job."),
) -> None:
    """Cancel a job: stop its runners and drop its queued tasks (finished results are kept)."""
    answer = api.cancel(job_id, reason=reason, config=_cfg())
    if isinstance(answer, JobCancelled):
        console.out.print(
            f"Cancelled {job_id} ({answer.purged_tasks} queued tasks dropped).", highlight=False
        )
    else:
        console.out.print(f"{job_id} already {answer.state}; nothing to cancel.", highlight=False)


def _failure_detail(f: TaskFailed) -> None:
    out = console.out
    out.print(f"[bold]task[/]      {f.task_id}")
    out.print(f"[bold]kind[/]      [red]{f.failure}[/]")
    if f.error_type:
        out.print(f"[bold]error[/]     {escape(f.error_type)}")
    out.print(f"[bold]message[/]   {escape(f.message)}")
    if f.exit_code is not None or f.signal is not None:
        out.print(f"[bold]exit[/]      code {f.exit_code}, signal {f.signal}")
    out.print(f"[bold]attempt[/]   {f.attempt} on runner {escape(f.runner_id or '?')}")
    for title, text in (("traceback (tail)", f.traceback_tail), ("stderr (tail)", f.stderr_tail)):
        if text:
            out.rule(title, style="dim")
            out.print(text.rstrip(), markup=False, highlight=False)


def logs(
    job_id: str = typer.Argument(...),
    task: str | None = typer.Argument(
        None, help="Task id, or a unique prefix of one; omit to list the failed tasks."
    ),
) -> None:
    """Why tasks failed: kind, error type, message, traceback and stderr tails."""
    failures = api.failures(job_id, config=_cfg())
    if task is None:
        if not failures:
            console.out.print(f"No failed tasks in {job_id}.")
            return
        table = Table("task", "kind", "error", "message")
        for f in failures:
            first = f.message.splitlines()[0] if f.message else ""
            table.add_row(f.task_id[:12], f.failure, escape(f.error_type), escape(first[:80]))
        console.out.print(table)
        console.err.print(f"Details of one: modelops logs {job_id} {failures[0].task_id[:12]}")
        return
    matches = [f for f in failures if f.task_id.startswith(task)]
    if len(matches) != 1:
        what = "no failed task" if not matches else f"{len(matches)} failed tasks"
        raise CliError(
            f"{what} of {job_id} match {task!r}",
            hint=f"list the failed tasks with 'modelops logs {job_id}'",
        )
    _failure_detail(matches[0])


def plot(
    job_id: str = typer.Argument(..., help="A finished job."),
    output_file: Path = typer.Option(..., "-o", "--output-file", help="PNG file to write."),
    output: str | None = typer.Option(None, "--output", help="Which model output table."),
    column: list[str] = typer.Option([], "--column", "-c", help="Output column(s) to plot."),
    sets: int = typer.Option(5, "--sets", help="Parameter sets to draw (time series)."),
) -> None:
    """Plot a finished job's results: median and 90% band over replicates for a time series,
    a scatter against each parameter for a scalar output."""
    from ..plotting import plot_table  # matplotlib is slow to import: only when plotting

    loaded = api.load_results(job_id, output=output, config=_cfg())
    report = plot_table(
        loaded.table,
        output_file,
        title=f"{job_id}: {loaded.output}",
        columns=column or None,
        max_sets=sets,
    )
    console.err.print(
        f"Plotted {report.kind} of {', '.join(report.columns)} "
        f"({report.parameter_sets} parameter sets) from output {loaded.output!r}",
        highlight=False,
    )
    console.out.print(str(report.path), highlight=False)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    for fn in (submit, watch, jobs, results, cancel, logs, plot):
        app.command(fn.__name__)(fn)
