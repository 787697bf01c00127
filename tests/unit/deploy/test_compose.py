"""docker-compose.yml: parses, every service is runnable, secrets and settings line up.

No Docker engine here, so the file is checked statically: each service has an image or a build
whose Dockerfile exists, each of our services runs a module that exists in the repository, every
`${VAR}` it needs is listed in deploy/compose.env.example, NATS gets each user's password and each
service logs in as its own user.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from modelops_bundle.stores import parse_location

from .kustomize import render
from .repo import DEPLOY, REPO, load_render_config

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
OURS = ("registrar", "bundler", "submitter")
ENV_EXAMPLE = DEPLOY / "compose.env.example"
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def test_services_are_the_stack():
    assert set(SERVICES) == {"nats", "registry", "s3", "s3-init", *OURS}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_or_a_build(name: str):
    service = SERVICES[name]
    assert "image" in service or "build" in service
    if "build" in service:
        context = REPO / service["build"]["context"]
        assert (context / service["build"]["dockerfile"]).is_file()
    if name not in OURS:
        assert ":" in service["image"] and not service["image"].endswith(":latest")


@pytest.mark.parametrize("name", OURS)
def test_our_services_run_a_module_of_the_repository(name: str):
    service = SERVICES[name]
    assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    python, flag, module = service["command"]
    assert (python, flag, module) == ("python", "-m", f"modelops_{name}")
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"{module} is not installed"
    package_dir = REPO / "services" / name / "src" / module
    assert (package_dir / "__init__.py").is_file()
    assert (package_dir / "__main__.py").is_file(), (
        f"`python -m {module}` needs {module}/__main__.py"
    )


@pytest.mark.parametrize("name", OURS)
def test_each_service_logs_in_as_its_own_nats_user_and_is_health_checked(name: str):
    env = SERVICES[name]["environment"]
    assert env["MODELOPS_NATS_USER"] == name
    assert (
        VAR.search(env["MODELOPS_NATS_PASSWORD"]).group(1)
        == f"MODELOPS_NATS_{name.upper()}_PASSWORD"
    )
    assert env["MODELOPS_NATS_URL"] == "nats://nats:4222"
    assert env["MODELOPS_HEALTH_PORT"] == "8080"
    assert env["MODELOPS_LOG_FORMAT"] == "json"
    assert "http://127.0.0.1:8080/readyz" in " ".join(SERVICES[name]["healthcheck"]["test"])
    assert SERVICES[name]["depends_on"]["nats"] == {"condition": "service_healthy"}


def test_nats_runs_the_permissions_config_with_every_password():
    rc = load_render_config()
    nats = SERVICES["nats"]
    assert nats["command"] == ["-c", "/etc/nats/nats-server.conf", "-sd", "/data/jetstream"]
    mount = "./deploy/nats/nats-server.conf:/etc/nats/nats-server.conf:ro"
    assert mount in nats["volumes"]
    assert (REPO / "deploy" / "nats" / "nats-server.conf").is_file()
    assert set(nats["environment"]) == {rc.password_env(u.name) for u in rc.USERS}
    for key, value in nats["environment"].items():
        assert VAR.search(value).group(1) == key


def test_submitter_launches_local_runners_as_the_runner_user():
    env = SERVICES["submitter"]["environment"]
    assert env["MODELOPS_LAUNCHER"] == "local"
    assert env["MODELOPS_RUNNER_NATS_USER"] == "runner"
    assert VAR.search(env["MODELOPS_RUNNER_NATS_PASSWORD"]).group(1) == (
        "MODELOPS_NATS_RUNNER_PASSWORD"
    )
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MODELOPS_S3_ENDPOINT"} <= set(env)
    assert SERVICES["submitter"]["depends_on"]["s3-init"] == {
        "condition": "service_completed_successfully"
    }


def test_stores_name_what_the_libraries_understand():
    """The bundle store value must parse as a registry (a '/' would make it a layout folder)."""
    compose_env = SERVICES["submitter"]["environment"]
    loc = parse_location(compose_env["MODELOPS_BUNDLE_STORE"])
    assert (loc.kind, loc.scheme, loc.host) == ("registry", "http", "registry:5000")
    assert compose_env["MODELOPS_BLOB_STORE"].startswith("s3://")
    for root in (DEPLOY / "k8s" / "base", DEPLOY / "k8s" / "overlays" / "example"):
        config = next(d for d in render(root) if d["metadata"]["name"] == "modelops-config")
        assert parse_location(config["data"]["MODELOPS_BUNDLE_STORE"]).kind == "registry"
        assert config["data"]["MODELOPS_BLOB_STORE"].startswith("s3://")


def test_every_variable_is_documented_in_the_env_example():
    used = set(VAR.findall((REPO / "docker-compose.yml").read_text()))
    listed = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used == listed


def test_ports_are_published_on_loopback_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_s3_admin_keys_reach_the_server_and_the_bucket_is_created():
    s3 = SERVICES["s3"]
    assert VAR.search(s3["environment"]["AWS_ACCESS_KEY_ID"]).group(1) == "MODELOPS_S3_ACCESS_KEY"
    assert "-s3" in s3["command"] and "-s3.port=8333" in s3["command"]
    assert SERVICES["submitter"]["environment"]["MODELOPS_S3_ENDPOINT"] == "http://s3:8333"
    bucket = SERVICES["submitter"]["environment"]["MODELOPS_BLOB_STORE"].removeprefix("s3://")
    assert f"s3.bucket.create -name {bucket}" in SERVICES["s3-init"]["command"][0]


def test_the_submitter_reads_its_compose_environment():
    from modelops_submitter.settings import Settings

    env = {k: VAR.sub("secret", v) for k, v in SERVICES["submitter"]["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.launcher == "local"
    assert str(settings.state_dir) == "/var/lib/modelops"
    assert settings.blob_store == "s3://modelops"
    assert settings.s3_endpoint == "http://s3:8333"
