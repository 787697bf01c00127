"""CLI commands for the embedded stack: `up` (foreground or --detach) and `down`."""

from __future__ import annotations

import os

import typer

from modelops_runtime.logging import configure_logging

from .. import console
from ..config import CliConfig, StackInfo, load_config
from ..errors import ConfigError
from ..stack import READY_TIMEOUT_S, STOP_TIMEOUT_S, run_stack, start_detached, stop_stack

__all__ = ["register"]


def _describe(info: StackInfo, cfg: CliConfig, *, detached: bool) -> None:
    out = console.out
    out.print(f"[bold green]ModelOps stack is up[/] (pid {info.pid}, home {cfg.home})")
    out.print(f"  NATS     {info.nats_url}")
    out.print(f"  bundles  {info.bundle_store}")
    out.print(f"  blobs    {info.blob_store}")
    out.print(f"  logs     {cfg.home / 'logs'}")
    if detached:
        out.print("Stop it with 'modelops down'.")
    else:
        out.print("Press Ctrl-C to stop it (or run 'modelops down').")


def up(
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Run in the background and return once it is ready."
    ),
    timeout: float = typer.Option(
        READY_TIMEOUT_S, "--timeout", help="Seconds to wait for the stack to be ready."
    ),
) -> None:
    """Start the embedded stack: nats-server, registrar, bundler and submitter, state in .modelops/.

    A second `up` while one runs does nothing. The JetStream store, bundles and blobs stay
    in .modelops/ between runs.
    """
    cfg = load_config()
    if cfg.nats_url:
        raise ConfigError(
            f"nats_url is configured ({cfg.sources.get('nats_url')}: {cfg.nats_url}), "
            "so commands use that deployment, not an embedded stack",
            hint="unset MODELOPS_NATS_URL (or nats_url in modelops.toml) to use 'modelops up'",
        )
    running = cfg.stack()
    if running is not None:
        console.out.print(
            f"The stack is already running (pid {running.pid}, {running.nats_url}); nothing to do."
        )
        return
    if detach:
        info = start_detached(cfg, timeout_s=timeout)
        _describe(info, cfg, detached=True)
        return
    # This process now runs services: log like one (JSON unless stderr is a terminal).
    level = os.environ.get("MODELOPS_LOG_LEVEL") or ("DEBUG" if console.is_verbose() else "INFO")
    configure_logging("stack", level=level)
    run_stack(cfg, on_ready=lambda info: _describe(info, cfg, detached=False))
    console.out.print("ModelOps stack stopped.")


def down(
    timeout: float = typer.Option(
        STOP_TIMEOUT_S, "--timeout", help="Seconds to wait before killing it."
    ),
) -> None:
    """Stop the embedded stack started by 'modelops up' here (its state stays in .modelops/)."""
    cfg = load_config()
    info = stop_stack(cfg, timeout_s=timeout)
    if info is None:
        console.out.print(f"No stack is running in {cfg.home}; nothing to stop.")
        return
    console.out.print(f"Stopped the stack (pid {info.pid}).")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.command("up")(up)
    app.command("down")(down)
