"""The Kubernetes API test server, driven through the real `kubernetes` client.

Every check goes through `BatchV1Api`/`CoreV1Api` over HTTP, as the submitter's launcher
will: manifests in, status/pods/logs/watch events out, and real local processes in
between. Waiting is done on watch streams or followed logs with deadlines, never sleeps.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client, watch
from kubernetes.client import ApiException

from tests.support.k8s_api import KubeApiTestServer
from tests.support.k8s_api.controller import compress_indexes, reconcile
from tests.support.k8s_api.selectors import matches_labels, parse_label_selector
from tests.support.k8s_api.status import ApiError

pytestmark = pytest.mark.integration

NS = "modelops"
WAIT = 20  # seconds: an upper bound for a stuck run, not an expected duration


# ---- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubeApiTestServer]:
    with KubeApiTestServer(workdir=tmp_path / "k8s", max_grace_seconds=2.0) as srv:
        yield srv
        assert srv.errors == [], "the test API server hit internal errors"


@pytest.fixture
def api(server: KubeApiTestServer) -> Iterator[client.ApiClient]:
    with server.api_client() as api_client:
        yield api_client


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def python_job(
    name: str,
    code: str,
    *,
    completions: int = 1,
    parallelism: int = 1,
    env: list[client.V1EnvVar] | None = None,
    env_from: list[client.V1EnvFromSource] | None = None,
    labels: dict[str, str] | None = None,
    mode: str = "Indexed",
    **spec: Any,
) -> client.V1Job:
    """A Job (Indexed unless `mode` says otherwise) whose container runs `python -c code`."""
    container = client.V1Container(
        name="runner",
        image="ghcr.io/modelops/runner:test",
        command=[sys.executable, "-c", code],
        env=env,
        env_from=env_from,
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1JobSpec(
            completion_mode=mode,
            completions=completions,
            parallelism=parallelism,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(restart_policy="Never", containers=[container]),
            ),
            **spec,
        ),
    )


def condition(job: client.V1Job, kind: str) -> client.V1JobCondition | None:
    return next(
        (c for c in job.status.conditions or [] if c.type == kind and c.status == "True"), None
    )


def wait_job(batch: client.BatchV1Api, name: str, kind: str) -> tuple[client.V1Job, list[Any]]:
    """Watch the job until condition `kind` is True; returns it and every event seen."""
    events = []
    w = watch.Watch()
    for event in w.stream(
        batch.list_namespaced_job,
        namespace=NS,
        field_selector=f"metadata.name={name}",
        timeout_seconds=WAIT,
    ):
        events.append(event)
        if condition(event["object"], kind):
            w.stop()
            return event["object"], events
    last = events[-1]["object"].status if events else None
    raise AssertionError(f"job {name} had no {kind} condition within {WAIT}s; status: {last}")


def wait_pods(core: client.CoreV1Api, selector: str, done: Any) -> client.V1PodList:
    """Watch pods matching `selector` until `done(pods_by_name)` holds."""
    listed = core.list_namespaced_pod(NS, label_selector=selector)
    pods = {p.metadata.name: p for p in listed.items}
    if done(pods):
        return pods
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod,
        namespace=NS,
        label_selector=selector,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=WAIT,
    ):
        if event["type"] == "DELETED":
            pods.pop(event["object"].metadata.name, None)
        else:
            pods[event["object"].metadata.name] = event["object"]
        if done(pods):
            w.stop()
            return pods
    raise AssertionError(f"pods {selector} did not reach the expected state within {WAIT}s")


def read_line(core: client.CoreV1Api, pod: str, prefix: str) -> str:
    """Follow a pod's log until a line starting with `prefix` appears."""
    response = core.read_namespaced_pod_log(pod, NS, follow=True, _preload_content=False)
    try:
        buffer = b""
        for chunk in response.stream(1024):
            buffer += chunk
            for line in buffer.decode().splitlines():
                if line.startswith(prefix):
                    return line
    finally:
        response.release_conn()
    raise AssertionError(f"pod {pod} ended without printing {prefix!r}: {buffer!r}")


