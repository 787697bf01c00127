"""`python -m modelops_runner` / `modelops-runner`: run one job's tasks, configured by env.

Exit status: 0 when the job's queue is drained, the job was cancelled, or SIGTERM/SIGINT
asked it to stop (in-flight tasks finish or go back to the queue); 1 when its own
infrastructure failed (NATS, blob store, registry); 2 for a configuration error (missing
setting, bad job spec, unverifiable bundle) that a restart cannot fix.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from modelops_runtime.logging import configure_logging

from .bootstrap import serve
from .errors import ConfigError
from .settings import RunnerSettings

__all__ = ["main"]

log = structlog.get_logger(__name__)


async def _serve_until_signalled(settings: RunnerSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await serve(settings, stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main() -> int:
    """Console entry point; returns the exit status."""
    configure_logging("runner")
    try:
        settings = RunnerSettings.from_env()
    except ConfigError as exc:
        log.error("runner.config_error", error=exc.message, hint=exc.hint, exit_status=2)
        return exc.exit_status
    return asyncio.run(_serve_until_signalled(settings))


if __name__ == "__main__":
    raise SystemExit(main())
