"""CLI commands for models and bundles: `register-model`, `status`, `build [--push]`.

They work on the project folder alone (registry.yaml, blobs pushed to the configured store)
and, when a stack is configured (MODELOPS_NATS_URL, modelops.toml or a running `modelops up`),
also through the services: register-model announces the model to the registrar, and build
asks the bundler to write the bundle, waiting for its answer. With no stack, build composes
and pushes the bundle itself with the same library code.

`build --push` prints the bundle reference alone on the last line of stdout; everything else
(progress, summaries) goes to stderr, so `ref=$(modelops build --push)` works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelops_bundle.errors import FilesChanged
from modelops_bundle.oci import compose_bundle
from modelops_bundle.push import UploadReport, publish_bundle, upload_missing_blobs
from modelops_bundle.pushes import latest_push, record_push
from modelops_bundle.registration import Registration, register_model
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.status import ModelStatus, check_unchanged, model_status
from modelops_bundle.stores import BundleStore, open_store
from modelops_bundle.stores.base import check_repository, check_tag, run_concurrently
from modelops_contracts import (
    BuildBundle,
    BundleFailed,
    BundlePushed,
    Command,
    CommandRejected,
    Event,
    ModelEntry,
    ModelRegistered,
    RegisterModel,
    Registry,
)
from modelops_contracts.messages import new_message_id
from modelops_runtime.logging import configure_logging

from .. import console
from ..bus import request
from ..config import CliConfig, load_config
from ..errors import CliError, CommandRefused

__all__ = ["CommandFailed", "register"]

log = structlog.get_logger(__name__)

_STATE_STYLE = {"current": "green", "modified": "yellow", "missing": "red"}
_PUSH_TEXT = {
    "pushed": "[green]in the latest pushed bundle[/]",
    "changed": "[yellow]changed since the latest pushed bundle[/]",
    "not_pushed": "[yellow]not in the latest pushed bundle[/]",
    "unknown": "[dim]no bundle pushed from here yet[/]",
}


class CommandFailed(CliError):
    """A bundle command could not do what was asked; printed as one line plus a hint."""


# ------------------------------------------------------------------------------ context


@dataclass(frozen=True)
class _Context:
    """Resolved configuration of one command run."""

    cfg: CliConfig
    nats_url: str | None  # None: no stack, work on the project alone
    store_location: str

    @property
    def root(self) -> Path:
        return self.cfg.project_root


def _context(*, registry: str | None = None, repository: str | None = None) -> _Context:
    """Config from flags, env, modelops.toml and a running embedded stack, in that order."""
    _quiet_logs()
    cfg = load_config().with_overrides(registry=registry, repository=repository).with_stack()
    return _Context(cfg=cfg, nats_url=cfg.nats_url, store_location=cfg.registry)


def _quiet_logs() -> None:
    """Library logs go to stderr, errors only unless --verbose: stdout is for results, and a
    failure must read as one line (the registry store logs each retry as a warning)."""
    configure_logging("cli", level="DEBUG" if console.is_verbose() else "ERROR", fmt="console")


def _project_name(registry: Registry, ctx: _Context) -> str:
    """The project's name on the bus: registry.yaml's `project` if set, else the repository
    (which defaults to the folder name), so two projects on one stack do not share a registry."""
    return registry.project if registry.project != "default" else ctx.cfg.repository


def _ask(
    ctx: _Context,
    command: Command,
    answers: tuple[type, ...],
    timeout: float,
    accept: Callable[[Event], bool] | None = None,
) -> Event:
    assert ctx.nats_url is not None
    return asyncio.run(
        request(
            ctx.nats_url,
            command,
            answers=answers,
            timeout=timeout,
            credentials=ctx.cfg.nats_creds,
            accept=accept,
        )
    )


def _rejected(event: CommandRejected, what: str) -> CommandRefused:
    field = f" (field {event.field})" if event.field else ""
    return CommandRefused(
        f"{what} was rejected{field}: {event.reason}", field=event.field, hint=event.hint
    )


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------------ register-model


def _announce(ctx: _Context, registry: Registry, entry: ModelEntry, timeout: float) -> int:
    """Tell the registrar about `entry`; returns the registry revision it answered with."""
    cmd = RegisterModel(
        correlation_id=new_message_id(),
        project=_project_name(registry, ctx),
        model=entry,
    )
    answer = _ask(
        ctx,
        cmd,
        (ModelRegistered, CommandRejected),
        timeout,
        accept=lambda e: not isinstance(e, ModelRegistered) or e.model.id == entry.id,
    )
    if isinstance(answer, CommandRejected):
        raise _rejected(answer, f"registration of {entry.id!r} by the registrar")
    assert isinstance(answer, ModelRegistered)
    return answer.revision


def _print_registration(reg: Registration) -> None:
    entry = reg.entry
    out = console.out
    out.print(
        f"[bold]{entry.id}[/] ({entry.entrypoint}) {entry.digest}",
        markup=True,
        soft_wrap=True,
    )
    out.print(
        f"  {len(entry.code)} code file(s), {len(entry.data)} data file(s), "
        f"{_human_size(reg.bytes)}; hashed {reg.hashed}, cached {reg.cached}; "
        + ("registry.yaml updated" if reg.changed else "registry.yaml unchanged"),
        soft_wrap=True,
    )
    if entry.outputs or entry.scenarios or entry.parameters:
        out.print(
            f"  outputs: {', '.join(entry.outputs) or '-'}; "
            f"scenarios: {', '.join(entry.scenarios) or '-'}; "
            f"parameters: {', '.join(entry.parameters) or '-'}",
            soft_wrap=True,
        )
    if reg.also_updated:
        out.print(
            f"  [yellow]shared files changed, so these models took new digests too:[/] "
            f"{', '.join(reg.also_updated)}",
            markup=True,
            soft_wrap=True,
        )
    for warning in reg.warnings:
        console.err.print(f"[yellow]warning:[/] {warning}", markup=True, soft_wrap=True)


def register_model_cmd(
    entrypoint: str = typer.Argument(
        ..., help="The model class as module:Class, e.g. model:StochasticSIR."
    ),
    path: Path = typer.Option(..., "--path", help="The Python file defining the class."),
    data: list[Path] = typer.Option([], "--data", help="A data file or folder (repeatable)."),
    code: list[Path] = typer.Option(
        [], "--code", help="Extra code file or folder the import scan cannot see (repeatable)."
    ),
    model_id: str | None = typer.Option(None, "--id", help="Model id (default: the class name)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the registrar."),
) -> None:
    """Record a model's code and data files by content digest in .modelops-bundle/registry.yaml.

    The model file is read, never imported; its local imports are followed and tracked as
    code. With a stack configured, the registrar records the model too.
    """
    ctx = _context()
    reg = register_model(
        ctx.root, entrypoint, path, data=data, code=code, model_id=model_id, base=Path.cwd()
    )
    _print_registration(reg)
    if ctx.nats_url:
        registry = load_registry(ctx.root)
        for mid in (reg.entry.id, *reg.also_updated):
            revision = _announce(ctx, registry, registry.models[mid], timeout)
            console.out.print(f"  registrar: {mid} recorded at revision {revision}", soft_wrap=True)


# -------------------------------------------------------------------------------- status


def _model_table(model: ModelStatus) -> Table:
    table = Table(
        title=f"{model.id}  ({model.entrypoint})",
        title_justify="left",
    )
    table.add_column("file", overflow="fold")
    table.add_column("kind")
    table.add_column("state")
    for f in model.files:
        style = _STATE_STYLE[f.state]
        table.add_row(f.path, f.kind, f"[{style}]{f.state}[/]")
    for path in model.untracked:
        table.add_row(path, "data", "[dim]untracked[/]")
    return table


def status_cmd() -> None:
    """Show, per registered model, whether each tracked file is current, modified or missing,
    and whether the registered version is in the latest pushed bundle. Works offline."""
    ctx = _context()
    pushed = latest_push(ctx.root)
    report = model_status(ctx.root, latest_bundle=pushed.models if pushed else None)
    if not report.models:
        console.out.print(f"no models registered in {ctx.root}", soft_wrap=True)
        console.out.print(
            "hint: modelops-bundle register-model module:Class --path FILE [--data PATH]",
            soft_wrap=True,
        )
        return
    for model in report.models:
        console.out.print(_model_table(model))
        console.out.print(
            f"registered version {model.digest[:19]}…: {_PUSH_TEXT[model.pushed]}",
            markup=True,
            soft_wrap=True,
        )
        for warning in model.warnings:
            console.err.print(f"[yellow]warning:[/] {warning}", markup=True, soft_wrap=True)
    if pushed:
        console.out.print(f"latest push: {pushed.bundle_ref} ({pushed.pushed_at})", soft_wrap=True)
    if not report.clean:
        console.out.print(
            "files changed since registration: re-register the model(s) before building",
            soft_wrap=True,
        )


# --------------------------------------------------------------------------------- build


def _changed_files(exc: FilesChanged) -> CommandFailed:
    listing = "\n".join(f"  {path}  ({state})" for path, state in exc.files)
    return CommandFailed(
        f"{len(exc.files)} tracked file(s) changed since registration:\n{listing}",
        hint="re-register with 'modelops-bundle register-model', or pass --reregister",
    )


def _reregister(ctx: _Context, registry: Registry, changed: set[str]) -> list[Registration]:
    """Register again every model tracking a changed file, with the files it tracks that
    still exist (a deleted data file leaves the model)."""
    done = []
    for mid, entry in sorted(registry.models.items()):
        if not any(f.path in changed for f in entry.files):
            continue
        keep = [f.path for f in entry.files if (ctx.root / f.path).is_file()]
        dropped = sorted({f.path for f in entry.files} - set(keep))
        if dropped:
            console.err.print(
                f"{mid}: no longer tracking {', '.join(dropped)} (missing)", soft_wrap=True
            )
        data = [p for p in keep if p in {f.path for f in entry.data}]
        code = [p for p in keep if p in {f.path for f in entry.code} and p != entry.path]
        done.append(
            register_model(
                ctx.root,
                entry.entrypoint,
                entry.path,
                data=data,
                code=code,
                model_id=mid,
                base=ctx.root,
            )
        )
        console.err.print(f"re-registered {mid}: {done[-1].entry.digest}", soft_wrap=True)
    return done


def _registry_to_build(ctx: _Context, reregister: bool, timeout: float) -> Registry:
    """registry.yaml, refusing (or, with --reregister, re-registering) changed files."""
    registry = load_registry(ctx.root)
    if not registry.models:
        raise CommandFailed(
            f"no models registered in {ctx.root}",
            hint="register one: modelops-bundle register-model module:Class --path FILE",
        )
    try:
        check_unchanged(ctx.root, registry)
        return registry
    except FilesChanged as exc:
        if not reregister:
            raise _changed_files(exc) from exc
        changed = {path for path, _ in exc.files}
    registrations = _reregister(ctx, registry, changed)
    registry = load_registry(ctx.root)
    check_unchanged(ctx.root, registry)
    if ctx.nats_url:
        ids = {mid for r in registrations for mid in (r.entry.id, *r.also_updated)}
        for mid in sorted(ids):
            _announce(ctx, registry, registry.models[mid], timeout)
    return registry


class _Prechecked:
    """A store whose blob_exists answers from a check made just before the upload, so each
    blob is HEADed once while the progress bar still knows the total to send in advance."""

    def __init__(self, store: BundleStore, present: set[str]) -> None:
        self._store = store
        self._present = present

    def blob_exists(self, repository: str, digest: str) -> bool:
        return digest in self._present

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _upload(
    ctx: _Context, registry: Registry, store: BundleStore, repository: str, concurrency: int
) -> UploadReport:
    """Upload the file blobs the store lacks, with a progress bar on stderr."""
    sizes = {f.digest: f.size for f in registry.files().values()}
    digests = sorted(sizes)
    exists = run_concurrently(lambda d: store.blob_exists(repository, d), digests, concurrency)
    present = {d for d, ok in zip(digests, exists, strict=True) if ok}
    to_send = sum(size for d, size in sizes.items() if d not in present)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console.err,
        transient=True,
    ) as progress:
        task = progress.add_task(
            f"uploading {len(digests) - len(present)} of {len(digests)} blobs", total=to_send
        )
        report = upload_missing_blobs(
            ctx.root,
            registry,
            _Prechecked(store, present),  # type: ignore[arg-type]
            repository=repository,
            concurrency=concurrency,
            progress=lambda n: progress.advance(task, n),
        )
    console.err.print(
        f"uploaded {len(report.uploaded)} blob(s) ({_human_size(report.bytes_sent)}), "
        f"{len(report.skipped)} already in {ctx.store_location}",
        soft_wrap=True,
    )
    return report


def _publish_via_bus(
    ctx: _Context, registry: Registry, repository: str, tag: str | None, timeout: float
) -> tuple[str, dict[str, str]]:
    cmd = BuildBundle(
        correlation_id=new_message_id(),
        project=_project_name(registry, ctx),
        repository=repository,
        registry=registry,
        tag=tag,
    )
    answer = _ask(ctx, cmd, (BundlePushed, BundleFailed, CommandRejected), timeout)
    if isinstance(answer, CommandRejected):
        raise _rejected(answer, "the build")
    if isinstance(answer, BundleFailed):
        hint = None
        if answer.missing_blobs:
            hint = (
                f"the bundler's store (MODELOPS_BUNDLE_STORE) must be the one uploaded to "
                f"({ctx.store_location}); set --registry / MODELOPS_REGISTRY to match"
            )
        raise CommandFailed(f"the bundler could not build the bundle: {answer.reason}", hint=hint)
    assert isinstance(answer, BundlePushed)
    return answer.bundle_ref, dict(answer.models)


def build_cmd(
    push: bool = typer.Option(False, "--push", help="Upload the blobs and push the bundle."),
    tag: str | None = typer.Option(None, "--tag", help="Tag to set as well (default: latest)."),
    registry: str | None = typer.Option(
        None, "--registry", help="OCI registry host[:port] or oci-layout:PATH (default: config)."
    ),
    repository: str | None = typer.Option(
        None,
        "--repository",
        help="Repository in the registry (default: the project folder's name).",
    ),
    reregister: bool = typer.Option(
        False, "--reregister", help="Re-register models whose files changed instead of refusing."
    ),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Parallel uploads."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the bundler."),
) -> None:
    """Build the bundle of the registered models; with --push, upload and push it and print
    its reference (host/repo@sha256:...) alone on the last line of stdout."""
    ctx = _context(registry=registry, repository=repository)
    repo = check_repository(ctx.cfg.repository)  # refuse bad names before any upload
    if tag is not None:
        check_tag(tag)
    reg = _registry_to_build(ctx, reregister, timeout)
    if not push:
        composed = compose_bundle(reg, registry_yaml=dump_registry(reg))
        console.err.print(
            f"bundle of {len(reg.models)} model(s), {len(composed.layers)} file(s); "
            "not pushed (add --push)",
            soft_wrap=True,
        )
        typer.echo(composed.manifest_digest)
        return
    store = open_store(ctx.store_location)
    try:
        _upload(ctx, reg, store, repo, concurrency)
        if ctx.nats_url:
            ref, models = _publish_via_bus(ctx, reg, repo, tag, timeout)
        else:
            published = publish_bundle(
                reg, store, repository=repo, tag=tag, registry_yaml=dump_registry(reg)
            )
            ref, models = published.bundle_ref, published.models
    finally:
        store.close()
    record_push(ctx.root, ref, models)
    console.err.print(
        f"pushed {len(models)} model(s) as {tag or 'latest'}"
        + (" through the bundler" if ctx.nats_url else ""),
        soft_wrap=True,
    )
    typer.echo(ref)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.command("register-model")(register_model_cmd)
    app.command("status")(status_cmd)
    app.command("build")(build_cmd)
