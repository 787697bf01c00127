"""Every kind of model failure ends as the right TaskFailed while the job's other tasks complete.

The embedded stack's configuration: bundle in an OCI image-layout folder, blobs in a folder;
NATS is the real server.
"""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from runner_jobkit import RunnerProcess, build_bundle, queue_job, read_job_events, runner_env

from modelops_contracts import LaunchOptions, ParameterSet, SimTask
from modelops_contracts.messages import TaskCompleted, TaskFailed
from modelops_runtime.blobstore import open_blob_store

pytestmark = pytest.mark.integration

MODELS = {
    "sir_model:StochasticSIR": "src/sir_model.py",
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
    tmp_path: Path, nats_server, nats_client
) -> None:
    layout = f"oci-layout:{tmp_path / 'oci'}"
    bundle_ref = build_bundle(tmp_path / "project", MODELS, store_location=layout)
    blob_uri = f"file://{tmp_path / 'blobs'}"
    store = open_blob_store(blob_uri)
    sir = [_task(bundle_ref, "sir_model:StochasticSIR", seed, beta=0.25) for seed in range(8)]
    bad = {
        "model_error": _task(bundle_ref, "raising_model:Raises", 1),
        "timeout": _task(bundle_ref, "hanging_model:Hangs", 1),
        "signal": _task(bundle_ref, "crashing_models:Segfaults", 1),
        "crashed": _task(bundle_ref, "crashing_models:ExitsHard", 1, code=3),
        "oom": _task(bundle_ref, "hog_model:MemoryHog", 1),
    }
    noisy = _task(bundle_ref, "noisy_model:Noisy", 1, megabytes=50)
    tasks = [*sir[:4], *bad.values(), noisy, *sir[4:]]
    job = await queue_job(
        nats_client,
        store,
        bundle_ref=bundle_ref,
        tasks=tasks,
        options=LaunchOptions(task_timeout_s=4.0),
        raw_messages=[b"{this is not a task"],
    )
    env = runner_env(
        nats_url=nats_server.url,
        job=job,
        blob_store=blob_uri,
        bundle_store=layout,
        cache=tmp_path / "cache",
        workers=2,
        extra={"MODELOPS_MEMORY_LIMIT": "1Gi"},
    )
    runner = await RunnerProcess(env=env, log_path=tmp_path / "runner.log").start()
    try:
        assert await runner.wait(90) == 0, runner.log()[-4000:]
    finally:
        await runner.aclose()

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

    result = pq.read_table(
        io.BytesIO(await store.get_bytes(completed[noisy.task_id].outputs["result"]))
    )
    assert result.to_pylist() == [{"megabytes": 50}]
    info = await nats_client.jetstream().consumer_info("MODELOPS_TASKS", job.consumer)
    assert info.num_pending == 0 and info.num_ack_pending == 0  # all acked or terminated
    assert "task.rejected" in runner.log() and "task.failed" in runner.log()
