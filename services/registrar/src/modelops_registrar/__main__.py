"""`python -m modelops_registrar`: run the registrar until SIGTERM/SIGINT, then drain and exit 0.

Settings come from MODELOPS_* variables (see settings.py). A start-up failure a person can fix
(bad setting, NATS unreachable, unusable store) is one log line and exit code 1.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from modelops_runtime.logging import configure_logging
from modelops_runtime.nats_setup import MessagingError

from .app import serve
from .errors import RegistrarError
from .settings import Settings

log = structlog.get_logger(__name__)


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(Settings.from_env(), stop=stop)


def main() -> int:
    configure_logging("registrar")
    try:
        asyncio.run(_main())
    except (RegistrarError, MessagingError) as exc:
        log.error("registrar.start_failed", error=exc.message, hint=exc.hint)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
