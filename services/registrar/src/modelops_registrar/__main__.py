"""`python -m modelops_registrar`: run the registrar until SIGTERM/SIGINT, then drain and exit 0.

Settings come from MODELOPS_* variables (see settings.py). A start-up failure a person can fix
(bad setting, NATS unreachable, unusable store) is one log line and exit code 1.
"""

from __future__ import annotations

import asyncio
import sys

from modelops_runtime.nats_setup import MessagingError
from modelops_runtime.service import run_main

from .app import serve
from .errors import RegistrarError
from .settings import Settings

__all__ = ["main"]


async def _serve(stop: asyncio.Event) -> None:
    await serve(Settings.from_env(), stop=stop)


def main() -> int:
    return run_main("registrar", _serve, fatal=(RegistrarError, MessagingError))


if __name__ == "__main__":
    sys.exit(main())
