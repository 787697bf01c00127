"""The watch fold: counts from progress and task events, each task once."""

from __future__ import annotations

from modelops_cli.jobstate import JobView
from modelops_contracts import (
    JobCancelled,
    JobCompleted,
    JobProgress,
    JobRecord,
    JobSubmitted,
    TaskCompleted,
    TaskFailed,
)

JOB = "job-000000000001"
REF = "local/sir@sha256:" + "0" * 64


def submitted(n: int = 4, cached: int = 0) -> JobSubmitted:
    return JobSubmitted(correlation_id="c", job_id=JOB, bundle_ref=REF, n_tasks=n, n_cached=cached)


def done(task: str) -> TaskCompleted:
    return TaskCompleted(correlation_id="c", job_id=JOB, task_id=task)


def failed(task: str, final: bool = True) -> TaskFailed:
    return TaskFailed(
        correlation_id="c",
        job_id=JOB,
        task_id=task,
        failure="model_error",
        message="boom",
        final=final,
    )


def test_task_events_count_once_and_first_terminal_event_wins() -> None:
    view = JobView(job_id=JOB)
    for event in (submitted(), done("a"), done("a"), failed("b"), done("b"), failed("a")):
        view.apply(event)
    assert (view.state, view.total, view.done, view.failed) == ("running", 4, 2, 1)
    assert view.failed_ids == {"b"} and view.completed_ids == {"a"}
    assert not view.finished


def test_a_retried_failure_is_not_terminal() -> None:
    view = JobView(job_id=JOB)
    view.apply(submitted())
    view.apply(failed("a", final=False))
    assert view.done == 0 and view.failed == 0


def test_progress_fills_gaps_and_never_goes_back() -> None:
    view = JobView(job_id=JOB)
    view.apply(submitted(n=10, cached=2))
    view.apply(
        JobProgress(correlation_id="c", job_id=JOB, total=10, completed=5, failed=1, cached=2)
    )
    view.apply(
        JobProgress(correlation_id="c", job_id=JOB, total=10, completed=3, failed=0, cached=2)
    )
    assert (view.done, view.failed, view.cached) == (8, 1, 2)


def test_done_is_capped_at_total() -> None:
    view = JobView(job_id=JOB)
    view.apply(submitted(n=2, cached=2))
    view.apply(done("x"))  # a runner-side cached completion of an already-counted task
    assert view.done == 2


def test_job_completed_is_authoritative() -> None:
    view = JobView(job_id=JOB)
    view.apply(submitted(n=3))
    view.apply(JobCompleted(correlation_id="c", job_id=JOB, total=3, completed=2, failed=1))
    assert view.finished and not view.ok and view.done == 3 and view.failed == 1
    assert "1 failed" in view.summary()


def test_cancelled_and_other_jobs() -> None:
    view = JobView(job_id=JOB)
    view.apply(JobCancelled(correlation_id="c", job_id="job-other", reason="x"))
    assert view.state == "submitted"
    view.apply(JobCancelled(correlation_id="c", job_id=JOB, reason="by test"))
    assert view.finished and not view.ok and view.cancel_reason == "by test"


def test_from_record() -> None:
    record = JobRecord(
        job_id=JOB,
        state="running",
        bundle_ref=REF,
        n_tasks=5,
        created="t",
        updated="t",
        completed=2,
        failed=1,
        n_cached=1,
    )
    view = JobView.from_record(record)
    assert (view.state, view.total, view.done, view.failed) == ("running", 5, 4, 1)
