"""A study of the StochasticSIR example runs to completion through `python -m modelops_runner`
against real servers: nats-server, the OCI registry and SeaweedFS S3."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runner_jobkit import EXAMPLE_SIR, JobSite, completions, read_job_events, stored_record

from modelops_contracts import LaunchOptions, ParameterSet, SimulationStudy, parse_output_ref
from modelops_contracts.messages import TaskCompleted, TaskFailed
from modelops_runtime.blobstore import BlobStore, open_blob_store
from modelops_runtime.outputs import read_output

pytestmark = pytest.mark.integration

CONFIG = {"days": 40, "steps_per_day": 2}


@pytest.fixture
async def s3_store(s3_server, s3_bucket: str) -> AsyncIterator[tuple[str, BlobStore]]:
    uri = f"s3://{s3_bucket}/modelops"
    store = open_blob_store(
        uri,
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    async with store:
        yield uri, store


def _study(scenario: str | None) -> SimulationStudy:
    sets = [
        ParameterSet(params={"beta": 0.05, "gamma": 0.1, "I0": 5}),
        ParameterSet(params={"beta": 0.08, "gamma": 0.15, "I0": 20}),
    ]
    return SimulationStudy(
        model="model:StochasticSIR",
        scenario=scenario,
        parameter_sets=sets,
        n_replicates=3,
        base_seed=11,
        config=CONFIG,
    )


def _entrypoint(study: SimulationStudy) -> str:
    return study.model + (f"/{study.scenario}" if study.scenario else "")


def _direct_result(params: dict, seed: int, scenario: str | None) -> dict:
    """The example model called in this process: what the runner's outputs must equal."""
    sys.path.insert(0, str(EXAMPLE_SIR / "src"))
    try:
        import model  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE_SIR / "src"))
    instance = model.StochasticSIR()
    instance.config = {**model.StochasticSIR.config, **CONFIG}
    patch = model.StochasticSIR.scenarios[scenario] if scenario else {}
    return instance.simulate({**params, **patch}, seed)


async def test_sir_study_runs_to_completion_on_s3_and_a_registry(
    tmp_path: Path, nats_server, nats_client, oci_registry, s3_server, s3_store
) -> None:
    store_uri, store = s3_store
    site = JobSite(
        tmp_path,
        nats_server.url,
        bundle_store=oci_registry.host,
        blob_uri=store_uri,
        store=store,
        s3=s3_server,
    )
    bundle_ref = site.bundle(
        {"model:StochasticSIR": "src/model.py"}, project="sir", copy_from=EXAMPLE_SIR, data=["data"]
    )
    studies = [_study(None), _study("lockdown")]
    tasks = [t for s in studies for t in s.bind(bundle_ref).batches[0].tasks]
    assert len({t.task_id for t in tasks}) == len(tasks) == 12
    job = await site.queue(nats_client, tasks, options=LaunchOptions(task_timeout_s=60))
    runner = await site.run(job, timeout_s=90)
    assert runner.returncode == 0, runner.log()[-4000:]
    (started,) = [
        json.loads(line) for line in runner.log().splitlines() if '"runner.started"' in line
    ]
    assert started["gc_frozen_objects"] > 10_000  # start-up's heap, out of the collector's way

    events = await read_job_events(nats_client, job.job_id)
    assert not [e for e in events if isinstance(e, TaskFailed)], runner.log()[-3000:]
    assert completions(events) == {t.task_id: 1 for t in tasks}
    done = {e.task_id: e for e in events if isinstance(e, TaskCompleted)}
    assert not any(e.cached for e in done.values())
    per_study = len(tasks) // 2
    assert len({t.seed for t in tasks[:per_study]}) == per_study  # each replicate: its own seed

    finals: dict[str, int] = {}
    packs: set[str] = set()
    for task in tasks:
        event = done[task.task_id]
        assert set(event.outputs) == {"timeseries", "summary"}
        for ref in event.outputs.values():  # rows of a pack: one file for the tasks stored together
            where = parse_output_ref(ref)
            assert where.rows is not None and "/packs/" in where.uri, ref
            packs.add(where.uri)
        assert event.metrics.wall_s > 0 and event.metrics.peak_rss_bytes > 0
        assert event.attempt == 1 and event.runner_id and event.correlation_id
        series = await read_output(store, event.outputs["timeseries"])
        summary = await read_output(store, event.outputs["summary"])
        assert series.num_rows == CONFIG["days"] + 1 and summary.num_rows == 1
        scenario = task.entrypoint.partition("/")[2] or None
        expected = _direct_result(dict(task.params.params), task.seed, scenario)
        assert series.column("incidence").to_pylist() == list(expected["timeseries"]["incidence"])
        assert summary.to_pylist()[0] == pytest.approx(expected["summary"])
        finals[task.task_id] = summary.column("final_size")[0].as_py()
        record = await stored_record(store, task.task_id)
        assert record.job_id == job.job_id and record.outputs == event.outputs
    # replicates of one parameter set differ (distinct seeds really reach the model)
    by_set: dict[tuple[str, str], set[int]] = {}
    for task in tasks:
        key = (task.entrypoint, task.params.param_id)
        by_set.setdefault(key, set()).add(finals[task.task_id])
    assert all(len(values) > 1 for values in by_set.values()), by_set
    assert len(packs) < len(tasks)  # tasks stored together share their packs
    info = await nats_client.jetstream().consumer_info("MODELOPS_TASKS", job.consumer)
    assert info.num_pending == 0 and info.num_ack_pending == 0

    # the same tasks queued again by hand, as a concurrent job's submitter would have queued
    # them before this job stored them: they run (a first delivery is not looked up), and
    # each stored record wins, so every event reports the first job's result
    again = await site.queue(nats_client, tasks)
    rerun = await site.run(again, "runner-again", timeout_s=90)
    assert rerun.returncode == 0, rerun.log()[-4000:]
    events2 = await read_job_events(nats_client, again.job_id)
    cached = [e for e in events2 if isinstance(e, TaskCompleted)]
    assert sorted(e.task_id for e in cached) == sorted(job.task_ids)
    assert all(e.cached for e in cached)
    assert all(e.outputs == done[e.task_id].outputs for e in cached)
    for task in tasks:  # the stored records still name the first job: nothing was rewritten
        record = await stored_record(store, task.task_id)
        assert record.job_id == job.job_id


async def test_spec_for_a_deleted_consumer_exits_zero_without_pulling(
    tmp_path: Path, nats_server, nats_client
) -> None:
    """A runner started after its job was cancelled has nothing to do: exit 0 at once."""
    # nothing listens at the bundle store: a pull would fail
    site = JobSite(tmp_path, nats_server.url, bundle_store="127.0.0.1:1")
    job = await site.queue(
        nats_client, [], bundle_ref=f"127.0.0.1:1/never/pulled@sha256:{'a' * 64}"
    )
    await nats_client.jetstream().delete_consumer("MODELOPS_TASKS", job.consumer)
    runner = await site.run(job, timeout_s=30)
    assert runner.returncode == 0, runner.log()[-4000:]
    assert "runner.nothing_to_do" in runner.log()
