"""Launchers: the runner environment, the Kubernetes Job manifest, local runner processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from modelops_contracts import LaunchOptions, Resources
from modelops_submitter.launchers.base import LaunchRequest, runner_env, workers_for
from modelops_submitter.launchers.kubernetes import job_manifest, job_name
from modelops_submitter.launchers.local import LocalLauncher, process_start_time
from modelops_submitter.settings import KubernetesSettings, Settings
from tests.support.waiting import wait_for


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **kw)  # type: ignore[arg-type]


def test_runner_env_has_every_variable_the_runner_reads(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        nats_url="nats://127.0.0.1:4222",
        blob_store="s3://bucket/prefix",
        bundle_store="127.0.0.1:5000",
        s3_endpoint="http://127.0.0.1:8333",
        nats_creds="/etc/nats/runner.creds",
    )
    env = runner_env(
        s, job_id="job-1", options=LaunchOptions(runners=2, workers_per_runner=3), kind="local"
    )
    assert env == {
        "MODELOPS_NATS_URL": "nats://127.0.0.1:4222",
        "MODELOPS_JOB_ID": "job-1",
        "MODELOPS_JOB_SPEC": "s3://bucket/prefix/jobs/job-1/spec.json",
        "MODELOPS_BLOB_STORE": "s3://bucket/prefix",
        "MODELOPS_BUNDLE_STORE": "127.0.0.1:5000",
        "MODELOPS_S3_ENDPOINT": "http://127.0.0.1:8333",
        "MODELOPS_WORKERS": "3",
        "MODELOPS_BUNDLE_CACHE": str(tmp_path / "state" / "bundle-cache"),
        "MODELOPS_NATS_CREDS": "/etc/nats/runner.creds",
    }


def test_runner_env_for_pods_uses_the_runner_addresses_and_no_credentials(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        blob_store="s3://bucket",
        runner_nats_url="nats://nats.modelops.svc:4222",
        runner_bundle_store="registry.modelops.svc:5000",
        runner_blob_store="s3://bucket",
        runner_s3_endpoint="http://s3.modelops.svc:8333",
        nats_creds="/local/only.creds",
    )
    opts = LaunchOptions(runners=4, resources=Resources(cpu="1500m", memory="2Gi"))
    env = runner_env(s, job_id="job-2", options=opts, kind="kubernetes")
    assert env["MODELOPS_NATS_URL"] == "nats://nats.modelops.svc:4222"
    assert env["MODELOPS_BUNDLE_STORE"] == "registry.modelops.svc:5000"
    assert env["MODELOPS_S3_ENDPOINT"] == "http://s3.modelops.svc:8333"
    assert env["MODELOPS_WORKERS"] == "2"  # 1.5 CPUs requested, rounded up
    assert "MODELOPS_NATS_CREDS" not in env  # pods get credentials from a Secret
    assert env["MODELOPS_BUNDLE_CACHE"] == KubernetesSettings().bundle_cache


def test_workers_split_local_cores_between_runners() -> None:
    assert workers_for(LaunchOptions(runners=1, workers_per_runner=5), "local") == 5
    assert workers_for(LaunchOptions(runners=1000), "local") == 1
    assert workers_for(LaunchOptions(resources=Resources(cpu="250m")), "kubernetes") == 1
    assert workers_for(LaunchOptions(resources=Resources(cpu="4")), "kubernetes") == 4


K8S = KubernetesSettings(
    namespace="science",
    image="registry.example/modelops:1.2",
    image_pull_policy="Always",
    service_account="runner-sa",
    env_from_secrets=("modelops-s3", "modelops-nats"),
    env_from_config_maps=("modelops-config",),
    ttl_seconds_after_finished=600,
    active_deadline_seconds=7200,
    backoff_limit_per_index=3,
)


def request() -> LaunchRequest:
    return LaunchRequest(
        job_id="job-abc",
        runners=5,
        options=LaunchOptions(runners=5, resources=Resources(cpu="2", memory="4Gi")),
        env={"MODELOPS_JOB_ID": "job-abc", "MODELOPS_WORKERS": "2"},
    )


def test_job_manifest_field_by_field() -> None:
    m = job_manifest(K8S, request())
    assert m["apiVersion"] == "batch/v1" and m["kind"] == "Job"
    assert m["metadata"]["name"] == job_name(K8S, "job-abc") == "mops-job-abc"
    assert m["metadata"]["namespace"] == "science"
    labels = m["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "modelops-runner"
    assert labels["modelops.io/job-id"] == "job-abc"
    spec = m["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 5
    assert spec["backoffLimitPerIndex"] == 3
    assert "backoffLimit" not in spec
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["activeDeadlineSeconds"] == 7200
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1] == {
        "action": "FailIndex",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [2]},
    }
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == labels
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "runner-sa"
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["name"] == "runner"
    assert c["image"] == "registry.example/modelops:1.2"
    assert c["imagePullPolicy"] == "Always"
    assert c["command"] == ["python", "-m", "modelops_runner"]
    assert c["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    env = {e["name"]: e for e in c["env"]}
    assert env["MODELOPS_JOB_ID"] == {"name": "MODELOPS_JOB_ID", "value": "job-abc"}
    assert env["MODELOPS_RUNNER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["envFrom"] == [
        {"secretRef": {"name": "modelops-s3"}},
        {"secretRef": {"name": "modelops-nats"}},
        {"configMapRef": {"name": "modelops-config"}},
    ]


def test_job_manifest_validates_against_the_kubernetes_schema() -> None:
    version = kubernetes_validate.utils.latest_version()
    kubernetes_validate.validate(job_manifest(K8S, request()), version, strict=True)
    bare = job_manifest(KubernetesSettings(), request())
    assert "envFrom" not in bare["spec"]["template"]["spec"]["containers"][0]
    kubernetes_validate.validate(bare, version, strict=True)


def test_settings_from_env_reads_kubernetes_options(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "MODELOPS_STATE_DIR": str(tmp_path),
            "MODELOPS_LAUNCHER": "kubernetes",
            "MODELOPS_K8S_NAMESPACE": "ns1",
            "MODELOPS_RUNNER_IMAGE": "img:2",
            "MODELOPS_K8S_ENV_FROM_SECRETS": "a, b",
            "MODELOPS_K8S_RUNNER_COMMAND": '["modelops-runner", "--x"]',
            "MODELOPS_RUNNER_COMMAND": "/usr/bin/env python3 -m modelops_runner",
        }
    )
    assert s.launcher == "kubernetes"
    assert s.blob_store == f"file://{tmp_path}/blobs"
    assert s.bundle_store == f"oci-layout:{tmp_path}/oci"
    assert s.kubernetes.namespace == "ns1" and s.kubernetes.image == "img:2"
    assert s.kubernetes.env_from_secrets == ("a", "b")
    assert s.kubernetes.command == ("modelops-runner", "--x")
    assert s.runner_command == ("/usr/bin/env", "python3", "-m", "modelops_runner")


# ------------------------------------------------------------------------ local launcher

# A "runner" that starts a grandchild (like its worker processes) and waits.
SLEEPER = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "path = os.environ['OUT'] + '/' + os.environ['MODELOPS_RUNNER_ID']\n"
    "open(path + '.tmp', 'w').write("
    "f\"{os.getpid()} {child.pid} {os.environ['MODELOPS_JOB_ID']}\")\n"
    "os.replace(path + '.tmp', path)  # atomic: the test never reads a half-written file\n"
    "print('runner up', flush=True)\n"
    "time.sleep(60)\n"
)


def _gone(pid: int) -> bool:
    return process_start_time(pid) is None


async def test_local_launcher_starts_logs_and_stops_whole_process_groups(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    launcher = LocalLauncher(
        tmp_path / "jobs",
        [sys.executable, "-c", SLEEPER],
        stop_grace_s=2.0,
        base_env={**os.environ, "OUT": str(out)},
    )
    req = LaunchRequest(
        job_id="job-l",
        runners=2,
        options=LaunchOptions(runners=2),
        env={"MODELOPS_JOB_ID": "job-l"},
    )
    await launcher.launch(req)
    await launcher.launch(req)  # idempotent: no second pair
    await wait_for(lambda: len(list(out.iterdir())) == 2, "both runners to start", timeout_s=10)
    pids = []
    for f in sorted(out.iterdir()):
        runner, child, job = f.read_text().split()
        assert job == "job-l"
        pids += [int(runner), int(child)]
    assert sorted(f.name for f in out.iterdir()) == ["job-l-0", "job-l-1"]
    await wait_for(
        lambda: "runner up" in (tmp_path / "jobs/job-l/runner-0.log").read_text(),
        "runner 0 to log that it is up",
        timeout_s=10,
    )
    recorded = json.loads((tmp_path / "jobs/job-l/runners.json").read_text())["runners"]
    assert {r["pid"] for r in recorded} == set(pids[::2])
    await launcher.stop("job-l")
    await wait_for(lambda: all(_gone(p) for p in pids), "runners and their children to exit")
    await launcher.close()


async def test_a_restarted_launcher_stops_runners_it_did_not_start(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out)}
    first = LocalLauncher(tmp_path / "jobs", [sys.executable, "-c", SLEEPER], base_env=env)
    req = LaunchRequest(
        job_id="job-m", runners=1, options=LaunchOptions(), env={"MODELOPS_JOB_ID": "job-m"}
    )
    await first.launch(req)
    await wait_for(lambda: len(list(out.iterdir())) == 1, "the runner to start", timeout_s=10)
    runner, child, _ = next(out.iterdir()).read_text().split()
    second = LocalLauncher(
        tmp_path / "jobs", [sys.executable, "-c", SLEEPER], base_env=env, stop_grace_s=2.0
    )
    await second.launch(req)  # sees the recorded live runner: starts nothing
    assert len(list(out.iterdir())) == 1
    await second.stop("job-m")
    await wait_for(
        lambda: _gone(int(runner)) and _gone(int(child)), "runner and child to exit", timeout_s=10
    )
    await first.stop("job-m")  # reaps its child; nothing left to kill
    await first.close()
    await second.close()


async def test_close_stops_the_runners_this_launcher_started(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    launcher = LocalLauncher(
        tmp_path / "jobs",
        [sys.executable, "-c", SLEEPER],
        stop_grace_s=2.0,
        base_env={**os.environ, "OUT": str(out)},
    )
    req = LaunchRequest(
        job_id="job-c", runners=1, options=LaunchOptions(), env={"MODELOPS_JOB_ID": "job-c"}
    )
    await launcher.launch(req)
    await wait_for(lambda: len(list(out.iterdir())) == 1, "the runner to start", timeout_s=10)
    assert await launcher.has_runners("job-c")
    runner, child, _ = next(out.iterdir()).read_text().split()
    await launcher.close()
    # the group's SIGKILL reaches the child at once, but its exit is the kernel's business
    await wait_for(
        lambda: _gone(int(runner)) and _gone(int(child)), "runner and child to exit", timeout_s=10
    )
    assert not await launcher.has_runners("job-c")


async def test_a_missing_runner_command_is_a_launch_error(tmp_path: Path) -> None:
    from modelops_submitter.errors import LaunchError

    launcher = LocalLauncher(tmp_path / "jobs", ["/nonexistent/modelops-runner"])
    with pytest.raises(LaunchError, match="cannot start runner command"):
        await launcher.launch(LaunchRequest(job_id="job-n", runners=1, options=LaunchOptions()))


def test_nats_user_and_password_go_into_the_connect_url_only(tmp_path: Path) -> None:
    from urllib.parse import urlparse

    from modelops_submitter.errors import ConfigError

    s = Settings.from_env(
        {
            "MODELOPS_STATE_DIR": str(tmp_path),
            "MODELOPS_NATS_URL": "nats://old:creds@nats.svc:4222",
            "MODELOPS_NATS_USER": "submitter",
            "MODELOPS_NATS_PASSWORD": "p@ss:w+rd",
        }
    )
    url = urlparse(s.nats_connect_url)
    assert (url.username, url.password, url.hostname, url.port) == (
        "submitter",
        "p@ss:w+rd",
        "nats.svc",
        4222,
    )
    assert Settings(state_dir=tmp_path).nats_connect_url == "nats://127.0.0.1:4222"
    with pytest.raises(ConfigError, match="MODELOPS_NATS_PASSWORD"):
        Settings(state_dir=tmp_path, nats_user="u", nats_password="a/b")
