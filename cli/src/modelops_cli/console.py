"""Terminal output for the CLI: one Rich console, one-line errors with hints.

Known errors (ModelOps errors carrying `hint`) print as `error: <message>` and `hint: <fix>`.
Anything else is a bug: it prints one line too, and the traceback with `--verbose`.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TextIO

from rich.console import Console

__all__ = ["err", "error", "is_verbose", "out", "report_exception", "set_verbose"]


def _width(stream: TextIO) -> int | None:
    """Rich's width, except that a pipe or file gets 120 columns instead of 80: tables of
    job ids and digests stay readable in logs (COLUMNS still wins)."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return 120


# soft_wrap: long lines (references, paths) stay whole, so they can be copied and grepped.
out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))
_verbose = False


def set_verbose(value: bool) -> None:
    global _verbose
    _verbose = value


def is_verbose() -> bool:
    return _verbose


def error(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    if hint:
        err.print(f"[yellow]hint:[/] {hint}", markup=True, soft_wrap=True)


def report_exception(exc: BaseException) -> int:
    """Print `exc` for a person and return the exit code to use."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", None)
    known = hint is not None or type(exc).__module__.startswith("modelops_")
    if not known:
        message = f"{type(exc).__name__}: {message}"
        hint = "this looks like a bug in modelops; rerun with --verbose and report the traceback"
    error(message, hint)
    if _verbose:
        err.print("".join(traceback.format_exception(exc)), markup=False)
    return getattr(exc, "exit_code", 1) or 1
