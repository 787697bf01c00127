"""Showing a job's progress: a live Rich bar in a terminal, sparse plain lines otherwise.

The bar shows done/total, failed, rate and ETA. Rich estimates rate and ETA from the recent
updates, so a replayed finished job shows its counts without a misleading speed. When stderr is
not a terminal (CI, pipes) a plain line is printed at each tenth of the job, so logs stay short.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .jobstate import JobView

__all__ = ["JobProgressDisplay"]


class _RateColumn(ProgressColumn):
    """Tasks per second over Rich's recent samples."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f}/s" if speed else "-/s", style="cyan")


class JobProgressDisplay:
    """Context manager; call `update(view)` as events arrive."""

    def __init__(self, console: Console, job_id: str, *, live: bool | None = None) -> None:
        self.console = console
        self.job_id = job_id
        self.live = console.is_terminal if live is None else live
        self._progress: Progress | None = None
        self._task_id = None
        self._last_tenth = -1

    def __enter__(self) -> Self:
        if self.live:
            # Fits 80 columns: elapsed time is in the summary line printed at the end.
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("[red]{task.fields[failed]} failed"),
                _RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(compact=True),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task_id = self._progress.add_task(self.job_id, total=None, failed=0)
        return self

    def update(self, view: JobView) -> None:
        if self._progress is not None and self._task_id is not None:
            self._progress.update(
                self._task_id,
                total=view.total or None,
                completed=view.done,
                failed=view.failed,
                description=self.job_id,
            )
            return
        if view.total:
            tenth = (10 * view.done) // view.total
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self.console.print(
                    f"{self.job_id}: {view.done}/{view.total} tasks done, {view.failed} failed",
                    highlight=False,
                )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
