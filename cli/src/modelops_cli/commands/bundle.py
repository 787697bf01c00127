"""CLI commands: bundle (placeholder until its owner fills it in)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
