"""Kubernetes manifests: schema-valid offline, least-privilege RBAC, probes, env and references.

The base and the example overlay are rendered with our small kustomize renderer (no kustomize
binary on this machine) and every resource is validated against the Kubernetes 1.37 schemas by
kubernetes-validate in strict mode (unknown fields are errors).
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .kustomize import Unsupported, render
from .repo import DEPLOY, REPO, load_render_config

K8S_VERSION = "1.37.0"
BASE = DEPLOY / "k8s" / "base"
OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
SERVICES = ("registrar", "bundler", "submitter")
HEALTH_PORT = 8080
# What the services and runners read from their environment (DESIGN.md, services' settings).
REQUIRED_ENV = {
    "MODELOPS_NATS_URL",
    "MODELOPS_NATS_USER",
    "MODELOPS_NATS_PASSWORD",
    "MODELOPS_BUNDLE_STORE",
    "MODELOPS_BLOB_STORE",
    "MODELOPS_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MODELOPS_HEALTH_PORT",
    "MODELOPS_LOG_FORMAT",
    "MODELOPS_K8S_NAMESPACE",
    "MODELOPS_RUNNER_IMAGE",
}


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return render(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[dict]:
    return render(OVERLAY)


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# ------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("root", [BASE, OVERLAY], ids=["base", "overlay"])
def test_every_resource_validates_against_the_kubernetes_schemas(root: Path):
    docs = render(root)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_bites_on_a_broken_deployment(base: list[dict]):
    broken = yaml.safe_load(yaml.safe_dump(one(base, "Deployment", "registrar")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_renderer_refuses_features_it_does_not_implement(tmp_path: Path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(Unsupported, match="commonLabels"):
        render(tmp_path)


# ------------------------------------------------------------------------------------- RBAC


def test_submitter_role_is_exactly_jobs_and_pod_reads_in_its_namespace(overlay: list[dict]):
    assert not find(overlay, "ClusterRole") and not find(overlay, "ClusterRoleBinding")
    (role,) = find(overlay, "Role")
    assert role["metadata"] == {
        "name": "modelops-submitter",
        "namespace": "modelops",
        "labels": {"app.kubernetes.io/part-of": "modelops"},
    }
    rules = {
        (tuple(r["apiGroups"]), tuple(sorted(r["resources"]))): sorted(r["verbs"])
        for r in role["rules"]
    }
    assert rules == {
        (("batch",), ("jobs",)): ["create", "delete", "get", "list", "watch"],
        (("",), ("pods", "pods/log")): ["get", "list"],
    }
    assert all(set(r) == {"apiGroups", "resources", "verbs"} for r in role["rules"])  # no names

    (binding,) = find(overlay, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "modelops-submitter",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "modelops-submitter", "namespace": "modelops"}
    ]


def test_only_the_submitter_gets_an_api_token(overlay: list[dict]):
    accounts = {d["metadata"]["name"]: d for d in find(overlay, "ServiceAccount")}
    assert set(accounts) == {
        "modelops-registrar",
        "modelops-bundler",
        "modelops-submitter",
        "modelops-runner",
        "modelops-nats",
    }
    for name, sa in accounts.items():
        assert sa.get("automountServiceAccountToken", True) is (name == "modelops-submitter")
    for workload in find(overlay, "Deployment") + find(overlay, "StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        is_submitter = workload["metadata"]["name"] == "submitter"
        assert pod["automountServiceAccountToken"] is is_submitter
        assert pod["serviceAccountName"] == f"modelops-{workload['metadata']['name']}"
    config = one(overlay, "ConfigMap", "modelops-config")["data"]
    assert config["MODELOPS_K8S_SERVICE_ACCOUNT"] == "modelops-runner"


# --------------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("name", SERVICES)
def test_service_deployment_runs_its_module_with_probes_resources_and_no_privileges(
    overlay: list[dict], name: str
):
    deployment = one(overlay, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert c["args"] == ["python", "-m", f"modelops_{name}"] and "command" not in c
    assert (REPO / "services" / name / "src" / f"modelops_{name}" / "__init__.py").is_file()

    assert c["ports"] == [{"name": "health", "containerPort": HEALTH_PORT}]
    env = {e["name"]: e for e in c["env"]}
    assert env["MODELOPS_HEALTH_PORT"]["value"] == str(HEALTH_PORT)
    assert env["MODELOPS_K8S_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    probes = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in probes.items():
        assert c[probe]["httpGet"] == {"path": path, "port": "health"}, probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(HEALTH_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"

    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert set(c["resources"]["limits"]) == {"memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/tmp" in mounts  # a read-only root needs a writable /tmp


def test_the_submitter_never_runs_twice(overlay: list[dict]):
    submitter = one(overlay, "Deployment", "submitter")
    assert submitter["spec"]["replicas"] == 1
    assert submitter["spec"]["strategy"] == {"type": "Recreate"}


def _env_of(docs: list[dict], deployment: dict) -> dict[str, str]:
    """Every variable the container gets, resolving envFrom ConfigMaps and Secrets."""
    c = container(deployment)
    out: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            out.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            out.update(one(docs, "Secret", source["secretRef"]["name"])["stringData"])
    for e in c.get("env", []):
        out[e["name"]] = e.get("value", "<from " + next(iter(e.get("valueFrom", {"?": 0}))) + ">")
    return out


def test_the_submitter_gets_every_setting_the_services_read(overlay: list[dict]):
    env = _env_of(overlay, one(overlay, "Deployment", "submitter"))
    assert REQUIRED_ENV <= set(env), REQUIRED_ENV - set(env)
    assert env["MODELOPS_LOG_FORMAT"] == "json"
    assert env["MODELOPS_NATS_URL"] == "nats://nats:4222"
    assert env["MODELOPS_NATS_USER"] == "submitter"
    assert env["MODELOPS_LAUNCHER"] == "kubernetes"


@pytest.mark.parametrize("name", ["registrar", "bundler"])
def test_other_services_get_their_own_nats_user_and_no_s3_keys(overlay: list[dict], name: str):
    env = _env_of(overlay, one(overlay, "Deployment", name))
    assert env["MODELOPS_NATS_USER"] == name
    assert "AWS_SECRET_ACCESS_KEY" not in env


def test_the_runner_secrets_the_submitter_hands_on_exist(overlay: list[dict]):
    config = one(overlay, "ConfigMap", "modelops-config")["data"]
    for name in config["MODELOPS_K8S_ENV_FROM_CONFIG_MAPS"].split(","):
        one(overlay, "ConfigMap", name)
    assert json.loads(config["MODELOPS_K8S_RUNNER_COMMAND"]) == [
        "/usr/bin/tini",
        "--",
        "python",
        "-m",
        "modelops_runner",
    ]
    names = config["MODELOPS_K8S_ENV_FROM_SECRETS"].split(",")
    runner_env: dict[str, str] = {}
    for name in names:
        runner_env.update(one(overlay, "Secret", name)["stringData"])
    assert runner_env["MODELOPS_NATS_USER"] == "runner"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MODELOPS_NATS_PASSWORD"} <= set(
        runner_env
    )


def test_every_referenced_configmap_and_secret_exists(overlay: list[dict]):
    for workload in find(overlay, "Deployment") + find(overlay, "StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for source in c.get("envFrom", []):
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                ref = source.get("configMapRef") or source["secretRef"]
                if not ref.get("optional"):
                    one(overlay, kind, ref["name"])
            for e in c.get("env", []):
                key_ref = e.get("valueFrom", {}).get("secretKeyRef")
                if key_ref:
                    secret = one(overlay, "Secret", key_ref["name"])
                    assert key_ref["key"] in secret["stringData"], (e["name"], key_ref)
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                one(overlay, "ConfigMap", volume["configMap"]["name"])


def test_overlay_pins_one_image_and_the_runner_image_matches(overlay: list[dict], base):
    images = {container(d)["image"] for d in find(overlay, "Deployment")}
    assert images == {"registry.example.org/modelops/modelops:0.1.0"}
    config = one(overlay, "ConfigMap", "modelops-config")["data"]
    assert config["MODELOPS_RUNNER_IMAGE"] in images
    assert {container(d)["image"] for d in find(base, "Deployment")} == {
        one(base, "ConfigMap", "modelops-config")["data"]["MODELOPS_RUNNER_IMAGE"]
    }


def test_everything_lives_in_the_modelops_namespace(overlay: list[dict]):
    for doc in overlay:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == "modelops"
        else:
            assert doc["metadata"]["namespace"] == "modelops", doc["metadata"]["name"]


# -------------------------------------------------------------------------------------- NATS


def test_nats_runs_jetstream_on_a_volume_with_the_generated_permissions(overlay: list[dict]):
    rc = load_render_config()
    sts = one(overlay, "StatefulSet", "nats")
    c = container(sts)
    assert c["args"] == ["-c", "/etc/nats/nats-server.conf", "-sd", "/data/jetstream"]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "50Gi"  # the overlay's patch replaced the base's 20Gi
    }
    assert {m["mountPath"]: m["name"] for m in c["volumeMounts"]} == {
        "/etc/nats": "config",
        "/data": "data",
    }
    conf = one(overlay, "ConfigMap", "nats-config")["data"]["nats-server.conf"]
    assert conf == rc.render() == (DEPLOY / "nats" / "nats-server.conf").read_text()

    passwords = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    for user in rc.USERS:
        ref = passwords[rc.password_env(user.name)]
        assert ref == {"name": f"modelops-nats-{user.name}", "key": "MODELOPS_NATS_PASSWORD"}
        secret = one(overlay, "Secret", ref["name"])["stringData"]
        assert secret["MODELOPS_NATS_USER"] == user.name
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz?js-enabled-only=true", "port": "monitor"}


def test_the_submitter_reads_the_runner_job_settings_from_this_environment(overlay: list[dict]):
    """The overlay's env through the submitter's own settings parser: names must line up."""
    from modelops_submitter.settings import Settings

    env = _env_of(overlay, one(overlay, "Deployment", "submitter"))
    env["MODELOPS_K8S_NAMESPACE"] = "modelops"  # the fieldRef's value in the pod
    settings = Settings.from_env(env)
    k8s = settings.kubernetes
    assert settings.launcher == "kubernetes"
    assert str(settings.state_dir) == "/var/lib/modelops"
    assert k8s.namespace == "modelops"
    assert k8s.image == "registry.example.org/modelops/modelops:0.1.0"
    assert k8s.service_account == "modelops-runner"
    assert k8s.env_from_secrets == ("modelops-nats-runner", "modelops-s3", "modelops-registry")
    assert k8s.env_from_config_maps == ("modelops-config",)
    assert k8s.command == ("/usr/bin/tini", "--", "python", "-m", "modelops_runner")
