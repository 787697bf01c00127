"""The public Python API: submit a study, wait for it, get its results. The CLI uses it too.

::

    from modelops_cli import api
    from modelops_contracts.sampling import build_study, load_space

    study = build_study("model:StochasticSIR", load_space("parameters.yaml"), "lhs",
                        n=20, seed=1, n_replicates=5)
    job_id = api.submit(study, "sha256:…")          # a digest, full reference or tag
    view = api.wait(job_id)                           # view.ok, view.failed, ...
    table = api.results(job_id, output="summary")     # a pyarrow.Table

Every function takes an optional `config` (default: `load_config()` from the current folder:
flags are not involved, so `MODELOPS_*` variables, `modelops.toml` and a running `modelops up`
decide). Functions are synchronous; each opens and closes its own connection. Errors are
`modelops_cli.errors.CliError` (and the libraries' errors), each with a `hint`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from modelops_contracts import (
    JobCancelled,
    JobRecord,
    JobSubmitted,
    LaunchOptions,
    SimulationStudy,
    TaskFailed,
)
from modelops_runtime.blobstore import BlobStore

from .config import CliConfig, load_config
from .errors import JobUnsuccessful
from .jobclient import JobClient
from .jobstate import JobView
from .refs import resolve_bundle
from .results import (
    ResultsFile,
    locate_results,
    open_results_store,
    read_table,
    save_table,
)
from .studies import load_study

__all__ = [
    "LoadedResults",
    "SavedResults",
    "cancel",
    "failures",
    "jobs",
    "launch_options",
    "load_results",
    "raise_unless_ok",
    "resolve",
    "results",
    "save_results",
    "status",
    "submit",
    "submit_job",
    "wait",
]

T = TypeVar("T")


@dataclass(frozen=True)
class LoadedResults:
    """A results table in memory and which output it is."""

    output: str
    table: pa.Table
    others: tuple[str, ...]


@dataclass(frozen=True)
class SavedResults:
    """Where `save_results` wrote which table, and its size."""

    path: Path
    output: str
    rows: int
    columns: int
    others: tuple[str, ...]


def _config(config: CliConfig | None) -> CliConfig:
    return (config or load_config()).with_stack()


def resolve(bundle: str, *, config: CliConfig | None = None) -> str:
    """The bundle reference `bundle` (full ref, bare digest or tag) stands for here."""
    cfg = _config(config)
    return resolve_bundle(bundle, registry=cfg.registry, repository=cfg.repository)


def launch_options(
    *,
    runners: int = 1,
    workers: int = 0,
    task_timeout_s: float | None = None,
    max_retries: int | None = None,
) -> LaunchOptions:
    """LaunchOptions with the contract's defaults for whatever is not given."""
    defaults = LaunchOptions()
    return LaunchOptions(
        runners=runners,
        workers_per_runner=workers,
        task_timeout_s=task_timeout_s or defaults.task_timeout_s,
        max_retries=defaults.max_retries if max_retries is None else max_retries,
    )


def submit_job(
    study: SimulationStudy | str | Path,
    bundle: str,
    *,
    options: LaunchOptions | None = None,
    idempotency_key: str | None = None,
    timeout_s: float = 120.0,
    config: CliConfig | None = None,
) -> JobSubmitted:
    """Submit `study` (or a study file) on `bundle`; returns the submitter's JobSubmitted."""
    cfg = _config(config)
    if not isinstance(study, SimulationStudy):
        study = load_study(Path(study))
    ref = resolve_bundle(bundle, registry=cfg.registry, repository=cfg.repository)

    async def go() -> JobSubmitted:
        async with JobClient.open(cfg) as client:
            return await client.submit(
                study,
                ref,
                options=options or LaunchOptions(),
                idempotency_key=idempotency_key,
                timeout_s=timeout_s,
            )

    return asyncio.run(go())


def submit(
    study: SimulationStudy | str | Path,
    bundle: str,
    *,
    runners: int = 1,
    workers: int = 0,
    task_timeout_s: float | None = None,
    idempotency_key: str | None = None,
    config: CliConfig | None = None,
) -> str:
    """Submit `study` on `bundle` and return the job id."""
    options = launch_options(runners=runners, workers=workers, task_timeout_s=task_timeout_s)
    answer = submit_job(
        study, bundle, options=options, idempotency_key=idempotency_key, config=config
    )
    return answer.job_id


