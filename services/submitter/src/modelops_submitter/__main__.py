"""`python -m modelops_submitter`: run the submitter until SIGTERM/SIGINT, then exit 0."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from modelops_runtime.logging import configure_logging
from modelops_runtime.nats_setup import MessagingError

from .app import serve
from .errors import ConfigError
from .memory import tune_allocator
from .settings import Settings

__all__ = ["main"]

log = structlog.get_logger(__name__)


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop=stop)


def main() -> int:
    configure_logging("submitter")
    tune_allocator()  # process-wide, so here at the entry point (see memory.py)
    try:
        settings = Settings.from_env()
        asyncio.run(_run(settings))
    except (ConfigError, MessagingError) as exc:
        log.error("submitter.cannot_start", error=str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
