"""`python -m modelops_bundler`: run the bundler until SIGTERM/SIGINT, then drain and exit 0.

Settings come from MODELOPS_* variables (see settings.py). A start-up failure a person can fix
(bad setting, NATS unreachable, unusable store) is one log line and exit code 1.
"""

from __future__ import annotations

import asyncio
import sys

from modelops_bundle.errors import BundleError
from modelops_runtime.nats_setup import MessagingError
from modelops_runtime.service import run_main

from .app import serve
from .errors import BundlerError
from .settings import Settings

__all__ = ["main"]


async def _serve(stop: asyncio.Event) -> None:
    await serve(Settings.from_env(), stop=stop)


def main() -> int:
    # BundleError: the store cannot be opened
    return run_main("bundler", _serve, fatal=(BundlerError, BundleError, MessagingError))


if __name__ == "__main__":
    sys.exit(main())
