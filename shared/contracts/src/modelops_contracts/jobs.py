"""Job records and specs: what the submitter stores and what runners read.

`JobSpec` is the small document a runner needs (bundle, queue, options), kept apart from the
full `SimJob` (every task) so that a runner never downloads a large job just to start.
`JobRecord` is the job's entry in the jobs KV bucket, which `modelops jobs` lists.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .domain import BundleRefStr, JobId
from .messages import LaunchOptions

__all__ = [
    "STORE_BATCH_TASKS",
    "JobRecord",
    "JobSpec",
    "JobState",
    "blob_keys",
    "runner_held_limit",
]

JobState = Literal["submitted", "running", "completed", "cancelled", "failed"]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "cancelled", "failed"})

STORE_BATCH_TASKS = 64
"""Finished tasks a runner stores and reports together at most (one put per stage, one wait
for their PubAcks): past ~50 a bigger batch saves little more per task."""


def runner_held_limit(workers: int) -> int:
    """Task messages one runner with `workers` workers holds unacknowledged at most.

    For each worker one running task and, when tasks are short, about a quarter second of
    work ahead (8 per worker + 32 in all), plus a batch of finished tasks waiting to be
    stored and reported together. The submitter sizes a job's max_ack_pending from it, and
    the runner fetches within it, so the two agree on what one runner may hold.
    """
    return 8 * workers + 32 + STORE_BATCH_TASKS


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What every runner of a job reads first (at `jobs/<job_id>/spec.json`)."""

    job_id: JobId
    bundle_ref: BundleRefStr
    entrypoints: list[str]
    n_tasks: int
    task_subject: str
    consumer: str
    options: LaunchOptions = LaunchOptions()
    job_uri: str = ""  # the full SimJob, for traceability
    # Runners are launched while the submitter still queues tasks (their start-up overlaps the
    # enqueue), so an empty queue does not yet mean "done": the submitter writes this blob once
    # every task message is queued, and a runner leaves an empty queue only after seeing it.
    # Empty: every task was queued before the runners started.
    enqueued_marker: str = ""


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A job as the submitter tracks it (KV_JOBS, key = job_id)."""

    job_id: JobId
    state: JobState
    bundle_ref: BundleRefStr
    n_tasks: int
    created: str
    updated: str
    study: str = ""
    n_cached: int = 0
    completed: int = 0
    failed: int = 0
    spec_uri: str = ""
    results_uri: str = ""
    launcher: str = ""
    correlation_id: str = ""
    idempotency_key: str | None = None
    events_start_seq: int = 0  # first EVENTS stream sequence of this job: replay starts here
    reason: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class blob_keys:  # lowercase on purpose: a namespace of key builders, blob_keys.result_done(...)
    """Blob store layout. Results are keyed by task_id alone, so any job reuses them."""

    @staticmethod
    def job_spec(job_id: str) -> str:
        return f"jobs/{job_id}/spec.json"

    @staticmethod
    def job_tasks(job_id: str) -> str:
        return f"jobs/{job_id}/job.json"

    @staticmethod
    def job_enqueued(job_id: str) -> str:
        """Written once every task message of the job is queued (see JobSpec.enqueued_marker)."""
        return f"jobs/{job_id}/enqueued.json"

    @staticmethod
    def results_table(job_id: str, output: str) -> str:
        return f"jobs/{job_id}/results/{output}.parquet"

    @staticmethod
    def result_prefix(task_id: str) -> str:
        """Every key of one task's result: its record and its folder of own output files."""
        return f"results/{task_id[:2]}/{task_id}"

    @staticmethod
    def result_output(task_id: str, output: str) -> str:
        return f"results/{task_id[:2]}/{task_id}/{output}.parquet"

    @staticmethod
    def result_pack(digest: str) -> str:
        """Outputs of several tasks in one Parquet file, named by its bytes' sha256 (hex)."""
        return f"packs/{digest[:2]}/{digest}.parquet"

    @staticmethod
    def result_done(task_id: str) -> str:
        """The task's record, written last, once every output is stored: its presence means
        'done'. Beside the task's folder, not in it: most tasks have no files of their own
        (their outputs are rows of packs), and a folder per task costs a directory each."""
        return f"results/{task_id[:2]}/{task_id}.done.json"

    @staticmethod
    def result_done_legacy(task_id: str) -> str:
        """Where records were written before version 3 (in the task's folder): read only."""
        return f"results/{task_id[:2]}/{task_id}/_done.json"
