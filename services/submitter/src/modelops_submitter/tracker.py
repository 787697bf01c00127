"""The tracker: a pure fold of task events into one job's state.

Each task is counted once, whatever the redeliveries and duplicates: the state is a map from
task id to its first terminal outcome. A `TaskFailed(final=False)` is not terminal (the task
will be retried); after a terminal event, any later one for the same task can only be a
redelivery or a stale attempt, so the first terminal event wins. Events naming a task that is
not part of the job (or was cached at submit and never enqueued) are ignored.

No I/O and no clock of its own: callers pass `now`, so tests drive time by hand.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from modelops_contracts import JobCompleted, JobProgress, TaskCompleted, TaskFailed

__all__ = ["JobTracker", "Outcome", "TaskStatus"]

TaskStatus = Literal["completed", "failed", "cached"]
_MESSAGE_LIMIT = 2000  # a failure message kept per task; tracebacks stay in the event stream


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one task ended. `outputs` are the names of the outputs it stored."""

    status: TaskStatus
    outputs: tuple[str, ...] = ()
    wall_s: float = 0.0
    failure: str = ""
    message: str = ""


_PENDING, _COMPLETED, _FAILED, _CACHED = 0, 1, 2, 3
_STATUS: dict[int, TaskStatus] = {_COMPLETED: "completed", _FAILED: "failed", _CACHED: "cached"}


_ID_DTYPE = "S33"


def _key(task_id: str) -> bytes:
    """The 32 bytes of a hex task id plus a 0x01 end byte: numpy's fixed-width bytes drop
    trailing NULs, which would lose the last byte of the one id in 256 that ends in 00."""
    try:
        raw = bytes.fromhex(task_id)
    except ValueError:
        return b""  # not a task id at all: matches nothing
    return raw + b"\x01" if len(raw) == 32 else b""


