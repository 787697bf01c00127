"""`python -m modelops_runner` / `modelops-runner`: run one job's tasks, configured by env.

Exit status: 0 when the job's queue is drained, the job was cancelled, or SIGTERM/SIGINT
asked it to stop (in-flight tasks finish or go back to the queue); 1 when its own
infrastructure failed (NATS, blob store, registry); 2 for a configuration error (missing
setting, bad job spec, unverifiable bundle) that a restart cannot fix.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import signal
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import structlog

from modelops_runtime.logging import configure_logging

from .bootstrap import serve
from .errors import ConfigError
from .settings import RunnerSettings

__all__ = ["hide_pandas", "main"]

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


class _PandasHidden(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (hidden from the runner's own process)",
                name=fullname,
            )
        return None


def hide_pandas() -> None:
    """Make this process behave as if pandas were not installed.

    The runner's own process converts only plain columns (a worker converts a model's pandas
    frames), but pyarrow imports pandas on its first conversion merely to check whether the
    input is a pandas object: ~0.25 s of CPU at every runner start, on the cores the workers
    start on. Workers are separate processes and keep pandas.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, _PandasHidden) for f in sys.meta_path):
        sys.meta_path.insert(0, _PandasHidden())


def main() -> int:
    """Console entry point; returns the exit status."""
    hide_pandas()
    configure_logging("runner", cache_loggers=True)
    try:
        settings = RunnerSettings.from_env()
    except ConfigError as exc:
        log.error("runner.config_error", error=exc.message, hint=exc.hint, exit_status=2)
        return exc.exit_status
    return asyncio.run(_serve_until_signalled(settings))


if __name__ == "__main__":
    raise SystemExit(main())
