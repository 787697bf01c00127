"""A job as `watch` sees it: a pure fold of the job's events into counts. No I/O, no clock.

The submitter's tracker is authoritative (JobProgress, JobCompleted); task events fill the
gaps between its rate-limited progress reports. Task ids go into sets, so a replayed or
redelivered event never counts twice, and a task counts once whatever its event order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modelops_contracts import (
    Event,
    JobCancelled,
    JobCompleted,
    JobProgress,
    JobRecord,
    JobSubmitted,
    TaskCompleted,
    TaskFailed,
)

__all__ = ["JobView", "ViewState"]

ViewState = Literal["submitted", "running", "completed", "cancelled", "failed"]


@dataclass
class JobView:
    """Counts of one job's tasks so far. `done` never exceeds `total` once total is known."""

    job_id: str
    state: ViewState = "submitted"
    total: int = 0
    cached_at_submit: int = 0
    progress_completed: int = 0
    progress_failed: int = 0
    progress_cached: int = 0
    final: JobCompleted | None = None
    cancel_reason: str = ""
    results_uri: str = ""
    completed_ids: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)
    failures: dict[str, TaskFailed] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: JobRecord) -> JobView:
        """Start from the jobs-KV record (what is known before any event is read)."""
        view = cls(job_id=record.job_id, total=record.n_tasks, cached_at_submit=record.n_cached)
        view.progress_completed, view.progress_failed = record.completed, record.failed
        view.progress_cached = record.n_cached
        view.results_uri = record.results_uri
        if record.state in ("running", "submitted"):
            view.state = record.state
        return view

    # ---------------------------------------------------------------- folding

    def apply(self, event: Event) -> None:
        """Fold one event of this job in (events of other jobs are ignored)."""
        if getattr(event, "job_id", None) != self.job_id:
            return
        match event:
            case JobSubmitted():
                self.total = max(self.total, event.n_tasks)
                self.cached_at_submit = max(self.cached_at_submit, event.n_cached)
                self._running()
            case JobProgress():
                self.total = max(self.total, event.total)
                self.progress_completed = max(self.progress_completed, event.completed)
                self.progress_failed = max(self.progress_failed, event.failed)
                self.progress_cached = max(self.progress_cached, event.cached)
                self._running()
            case TaskCompleted():
                if event.task_id not in self.failed_ids:  # first terminal event wins
                    self.completed_ids.add(event.task_id)
                self._running()
            case TaskFailed() if event.final:
                if event.task_id not in self.completed_ids:
                    self.failed_ids.add(event.task_id)
                    self.failures.setdefault(event.task_id, event)
                self._running()
            case JobCompleted():
                self.final = event
                self.total = event.total
                self.results_uri = event.results_uri or self.results_uri
                self.state = "completed"
            case JobCancelled():
                self.cancel_reason = event.reason
                self.state = "cancelled"

    def _running(self) -> None:
        if self.state == "submitted":
            self.state = "running"

    # ---------------------------------------------------------------- reading

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "cancelled", "failed")

    @property
    def failed(self) -> int:
        if self.final is not None:
            return self.final.failed
        return max(self.progress_failed, len(self.failed_ids))

    @property
    def cached(self) -> int:
        if self.final is not None:
            return self.final.cached
        return max(self.progress_cached, self.cached_at_submit)

    @property
    def done(self) -> int:
        """Tasks in a terminal state: completed, failed or cached."""
        if self.final is not None:
            return self.final.completed + self.final.failed + self.final.cached
        from_progress = self.progress_completed + self.progress_failed + self.progress_cached
        from_tasks = len(self.completed_ids) + len(self.failed_ids) + self.cached_at_submit
        done = max(from_progress, from_tasks)
        return min(done, self.total) if self.total else done

    @property
    def completed(self) -> int:
        """Tasks that ran (or were found cached) successfully."""
        return self.done - self.failed

    @property
    def ok(self) -> bool:
        """Finished with every task completed and nothing cancelled."""
        return self.state == "completed" and self.failed == 0

    def summary(self) -> str:
        """One line for the end of `watch`."""
        parts = [f"{self.done}/{self.total} tasks", f"{self.failed} failed"]
        if self.cached:
            parts.append(f"{self.cached} cached")
        return f"{self.job_id} {self.state}: " + ", ".join(parts)
