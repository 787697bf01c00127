"""Subject, stream and KV bucket names: the one place they are spelled.

Commands go to `modelops.cmd.<kind>`; events to `modelops.evt.<area>.…`, with job events under
`modelops.evt.job.<job_id>.<kind>` so that a client (or a runner's permissions) can be scoped to
one job; tasks to `modelops.tasks.<job_id>` in a work-queue stream.
"""

from __future__ import annotations

__all__ = [
    "COMMANDS_STREAM",
    "COMMAND_SUBJECTS",
    "EVENTS_STREAM",
    "EVENT_SUBJECTS",
    "KV_BUNDLES",
    "KV_JOBS",
    "KV_MODELS",
    "TASKS_STREAM",
    "TASK_SUBJECTS",
    "command_subject",
    "job_event_subject",
    "job_events_filter",
    "task_subject",
]

PREFIX = "modelops"
COMMANDS_STREAM = "MODELOPS_COMMANDS"
EVENTS_STREAM = "MODELOPS_EVENTS"
TASKS_STREAM = "MODELOPS_TASKS"
COMMAND_SUBJECTS = f"{PREFIX}.cmd.>"
EVENT_SUBJECTS = f"{PREFIX}.evt.>"
TASK_SUBJECTS = f"{PREFIX}.tasks.>"

KV_MODELS = "modelops-models"
KV_BUNDLES = "modelops-bundles"
KV_JOBS = "modelops-jobs"

MODEL_EVENTS = f"{PREFIX}.evt.model"
BUNDLE_EVENTS = f"{PREFIX}.evt.bundle"
REJECTED_EVENTS = f"{PREFIX}.evt.rejected"


def command_subject(kind: str) -> str:
    """`modelops.cmd.submit_job` for kind `submit_job`."""
    return f"{PREFIX}.cmd.{kind}"


def job_event_subject(job_id: str, kind: str) -> str:
    return f"{PREFIX}.evt.job.{job_id}.{kind}"


def job_events_filter(job_id: str = "*") -> str:
    """Subject filter for every event of one job (or all jobs with the default)."""
    return f"{PREFIX}.evt.job.{job_id}.>"


def task_subject(job_id: str) -> str:
    return f"{PREFIX}.tasks.{job_id}"