class JobTracker:
    """Counts of one job's tasks, and when to report them.

    `expected` are the task ids enqueued for runners; `cached` the ids found already done at
    submit (with the outputs they stored), which count as cached from the start.

    State lives in flat arrays (sorted 32-byte ids, a status byte, wall time and an output-set
    index per task) rather than a Python object per task: 100k tasks take ~5 MB, and no
    long-lived small objects pin the memory the submit freed (fragmentation kept the RSS of a
    dict-based tracker near the submit's peak).
    """

    def __init__(
        self,
        job_id: str,
        *,
        expected: Iterable[str],
        cached: Mapping[str, Iterable[str]] | None = None,
        correlation_id: str = "",
        started: float = 0.0,
        progress_interval_s: float = 0.5,
    ) -> None:
        self.job_id = job_id
        self.correlation_id = correlation_id or job_id
        self.started = started
        self.progress_interval_s = progress_interval_s
        cached = cached or {}
        self._shapes: list[tuple[str, ...]] = [()]
        self._shape_index: dict[tuple[str, ...], int] = {(): 0}
        ids = np.fromiter((_key(t) for t in itertools.chain(expected, cached)), dtype=_ID_DTYPE)
        ids = np.unique(ids)  # sorted; an id given twice is one task
        if len(ids) and ids[0] == b"":  # sorts first
            raise ValueError(f"job {job_id}: a task id is not 64 hex digits")
        self._ids = ids
        self._status = np.zeros(len(ids), dtype=np.int8)
        self._wall = np.zeros(len(ids), dtype=np.float32)
        self._shape = np.zeros(len(ids), dtype=np.int16)
        self._failures: dict[int, tuple[str, str]] = {}
        self.n_cached_at_submit = 0
        for task_id, outputs in cached.items():
            i = self._find(task_id)
            if i is not None and self._status[i] == _PENDING:
                self._status[i] = _CACHED
                self._shape[i] = self._shape_of(outputs)
                self.n_cached_at_submit += 1
        self.completed = 0
        self.failed = 0
        self.cached = self.n_cached_at_submit
        self._pending = len(ids) - self.n_cached_at_submit
        self._last_progress: float | None = None
        self._dirty = False

    # ---------------------------------------------------------------- folding

    @property
    def total(self) -> int:
        return len(self._ids)

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def done(self) -> bool:
        """Every task has a terminal outcome."""
        return self._pending == 0

    def _find(self, task_id: str) -> int | None:
        key = _key(task_id)
        if not key:
            return None
        i = int(np.searchsorted(self._ids, key))
        return i if i < len(self._ids) and self._ids[i] == key else None

    def _shape_of(self, outputs: Iterable[str]) -> int:
        """Index of one shared tuple per distinct set of output names (a few per job)."""
        key = tuple(sorted(outputs))
        index = self._shape_index.get(key)
        if index is None:
            index = self._shape_index[key] = len(self._shapes)
            self._shapes.append(key)
        return index

    def apply(self, event: TaskCompleted | TaskFailed) -> bool:
        """Fold one event; True if it changed the job's counts."""
        if event.job_id != self.job_id:
            return False
        i = self._find(event.task_id)
        if i is None or self._status[i] != _PENDING:
            return False  # not ours, or the first terminal event already won
        if isinstance(event, TaskCompleted):
            self._shape[i] = self._shape_of(event.outputs)
            if event.cached:
                self._status[i] = _CACHED
                self.cached += 1
            else:
                self._status[i] = _COMPLETED
                self._wall[i] = event.metrics.wall_s
                self.completed += 1
        else:
            if not event.final:
                return False  # it will be retried: not terminal
            self._status[i] = _FAILED
            self._failures[i] = (event.failure, event.message[:_MESSAGE_LIMIT])
            self.failed += 1
        self._pending -= 1
        self._dirty = True
        return True

    def outcome(self, task_id: str) -> Outcome | None:
        """The terminal outcome of a task (None while it is pending or unknown)."""
        i = self._find(task_id)
        if i is None or self._status[i] == _PENDING:
            return None
        status = _STATUS[int(self._status[i])]
        if status == "failed":
            failure, message = self._failures[i]
            return Outcome(status="failed", failure=failure, message=message)
        return Outcome(
            status=status,
            outputs=self._shapes[int(self._shape[i])],
            wall_s=float(self._wall[i]) if status == "completed" else 0.0,
        )

    def output_names(self) -> list[str]:
        """Every output name any task stored, sorted."""
        return sorted({name for names in self._shapes for name in names})

    # ---------------------------------------------------------------- reporting

    def rate(self, now: float) -> float:
        """Tasks run to an end per second since tracking started (cached ones excluded)."""
        elapsed = now - self.started
        ran = self.completed + self.failed + (self.cached - self.n_cached_at_submit)
        return ran / elapsed if elapsed > 0 else 0.0

    def progress(self, now: float) -> JobProgress:
        return JobProgress(
            correlation_id=self.correlation_id,
            job_id=self.job_id,
            total=self.total,
            completed=self.completed,
            failed=self.failed,
            cached=self.cached,
            rate_per_s=round(self.rate(now), 3),
        )

    def progress_due(self, now: float) -> JobProgress | None:
        """A JobProgress if something changed and the last one is at least an interval old.

        Callers ask after each batch of events and on a timer, so a quiet spell still gets its
        last change reported, and a busy job reports at most once per interval.
        """
        if not self._dirty or self.done:
            return None
        if self._last_progress is not None and now - self._last_progress < self.progress_interval_s:
            return None
        self._last_progress = now
        self._dirty = False
        return self.progress(now)

    def completion(self, now: float, *, results_uri: str = "") -> JobCompleted:
        """The JobCompleted event (only meaningful once `done`). Its id is fixed per job so a
        re-publish after a crash is stored once by JetStream's duplicate window."""
        return JobCompleted(
            id=f"{self.job_id}:completed",
            correlation_id=self.correlation_id,
            job_id=self.job_id,
            total=self.total,
            completed=self.completed,
            failed=self.failed,
            cached=self.cached,
            results_uri=results_uri,
            duration_s=round(max(0.0, now - self.started), 3),
        )