def wait(
    job_id: str,
    *,
    on_update: Callable[[JobView], None] | None = None,
    timeout_s: float | None = None,
    check: bool = False,
    config: CliConfig | None = None,
) -> JobView:
    """Follow the job until it finishes (or `timeout_s` passes); returns its final view.

    With `check=True`, raise JobUnsuccessful if any task failed or the job was cancelled.
    """
    cfg = _config(config)

    async def go() -> JobView:
        async with JobClient.open(cfg) as client:
            return await client.follow(job_id, on_update=on_update, timeout_s=timeout_s)

    view = asyncio.run(go())
    if check:
        raise_unless_ok(view)
    return view


def raise_unless_ok(view: JobView) -> None:
    """JobUnsuccessful for a job that did not finish with every task completed."""
    if view.ok:
        return
    if view.state == "cancelled":
        raise JobUnsuccessful(
            f"job {view.job_id} was cancelled ({view.done}/{view.total} tasks done)"
            + (f": {view.cancel_reason}" if view.cancel_reason else ""),
            hint="completed tasks are kept: resubmit the study to run only what is missing",
        )
    if not view.finished:
        raise JobUnsuccessful(
            f"job {view.job_id} is still {view.state} ({view.done}/{view.total} tasks done)",
            hint=f"keep following it with 'modelops watch {view.job_id}'",
        )
    if view.state != "completed":
        raise JobUnsuccessful(f"job {view.job_id} ended {view.state}")
    first = sorted(view.failed_ids)[:1]
    example = first[0][:12] if first else "TASK"
    raise JobUnsuccessful(
        f"{view.failed} of {view.total} tasks of job {view.job_id} failed",
        hint=f"see why with 'modelops logs {view.job_id}' "
        f"or 'modelops logs {view.job_id} {example}'",
    )


def status(job_id: str, *, config: CliConfig | None = None) -> JobRecord:
    """The job's record in the jobs KV (state and counts)."""
    cfg = _config(config)

    async def go() -> JobRecord:
        async with JobClient.open(cfg) as client:
            return await client.record(job_id)

    return asyncio.run(go())


def jobs(*, config: CliConfig | None = None) -> list[JobRecord]:
    """Every job the services know, newest first."""
    cfg = _config(config)

    async def go() -> list[JobRecord]:
        async with JobClient.open(cfg) as client:
            return await client.records()

    return asyncio.run(go())


def cancel(
    job_id: str, *, reason: str = "cancelled by user", config: CliConfig | None = None
) -> JobCancelled | JobRecord:
    """Cancel the job; returns JobCancelled, or the record if it had already finished."""
    cfg = _config(config)

    async def go() -> JobCancelled | JobRecord:
        async with JobClient.open(cfg) as client:
            record = await client.record(job_id)
            if record.terminal:
                return record
            return await client.cancel(job_id, reason=reason)

    return asyncio.run(go())


def failures(job_id: str, *, config: CliConfig | None = None) -> list[TaskFailed]:
    """The job's failed tasks (kind, error type, message, traceback and stderr tails)."""
    cfg = _config(config)

    async def go() -> list[TaskFailed]:
        async with JobClient.open(cfg) as client:
            return await client.failures(job_id)

    return asyncio.run(go())


async def _with_results(
    cfg: CliConfig,
    job_id: str,
    output: str | None,
    use: Callable[[BlobStore, ResultsFile], Awaitable[T]],
) -> T:
    """Look the job up, find its results table, and hand both to `use`."""
    async with JobClient.open(cfg) as client:
        record = await client.finished_record(job_id)
    async with open_results_store(cfg) as store:
        found = await locate_results(cfg, store, record, output)
        return await use(store, found)


def load_results(
    job_id: str, *, output: str | None = None, config: CliConfig | None = None
) -> LoadedResults:
    """The job's results table for `output` (default: the model's first output), with its name."""

    async def load(store: BlobStore, found: ResultsFile) -> LoadedResults:
        table = await read_table(store, found)
        return LoadedResults(output=found.output, table=table, others=found.others)

    return asyncio.run(_with_results(_config(config), job_id, output, load))


def results(job_id: str, *, output: str | None = None, config: CliConfig | None = None) -> pa.Table:
    """The job's results table for `output` (default: the model's first output) in memory."""
    return load_results(job_id, output=output, config=config).table


def save_results(
    job_id: str, path: str | Path, *, output: str | None = None, config: CliConfig | None = None
) -> SavedResults:
    """Write the job's results table to `path` (.parquet or .csv)."""
    dest = Path(path)

    async def save(store: BlobStore, found: ResultsFile) -> SavedResults:
        rows, columns = await save_table(store, found, dest)
        return SavedResults(
            path=dest, output=found.output, rows=rows, columns=columns, others=found.others
        )

    return asyncio.run(_with_results(_config(config), job_id, output, save))
