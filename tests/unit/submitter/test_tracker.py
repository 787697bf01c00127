"""The tracker fold: each task counted once, first terminal event wins, bounded progress."""

from __future__ import annotations

from modelops_contracts import JobProgress, TaskCompleted, TaskFailed, TaskMetrics
from modelops_submitter.tracker import JobTracker

JOB = "job-1"
ID = {name: name * 64 for name in "abcdef"}  # task ids are 64 hex digits


def done(
    task: str, *, cached: bool = False, outputs: tuple[str, ...] = ("summary",), wall: float = 0.5
) -> TaskCompleted:
    return TaskCompleted(
        correlation_id="c",
        job_id=JOB,
        task_id=ID.get(task, task),
        outputs={o: f"file:///x/{task}/{o}.parquet" for o in outputs},
        metrics=TaskMetrics(wall_s=wall),
        cached=cached,
    )


def failed(task: str, *, final: bool = True, message: str = "boom") -> TaskFailed:
    return TaskFailed(
        correlation_id="c",
        job_id=JOB,
        task_id=ID.get(task, task),
        failure="model_error",
        message=message,
        final=final,
    )


def tracker(**kw: object) -> JobTracker:
    return JobTracker(
        JOB, expected=[ID[x] for x in "abc"], correlation_id="corr", started=100.0, **kw
    )  # type: ignore[arg-type]


def test_counts_each_task_once_whatever_the_redeliveries() -> None:
    t = tracker()
    assert t.apply(done("a"))
    assert not t.apply(done("a"))  # redelivered
    assert not t.apply(done("a", cached=True))  # a later run of the same task
    assert (t.completed, t.failed, t.cached, t.pending) == (1, 0, 0, 2)
    assert not t.done


def test_first_terminal_event_wins() -> None:
    t = tracker()
    assert t.apply(failed("b"))
    assert not t.apply(done("b"))  # can only be a redelivery of an older attempt
    assert t.outcome(ID["b"]).status == "failed"
    assert (t.completed, t.failed) == (0, 1)


def test_non_final_failure_is_not_terminal() -> None:
    t = tracker()
    assert not t.apply(failed("c", final=False))
    assert t.outcome(ID["c"]) is None
    assert t.apply(done("c"))
    assert t.outcome(ID["c"]).status == "completed"


def test_events_of_other_jobs_and_unknown_tasks_are_ignored() -> None:
    t = tracker()
    other = TaskCompleted(correlation_id="c", job_id="job-2", task_id=ID["a"])
    assert not t.apply(other)
    assert not t.apply(done("zzz"))  # not even a task id
    assert not t.apply(done("f"))  # a task of some other job
    assert t.pending == 3


def test_tasks_cached_at_submit_count_from_the_start_and_ignore_events() -> None:
    t = JobTracker(
        JOB, expected=[ID["a"]], cached={ID["b"]: ("summary",), ID["c"]: ()}, started=0.0
    )
    assert (t.total, t.cached, t.pending) == (3, 2, 1)
    assert not t.apply(done("b"))
    assert t.outcome(ID["b"]).outputs == ("summary",)
    assert t.outcome(ID["c"]).outputs == ()
    t.apply(done("a", cached=True, outputs=("incidence", "summary")))
    assert t.done
    assert (t.completed, t.failed, t.cached) == (0, 0, 3)
    assert t.output_names() == ["incidence", "summary"]


def test_completion_carries_final_counts_and_a_fixed_id() -> None:
    t = tracker()
    for e in (done("a"), failed("b"), done("c", cached=True)):
        t.apply(e)
    assert t.done
    completed = t.completion(130.0, results_uri="file:///r")
    assert (completed.total, completed.completed, completed.failed, completed.cached) == (
        3,
        1,
        1,
        1,
    )
    assert completed.id == f"{JOB}:completed"
    assert completed.correlation_id == "corr"
    assert completed.duration_s == 30.0
    assert completed.results_uri == "file:///r"


def test_progress_is_rate_limited_and_only_sent_on_change() -> None:
    t = tracker(progress_interval_s=0.5)
    assert t.progress_due(101.0) is None  # nothing changed yet
    t.apply(done("a"))
    first = t.progress_due(101.0)
    assert isinstance(first, JobProgress) and first.completed == 1
    t.apply(failed("b"))
    assert t.progress_due(101.2) is None  # too soon
    second = t.progress_due(101.6)
    assert second is not None and (second.completed, second.failed) == (1, 1)
    assert t.progress_due(102.5) is None  # no change since
    assert second.rate_per_s == round(2 / 1.6, 3)


def test_no_progress_once_done() -> None:
    t = tracker()
    for task in "abc":
        t.apply(done(task))
    assert t.progress_due(200.0) is None


def test_long_failure_messages_are_truncated() -> None:
    t = tracker()
    t.apply(failed("a", message="x" * 10_000))
    assert len(t.outcome(ID["a"]).message) == 2000


def test_ids_ending_in_a_zero_byte_and_repeated_ids() -> None:
    ending_in_zero = "ab" * 31 + "00"  # numpy's fixed-width bytes would drop that last byte
    t = JobTracker(JOB, expected=[ending_in_zero, ID["a"], ID["a"]])
    assert t.total == 2
    assert t.apply(done(ending_in_zero))
    assert t.outcome(ending_in_zero).status == "completed"
    assert t.outcome("ab" * 31) is None


def test_a_malformed_expected_id_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="64 hex"):
        JobTracker(JOB, expected=["not-a-task-id"])
