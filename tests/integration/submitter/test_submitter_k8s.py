"""The kubernetes launcher against the Kubernetes API test server (pods run as local processes,
each the real `python -m modelops_runner`): a 200-task study, the manifest checked field by
field and validated against the Kubernetes schemas, and a cancel mid-run."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import nats
import pytest
from kubernetes import client

from modelops_contracts import (
    CancelJob,
    JobCancelled,
    JobCompleted,
    JobSubmitted,
    TaskCompleted,
)
from modelops_contracts.subjects import TASKS_STREAM, task_subject
from modelops_runtime.blobstore import BlobStore
from modelops_submitter.binding import job_id_for
from modelops_submitter.launchers.base import LaunchRequest, runner_env
from modelops_submitter.launchers.kubernetes import job_manifest, job_name
from modelops_submitter.launchers.local import process_start_time
from modelops_submitter.settings import KubernetesSettings, Settings
from tests.integration.submitter.submitter_kit import (
    EventWatch,
    read_table,
    running_submitter,
    send,
    sir_study,
    with_options,
)
from tests.support.k8s_api import KubeApiTestServer
from tests.support.waiting import wait_for

NS = "modelops-test"
SECRET = "modelops-s3"


@pytest.fixture
def k8s(tmp_path: Path, s3_keys: dict[str, str]) -> Iterator[KubeApiTestServer]:
    with KubeApiTestServer(workdir=tmp_path / "k8s") as server:
        server.add_secret(NS, SECRET, s3_keys)  # pods get S3 keys only through envFrom
        yield server
        assert server.errors == []


@pytest.fixture
def k8s_settings(settings: Settings, k8s: KubeApiTestServer, tmp_path: Path) -> Settings:
    return dataclasses.replace(
        settings,
        launcher="kubernetes",
        kubernetes=KubernetesSettings(
            namespace=NS,
            image="modelops:test",
            service_account="modelops-runner",
            command=(sys.executable, "-m", "modelops_runner"),
            env_from_secrets=(SECRET,),
            ttl_seconds_after_finished=300,
            active_deadline_seconds=600,
            backoff_limit_per_index=1,
            api_host=k8s.host,
            bundle_cache=str(tmp_path / "pod-bundle-cache"),
        ),
    )


async def test_200_tasks_through_an_indexed_job(
    k8s_settings: Settings,
    k8s: KubeApiTestServer,
    bus: nats.NATS,
    blobs: BlobStore,
    sir_bundle: str,
) -> None:
    study = sir_study(40, 5, name="k8s-200")
    cmd = with_options(study, sir_bundle, runners=2, workers_per_runner=1, max_retries=2)
    job_id = job_id_for(cmd)
    name = job_name(k8s_settings.kubernetes, job_id)
    async with running_submitter(k8s_settings), EventWatch.on(bus) as watch:
        await send(bus, cmd)
        submitted = await watch.first(JobSubmitted, job_id=job_id, within=30)
        assert submitted.launcher == "kubernetes"
        done = await watch.first(JobCompleted, job_id=job_id, within=120)
    assert (done.total, done.completed, done.failed, done.cached) == (200, 200, 0, 0)
    assert len({e.task_id for e in watch.matching(TaskCompleted, job_id=job_id)}) == 200

    # the manifest the client sent, field by field: exactly what the launcher builds
    (post,) = k8s.requests_to("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")
    expected = job_manifest(
        k8s_settings.kubernetes,
        LaunchRequest(
            job_id=job_id,
            runners=2,
            options=cmd.options,
            env=runner_env(k8s_settings, job_id=job_id, options=cmd.options, kind="kubernetes"),
        ),
    )
    assert post.body == expected
    kubernetes_validate.validate(post.body, kubernetes_validate.utils.latest_version(), strict=True)
    spec = post.body["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELOPS_JOB_ID"] == job_id and env["MODELOPS_WORKERS"] == "1"
    assert env["MODELOPS_JOB_SPEC"] == submitted.spec_uri
    assert "AWS_SECRET_ACCESS_KEY" not in env  # only through the Secret
    assert container["envFrom"] == [{"secretRef": {"name": SECRET}}]

    # two pods ran the real runner as processes, with the Secret's keys, and are gone
    pods = k8s.pod_processes(NS, job=name)
    assert sorted(p.index for p in pods) == [0, 1]
    for pod in pods:
        assert pod.argv == (sys.executable, "-m", "modelops_runner")
        assert pod.env["AWS_ACCESS_KEY_ID"] and pod.env["MODELOPS_JOB_ID"] == job_id
        assert pod.env["JOB_COMPLETION_INDEX"] == str(pod.index)
    await wait_for(lambda: all(process_start_time(p.pid) is None for p in pods), "pods to exit")

    def succeeded() -> int:
        with k8s.api_client() as api:
            status = client.BatchV1Api(api).read_namespaced_job_status(name, NS).status
        return status.succeeded or 0

    # the API server reaps a pod's process a moment after it exits: wait for its count
    await wait_for(lambda: succeeded() == 2, "the Job to count both pods as succeeded")

    tasks = await read_table(blobs, f"jobs/{job_id}/results/tasks.parquet")
    assert tasks.num_rows == 200 and set(tasks.column("status").to_pylist()) == {"completed"}
    assert set(tasks.column("task_id").to_pylist()) == {
        t.task_id for t in study.bind(submitted.bundle_ref, job_id=job_id).tasks()
    }


async def test_cancel_mid_run_deletes_the_job_and_purges_the_queue(
    k8s_settings: Settings, k8s: KubeApiTestServer, bus: nats.NATS, sir_bundle: str
) -> None:
    cmd = with_options(
        sir_study(100, 6, name="k8s-cancel"), sir_bundle, runners=1, workers_per_runner=1
    )
    job_id = job_id_for(cmd)
    name = job_name(k8s_settings.kubernetes, job_id)
    async with running_submitter(k8s_settings), EventWatch.on(bus) as watch:
        await send(bus, cmd)
        await watch.first(TaskCompleted, job_id=job_id, within=60)  # runners are at work
        await send(bus, CancelJob(correlation_id="cancel-1", job_id=job_id, reason="test"))
        cancelled = await watch.first(JobCancelled, job_id=job_id, within=30)
        assert cancelled.purged_tasks > 0 and cancelled.reason == "test"
        (delete,) = k8s.requests_to("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{name}")
        assert delete.body["propagationPolicy"] == "Background"
        pods = k8s.pod_processes(NS, job=name)
        await wait_for(lambda: all(process_start_time(p.pid) is None for p in pods), "pods to exit")
        js = bus.jetstream()
        info = await js.stream_info(TASKS_STREAM, subjects_filter=task_subject(job_id))
        assert not (info.state.subjects or {}).get(task_subject(job_id))
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.consumer_info(TASKS_STREAM, f"runners-{job_id}")
        record = await (await js.key_value("modelops-jobs")).get(job_id)
        assert b'"state":"cancelled"' in record.value
    assert not watch.matching(JobCompleted, job_id=job_id)
