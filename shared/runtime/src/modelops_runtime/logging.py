"""structlog set-up shared by every service, the runner and the CLI.

Context (`correlation_id`, `job_id`, `task_id`) is bound with `structlog.contextvars` when a
handler starts, so every line a handler logs carries it. Output is JSON when deployed (not a
terminal, or MODELOPS_LOG_FORMAT=json) and a console renderer in a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

import structlog

__all__ = ["configure_logging"]

LogFormat = Literal["json", "console", "auto"]


def configure_logging(
    service: str,
    *,
    level: str | None = None,
    fmt: LogFormat | None = None,
    stream=None,
    cache_loggers: bool = False,
) -> None:
    """Configure structlog (and stdlib logging, for library messages) for one process.

    `cache_loggers`: each module's logger binds once, at its first line, instead of at every
    line (a logger proxy rebinds per call otherwise: ~15 us, which the runner pays per task).
    Only for processes that configure logging once; tests that reconfigure need it off.
    """
    stream = stream or sys.stderr
    level_name = (level or os.environ.get("MODELOPS_LOG_LEVEL", "INFO")).upper()
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    fmt = fmt or os.environ.get("MODELOPS_LOG_FORMAT", "auto")  # type: ignore[assignment]
    use_json = fmt == "json" or (fmt == "auto" and not getattr(stream, "isatty", lambda: False)())

    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if use_json
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=cache_loggers,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=stream, force=True)
