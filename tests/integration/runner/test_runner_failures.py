"""Every kind of model failure ends as the right TaskFailed while the job's other tasks complete.

The embedded stack's configuration: bundle in an OCI image-layout folder, blobs in a folder;
NATS is the real server.
"""

from __future__ import annotations

import signal

import pytest
from runner_jobkit import SIR_MODELS, JobSite, read_job_events, sir_tasks

from modelops_contracts import LaunchOptions, ParameterSet, SimTask
from modelops_contracts.messages import TaskCompleted, TaskFailed
from modelops_runtime.outputs import read_output

pytestmark = pytest.mark.integration

MODELS = {
    **SIR_MODELS,
    "raising_model:Raises": "src/raising_model.py",
    "hanging_model:Hangs": "src/hanging_model.py",
    "crashing_models:Segfaults": "src/crashing_models.py",
    "crashing_models:ExitsHard": "src/crashing_models.py",
    "noisy_model:Noisy": "src/noisy_model.py",
    "hog_model:MemoryHog": "src/hog_model.py",
}


def _task(bundle_ref: str, entrypoint: str, seed: int, **params: float) -> SimTask:
    return SimTask(
        bundle_ref=bundle_ref,
        entrypoint=entrypoint,
        params=ParameterSet(params=params or {"beta": 0.3}),
        seed=seed,
    )


async def test_each_failure_kind_is_reported_and_the_rest_complete(
    site: JobSite, nats_client
) -> None:
    bundle_ref = site.bundle(MODELS)
    sir = sir_tasks(bundle_ref, range(8), beta=0.25)
    bad = {
        "model_error": _task(bundle_ref, "raising_model:Raises", 1),
        "timeout": _task(bundle_ref, "hanging_model:Hangs", 1),
        "signal": _task(bundle_ref, "crashing_models:Segfaults", 1),
        "crashed": _task(bundle_ref, "crashing_models:ExitsHard", 1, code=3),
        "oom": _task(bundle_ref, "hog_model:MemoryHog", 1),
    }
    noisy = _task(bundle_ref, "noisy_model:Noisy", 1, megabytes=50)
    tasks = [*sir[:4], *bad.values(), noisy, *sir[4:]]
    job = await site.queue(
        nats_client,
        tasks,
        options=LaunchOptions(task_timeout_s=4.0),
        raw_messages=[b"{this is not a task"],
    )
    runner = await site.run(job, timeout_s=90, extra={"MODELOPS_MEMORY_LIMIT": "1Gi"})
    assert runner.returncode == 0, runner.log()[-4000:]

    events = await read_job_events(nats_client, job.job_id)
    completed = {e.task_id: e for e in events if isinstance(e, TaskCompleted)}
    failed = {e.task_id: e for e in events if isinstance(e, TaskFailed)}
    assert set(completed) == {t.task_id for t in [*sir, noisy]}, runner.log()[-4000:]
    assert len(failed) == len(bad) + 1  # the five models and the undecodable message
    assert all(e.final and e.attempt == 1 for e in failed.values())

    for kind, task in bad.items():
        assert failed[task.task_id].failure == kind, failed[task.task_id]
    raised = failed[bad["model_error"].task_id]
    assert raised.error_type == "ValueError"
    assert "beta must be positive" in raised.message
    assert "raising_model.py" in raised.traceback_tail
    assert "about to fail" in raised.stderr_tail
    assert failed[bad["signal"].task_id].signal == signal.SIGSEGV
    assert failed[bad["crashed"].task_id].exit_code == 3
    assert "4 s timeout" in failed[bad["timeout"].task_id].message

    (garbage,) = [e for e in failed.values() if e.task_id.startswith("undecodable-seq-")]
    assert garbage.failure == "infrastructure" and "cannot be decoded" in garbage.message

    result = await read_output(site.blobs, completed[noisy.task_id].outputs["result"])
    assert result.to_pylist() == [{"megabytes": 50}]
    info = await nats_client.jetstream().consumer_info("MODELOPS_TASKS", job.consumer)
    assert info.num_pending == 0 and info.num_ack_pending == 0  # all acked or terminated
    assert "task.rejected" in runner.log() and "task.failed" in runner.log()