def alive(pid: int) -> bool:
    """A process runs unless it is gone or a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def running_pods(pods: dict[str, client.V1Pod], count: int) -> bool:
    return len(pods) == count and all(p.status.phase == "Running" for p in pods.values())


# Prints its pid and a sleeping grandchild's pid, then waits to be killed.
SLEEPER = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "print(f'pids {os.getpid()} {child.pid}', flush=True)\n"
    "time.sleep(300)\n"
)


# ---- running an Indexed Job -----------------------------------------------------------


def test_indexed_job_runs_every_index_and_completes(
    server: KubeApiTestServer, batch: client.BatchV1Api, core: client.CoreV1Api, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import os, pathlib\n"
        "i = os.environ['JOB_COMPLETION_INDEX']\n"
        "pathlib.Path(os.environ['OUT_DIR'], i).write_text("
        "os.environ['RUN_ID'] + ' ' + os.environ['ANNOTATED_INDEX'])\n"
        "print('done', i)\n"
    )
    env = [
        client.V1EnvVar(name="OUT_DIR", value=str(out)),
        client.V1EnvVar(name="RUN_ID", value="run-7"),
        client.V1EnvVar(
            name="ANNOTATED_INDEX",
            value_from=client.V1EnvVarSource(
                field_ref=client.V1ObjectFieldSelector(
                    field_path="metadata.annotations['batch.kubernetes.io/job-completion-index']"
                )
            ),
        ),
    ]
    labels = {"modelops.io/job-id": "job-1"}
    manifest = python_job(
        "sim-job-1",
        code,
        completions=3,
        parallelism=2,
        env=env,
        labels=labels,
        backoff_limit_per_index=1,
        ttl_seconds_after_finished=600,
    )
    created = batch.create_namespaced_job(NS, manifest)

    assert created.metadata.uid and created.metadata.resource_version
    assert created.spec.backoff_limit == 2147483647  # defaulted, as per-index is set
    assert created.spec.pod_replacement_policy == "TerminatingOrFailed"
    job, events = wait_job(batch, "sim-job-1", "Complete")

    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "0": "run-7 0",
        "1": "run-7 1",
        "2": "run-7 2",
    }
    assert max((e["object"].status.active or 0) for e in events) <= 2
    status = batch.read_namespaced_job_status("sim-job-1", NS).status
    assert (status.succeeded, status.failed, status.active) == (3, None, None)
    assert status.completed_indexes == "0-2" and status.failed_indexes == ""
    assert status.start_time <= status.completion_time
    assert [c.type for c in status.conditions] == ["SuccessCriteriaMet", "Complete"]
    assert condition(job, "Complete").reason == "CompletionsReached"

    pods = core.list_namespaced_pod(NS, label_selector="batch.kubernetes.io/job-name=sim-job-1")
    by_index = {
        p.metadata.annotations["batch.kubernetes.io/job-completion-index"]: p for p in pods.items
    }
    assert sorted(by_index) == ["0", "1", "2"]
    for index, pod in by_index.items():
        assert pod.metadata.name.startswith(f"sim-job-1-{index}-")
        assert pod.metadata.labels["job-name"] == "sim-job-1"
        assert pod.metadata.labels["modelops.io/job-id"] == "job-1"
        assert pod.metadata.owner_references[0].uid == created.metadata.uid
        assert pod.status.phase == "Succeeded"
        assert pod.status.container_statuses[0].state.terminated.exit_code == 0
        assert core.read_namespaced_pod_log(pod.metadata.name, NS) == f"done {index}\n"

    (sent,) = server.requests_to("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")
    spec = sent.body["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 2)
    assert spec["template"]["spec"]["containers"][0]["command"][0] == sys.executable
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["ttlSecondsAfterFinished"] == 600


def test_manifest_the_client_sent_passes_the_real_schema(
    server: KubeApiTestServer, batch: client.BatchV1Api
) -> None:
    batch.create_namespaced_job(NS, python_job("schema-check", "pass", suspend=True))
    (sent,) = server.requests_to("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")
    kubernetes_validate.validate(sent.body, "1.37", strict=True)


def test_watch_and_list_report_job_lifecycle(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    start_rv = batch.list_namespaced_job(NS).metadata.resource_version
    batch.create_namespaced_job(NS, python_job("watched", "print('hi')", labels={"team": "a"}))
    batch.create_namespaced_job(NS, python_job("other", "pass", labels={"team": "b"}, suspend=True))
    wait_job(batch, "watched", "Complete")
    batch.delete_namespaced_job("watched", NS, propagation_policy="Background")

    seen = []
    w = watch.Watch()
    for event in w.stream(
        batch.list_namespaced_job,
        namespace=NS,
        label_selector="team=a",
        resource_version=start_rv,
        timeout_seconds=WAIT,
    ):
        seen.append((event["type"], int(event["object"].metadata.resource_version)))
        if event["type"] == "DELETED":
            w.stop()
    types = [t for t, _ in seen]
    assert types[0] == "ADDED" and types[-1] == "DELETED" and "MODIFIED" in types
    versions = [rv for _, rv in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)

    assert [j.metadata.name for j in batch.list_namespaced_job(NS).items] == ["other"]
    assert [
        j.metadata.name
        for j in batch.list_namespaced_job(NS, label_selector="team in (b,c),!missing").items
    ] == ["other"]
    assert batch.list_namespaced_job(NS, label_selector="team=a").items == []
    assert batch.list_namespaced_job("elsewhere").items == []
    assert core.list_namespaced_pod(NS, label_selector="job-name=other").items == []
    with pytest.raises(ApiException) as bad:
        batch.list_namespaced_job(NS, label_selector="team in (a")
    assert bad.value.status == 400


def test_suspended_job_starts_when_patched(
    server: KubeApiTestServer, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    manifest = python_job("held", "pass", completions=2, mode="NonIndexed", suspend=True)
    batch.create_namespaced_job(NS, manifest)
    held, _ = wait_job(batch, "held", "Suspended")
    assert held.status.start_time is None and held.status.active is None

    # A list body goes out as a JSON patch (application/json-patch+json).
    batch.patch_namespaced_job(
        "held", NS, [{"op": "replace", "path": "/spec/suspend", "value": False}]
    )
    (patch,) = server.requests_to("PATCH", f"/apis/batch/v1/namespaces/{NS}/jobs/held")
    assert patch.content_type == "application/json-patch+json"
    job, _ = wait_job(batch, "held", "Complete")
    assert job.status.succeeded == 2
    resumed = next(c for c in job.status.conditions if c.type == "Suspended")
    assert (resumed.status, resumed.reason) == ("False", "JobResumed")
    pods = core.list_namespaced_pod(NS, label_selector="job-name=held").items
    assert len(pods) == 2
    assert all(p.metadata.annotations == {} and p.metadata.name.count("-") == 1 for p in pods)


# ---- deletion kills process groups ----------------------------------------------------


def test_background_delete_kills_the_pods_processes(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    batch.create_namespaced_job(NS, python_job("doomed", SLEEPER, completions=2, parallelism=2))
    selector = "batch.kubernetes.io/job-name=doomed"
    pods = wait_pods(core, selector, lambda p: running_pods(p, 2))
    pids = [int(x) for name in pods for x in read_line(core, name, "pids").split()[1:]]
    assert len(pids) == 4 and all(alive(pid) for pid in pids)

    status = batch.delete_namespaced_job("doomed", NS, propagation_policy="Background")
    assert (status["kind"], status["status"]) == ("Status", "Success")
    with pytest.raises(ApiException) as gone:
        batch.read_namespaced_job("doomed", NS)
    assert gone.value.status == 404
    wait_pods(core, selector, lambda p: not p)
    assert [pid for pid in pids if alive(pid)] == []


def test_foreground_delete_returns_the_job_and_removes_it_after_its_pods(
    server: KubeApiTestServer, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    batch.create_namespaced_job(NS, python_job("fg", SLEEPER))
    pods = wait_pods(core, "job-name=fg", lambda p: running_pods(p, 1))
    pids = [int(x) for x in read_line(core, next(iter(pods)), "pids").split()[1:]]

    # As from a real API server, the answer is the Job itself, held by a finalizer.
    body = batch.delete_namespaced_job("fg", NS, propagation_policy="Foreground")
    assert body["kind"] == "Job" and body["metadata"]["finalizers"] == ["foregroundDeletion"]
    wait_pods(core, "job-name=fg", lambda p: not p)
    assert [pid for pid in pids if alive(pid)] == []
    with pytest.raises(ApiException) as gone:
        batch.read_namespaced_job("fg", NS)
    assert gone.value.status == 404


def test_default_delete_orphans_pods_and_stop_kills_them(tmp_path: Path) -> None:
    with KubeApiTestServer(workdir=tmp_path / "k8s", max_grace_seconds=1.0) as server:
        with server.api_client() as api:
            batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
            batch.create_namespaced_job(NS, python_job("orphaner", SLEEPER))
            pods = wait_pods(core, "job-name=orphaner", lambda p: running_pods(p, 1))
            name = next(iter(pods))
            pids = [int(x) for x in read_line(core, name, "pids").split()[1:]]

            response = batch.delete_namespaced_job("orphaner", NS, _preload_content=False)
            assert "child pods are preserved by default" in response.headers["Warning"]
            orphan = core.read_namespaced_pod(name, NS)
            assert orphan.status.phase == "Running" and not orphan.metadata.owner_references
            assert all(alive(pid) for pid in pids)
            assert server.errors == []
    assert [pid for pid in pids if alive(pid)] == []


# ---- failures -------------------------------------------------------------------------


def test_failing_command_fails_the_job_after_backoff(
    batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    code = "import sys; print('starting', flush=True); print('boom', file=sys.stderr); sys.exit(3)"
    batch.create_namespaced_job(NS, python_job("broken", code, backoff_limit=1))
    job, _ = wait_job(batch, "broken", "Failed")

    assert job.status.failed == 2 and job.status.active is None
    assert condition(job, "Failed").reason == "BackoffLimitExceeded"
    assert condition(job, "FailureTarget") is not None
    pods = core.list_namespaced_pod(NS, label_selector="job-name=broken").items
    assert len(pods) == 2
    for pod in pods:
        terminated = pod.status.container_statuses[0].state.terminated
        assert (pod.status.phase, terminated.exit_code, terminated.reason) == ("Failed", 3, "Error")
        assert core.read_namespaced_pod_log(pod.metadata.name, NS) == "starting\nboom\n"
        assert core.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=1) == "boom\n"


def test_per_index_backoff_fails_only_the_bad_index(batch: client.BatchV1Api) -> None:
    code = "import os, sys; sys.exit(int(os.environ['JOB_COMPLETION_INDEX']))"
    batch.create_namespaced_job(
        NS, python_job("per-index", code, completions=2, parallelism=2, backoff_limit_per_index=1)
    )
    job, _ = wait_job(batch, "per-index", "Failed")

    assert condition(job, "Failed").reason == "FailedIndexes"
    assert (job.status.completed_indexes, job.status.failed_indexes) == ("0", "1")
    assert (job.status.succeeded, job.status.failed) == (1, 2)


def test_pod_failure_policy_fails_the_job_on_an_exit_code(batch: client.BatchV1Api) -> None:
    policy = client.V1PodFailurePolicy(
        rules=[
            client.V1PodFailurePolicyRule(
                action="FailJob",
                on_exit_codes=client.V1PodFailurePolicyOnExitCodesRequirement(
                    operator="In", values=[42]
                ),
            )
        ]
    )
    batch.create_namespaced_job(
        NS, python_job("fatal", "raise SystemExit(42)", backoff_limit=5, pod_failure_policy=policy)
    )
    job, _ = wait_job(batch, "fatal", "Failed")

    failed = condition(job, "Failed")
    assert failed.reason == "PodFailurePolicy" and "exit code 42" in failed.message
    assert job.status.failed == 1


def test_active_deadline_kills_pods_and_fails_the_job(
    server: KubeApiTestServer, batch: client.BatchV1Api
) -> None:
    batch.create_namespaced_job(NS, python_job("slow", SLEEPER, active_deadline_seconds=1))
    job, _ = wait_job(batch, "slow", "Failed")

    assert condition(job, "Failed").reason == "DeadlineExceeded"
    (process,) = server.pod_processes(NS, "slow")
    assert not alive(process.pid)


# ---- environment ----------------------------------------------------------------------


def test_env_from_secret_and_config_map(
    server: KubeApiTestServer,
    batch: client.BatchV1Api,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.add_secret(NS, "bus-creds", {"NATS_TOKEN": "t0k3n", "S3_SECRET": "s3"})
    server.add_config_map(NS, "runner-config", {"LEVEL": "debug"})
    monkeypatch.setenv("LEAKED", "from-the-test-process")  # must not reach the pod
    out = tmp_path / "env.json"
    code = (
        "import json, os\n"
        "keys = ['NATS_TOKEN', 'S3_SECRET', 'CFG_LEVEL', 'ONLY_S3', 'GREETING', 'LEAKED']\n"
        f"open({str(out)!r}, 'w').write(json.dumps({{k: os.environ.get(k) for k in keys}}))\n"
    )
    secret_key = client.V1SecretKeySelector(name="bus-creds", key="S3_SECRET")
    manifest = python_job(
        "env-job",
        code,
        env_from=[
            client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name="bus-creds")),
            client.V1EnvFromSource(
                prefix="CFG_", config_map_ref=client.V1ConfigMapEnvSource(name="runner-config")
            ),
        ],
        env=[
            client.V1EnvVar(
                name="ONLY_S3", value_from=client.V1EnvVarSource(secret_key_ref=secret_key)
            ),
            client.V1EnvVar(name="GREETING", value="level=$(CFG_LEVEL) $$HOME"),
        ],
    )
    batch.create_namespaced_job(NS, manifest)
    wait_job(batch, "env-job", "Complete")

    assert json.loads(out.read_text()) == {
        "NATS_TOKEN": "t0k3n",
        "S3_SECRET": "s3",
        "CFG_LEVEL": "debug",
        "ONLY_S3": "s3",
        "GREETING": "level=debug $HOME",
        "LEAKED": None,
    }


def test_missing_secret_keeps_the_pod_waiting_until_it_exists(
    server: KubeApiTestServer, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    manifest = python_job(
        "no-secret",
        "pass",
        env_from=[client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name="absent"))],
    )
    batch.create_namespaced_job(NS, manifest)

    def waiting(pods: dict[str, client.V1Pod]) -> bool:
        statuses = [p.status.container_statuses for p in pods.values()]
        return len(statuses) == 1 and statuses[0] is not None

    (pod,) = wait_pods(core, "job-name=no-secret", waiting).values()
    state = pod.status.container_statuses[0].state.waiting
    assert pod.status.phase == "Pending"
    assert (state.reason, state.message) == (
        "CreateContainerConfigError",
        'secret "absent" not found',
    )
    with pytest.raises(ApiException) as log_error:
        core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert log_error.value.status == 400

    server.add_secret(NS, "absent", {"TOKEN": "late"})  # the kubelet retries, as on a cluster
    job, _ = wait_job(batch, "no-secret", "Complete")
    assert job.status.succeeded == 1


# ---- errors ---------------------------------------------------------------------------


def status_of(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)


def test_discovery_answers_like_a_cluster(api: client.ApiClient) -> None:
    assert client.VersionApi(api).get_code().git_version.startswith("v1.37")
    resources = client.BatchV1Api(api).get_api_resources()
    assert resources.group_version == "batch/v1"
    assert "jobs" in [r.name for r in resources.resources]


def test_errors_arrive_as_kubernetes_status(batch: client.BatchV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        batch.read_namespaced_job("nope", NS)
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"
    assert status_of(missing.value)["message"] == 'jobs.batch "nope" not found'

    batch.create_namespaced_job(NS, python_job("twice", "pass", suspend=True))
    with pytest.raises(ApiException) as duplicate:
        batch.create_namespaced_job(NS, python_job("twice", "pass", suspend=True))
    assert duplicate.value.status == 409
    assert status_of(duplicate.value)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as missing_delete:
        batch.delete_namespaced_job("nope", NS, propagation_policy="Background")
    assert missing_delete.value.status == 404

    stale = batch.read_namespaced_job("twice", NS)
    batch.patch_namespaced_job("twice", NS, {"metadata": {"labels": {"seen": "yes"}}})
    with pytest.raises(ApiException) as outdated:
        batch.replace_namespaced_job("twice", NS, stale)
    assert (outdated.value.status, status_of(outdated.value)["reason"]) == (409, "Conflict")
    with pytest.raises(ApiException) as immutable:
        batch.patch_namespaced_job("twice", NS, {"spec": {"completionMode": "NonIndexed"}})
    assert immutable.value.status == 422
    assert "spec.completionMode: Invalid value" in status_of(immutable.value)["message"]


def test_invalid_manifests_are_rejected_with_causes(batch: client.BatchV1Api) -> None:
    bad = python_job("Bad_Name", "pass", labels={"modelops.io/job-id": "job:1"})
    bad.spec.template.spec.restart_policy = None
    bad.spec.template.spec.containers.append(client.V1Container(name="sidecar"))
    with pytest.raises(ApiException) as invalid:
        batch.create_namespaced_job(NS, bad)
    status = status_of(invalid.value)
    assert (invalid.value.status, status["reason"]) == (422, "Invalid")
    fields = {c["field"]: c["reason"] for c in status["details"]["causes"]}
    assert fields == {
        "metadata.name": "FieldValueInvalid",
        "metadata.labels": "FieldValueInvalid",
        "spec.template.metadata.labels": "FieldValueInvalid",
        "spec.template.spec.containers[1].image": "FieldValueRequired",
        "spec.template.spec.restartPolicy": "FieldValueNotSupported",
    }
    assert 'Unsupported value: "Always"' in status["message"]

    no_containers = python_job("empty", "pass")
    no_containers.spec.template.spec.containers = []
    with pytest.raises(ApiException) as empty:
        batch.create_namespaced_job(NS, no_containers)
    assert status_of(empty.value)["message"] == (
        'Job.batch "empty" is invalid: spec.template.spec.containers: Required value'
    )


def test_unknown_fields_follow_field_validation(
    server: KubeApiTestServer, api: client.ApiClient, batch: client.BatchV1Api
) -> None:
    manifest = api.sanitize_for_serialization(python_job("typo", "pass"))
    manifest["spec"]["backofLimit"] = 2  # misspelt

    def post(query: str) -> tuple[int, dict[str, Any], str | None]:
        request = urllib.request.Request(
            f"{server.host}/apis/batch/v1/namespaces/{NS}/jobs{query}",
            data=json.dumps(manifest).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                return response.status, json.loads(response.read()), response.headers["Warning"]
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), None

    code, body, _ = post("?fieldValidation=Strict")
    assert (code, body["message"]) == (
        400,
        'strict decoding error: unknown field "spec.backofLimit"',
    )
    code, body, warning = post("")
    assert code == 201 and "backofLimit" not in body["spec"]
    assert warning == '299 - "unknown field \\"spec.backofLimit\\""'
    batch.delete_namespaced_job("typo", NS, propagation_policy="Background")


def test_stop_kills_running_pods(tmp_path: Path) -> None:
    with KubeApiTestServer(workdir=tmp_path / "k8s") as server:
        with server.api_client() as api:
            core = client.CoreV1Api(api)
            client.BatchV1Api(api).create_namespaced_job(NS, python_job("left", SLEEPER))
            pods = wait_pods(core, "job-name=left", lambda p: running_pods(p, 1))
            pids = [int(x) for x in read_line(core, next(iter(pods)), "pids").split()[1:]]
            assert server.errors == []
    assert [pid for pid in pids if alive(pid)] == []


# ---- pure parts -----------------------------------------------------------------------


def test_label_selectors_parse_like_the_api_server() -> None:
    reqs = parse_label_selector("app=sim, tier in (a,b), !debug, env!=prod")
    assert matches_labels(reqs, {"app": "sim", "tier": "b", "env": "dev"})
    assert not matches_labels(reqs, {"app": "sim", "tier": "c"})
    assert not matches_labels(reqs, {"app": "sim", "tier": "a", "debug": ""})
    with pytest.raises(ApiError):
        parse_label_selector("app=sim=x")


def test_completed_indexes_are_compressed() -> None:
    assert compress_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert compress_indexes(set()) == ""


def test_reconcile_starts_lowest_free_indexes_up_to_parallelism() -> None:
    from datetime import UTC, datetime

    job = {
        "metadata": {"name": "j", "namespace": NS},
        "status": {},
        "spec": {
            "completionMode": "Indexed",
            "completions": 5,
            "parallelism": 3,
            "backoffLimit": 6,
            "template": {"spec": {"containers": [{"name": "c"}]}},
        },
    }
    pod = {
        "metadata": {
            "name": "j-1-x",
            "namespace": NS,
            "annotations": {"batch.kubernetes.io/job-completion-index": "1"},
        },
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running"},
    }
    decision = reconcile(job, [pod], datetime.now(UTC))
    assert decision.start == [0, 2]
    assert decision.status["active"] == 1 and decision.status["ready"] == 1
