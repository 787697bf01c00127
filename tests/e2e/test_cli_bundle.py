"""The seed's two commands, verbatim, through the real CLI (subprocess) on a copy of
examples/sir: with no configuration (embedded OCI layout), against a real registry, and
through the registrar and bundler services on a real nats-server. Plus what users meet when
things go wrong: edited files, unsafe paths, a registry or NATS that is down."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from modelops_bundle.oci import compose_bundle
from modelops_bundle.pull import pull_bundle, read_bundle_index
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.stores import LayoutStore, RegistryStore
from modelops_bundler import app as bundler_app
from modelops_contracts import Registry, decode
from modelops_contracts.subjects import KV_BUNDLES, KV_MODELS
from modelops_registrar import app as registrar_app
from modelops_runtime.processes import NatsServer, free_port
from tests.integration.bundler.services import ServicesThread
from tests.support.deploy_files import nats_passwords
from tests.support.servers import OciRegistry

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "sir"
NATS_CONFIG = REPO_ROOT / "deploy" / "nats" / "nats-server.conf"
CLI = Path(sys.executable).parent / "modelops-bundle"
REGISTER = ("register-model", "model:StochasticSIR", "--path", "src/model.py", "--data", "data/")
BUILD = ("build", "--push")
RUN_MODEL = """
import json, sys
from modelops_runner.model_contract import ModelCache, run_model
model, scenario = ModelCache([sys.argv[1]]).get("model:StochasticSIR/lockdown")
out = run_model(
    model, scenario=scenario, params={"beta": 0.05, "gamma": 0.1, "I0": 10}, seed=7,
    config={"days": 30},
)
print(json.dumps({"summary": out["summary"], "days": len(out["timeseries"]["day"])}))
"""
REF_RE = re.compile(r"^(?P<host>[^/\s]+)/(?P<repo>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
BUNDLED = {
    "src/model.py",
    "src/sir_helpers.py",
    "data/population.csv",
    "data/contacts/contact_matrix.csv",
}


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test alone: its streams, consumers and KV start empty."""
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The machine's environment minus any ModelOps or registry configuration."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    clean.update(DOCKER_CONFIG=str(tmp_path / "docker-config"), COLUMNS="200")
    return clean


def copy_example(dest: Path) -> Path:
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".modelops", ".modelops-bundle")
    )
    return dest


def cli(
    *args: str, cwd: Path, env: dict[str, str], ok: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if ok:
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def pushed_ref(proc: subprocess.CompletedProcess[str]) -> re.Match[str]:
    """The reference on the last stdout line, alone."""
    last = proc.stdout.rstrip("\n").splitlines()[-1]
    match = REF_RE.match(last)
    assert match, f"last stdout line is not a bundle reference: {last!r}"
    return match


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit code 1; stderr is one `error:` line (with indented listing lines, if any) and
    a hint: no traceback, no log noise."""
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:"), proc.stderr
    assert all(line.startswith(("hint:", "  ")) for line in lines[1:]), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def row(status_out: str, path: str) -> str:
    [line] = [line for line in status_out.splitlines() if f" {path} " in line]
    return line


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_seed_commands_with_no_configuration(tmp_path: Path, env: dict[str, str]) -> None:
    project = copy_example(tmp_path / "sir")

    cli(*REGISTER, cwd=project, env=env)
    ref = pushed_ref(cli(*BUILD, cwd=project, env=env))

    assert (ref["host"], ref["repo"]) == ("local", "sir")
    store = LayoutStore(project / ".modelops" / "oci")
    assert store.resolve("sir", "latest") == ref["digest"]
    index = read_bundle_index(store, ref.group(0))
    assert {f.path for f in index.files} == BUNDLED  # followed the import, honoured .modelopsignore
    assert index.models["StochasticSIR"].outputs == ["summary", "timeseries"]

    # The same content registered from another copy, in another folder, is the same bundle.
    other = copy_example(tmp_path / "elsewhere" / "copy")
    cli(*REGISTER, cwd=other, env=env)
    again = pushed_ref(cli(*BUILD, cwd=other, env=env))
    assert again["digest"] == ref["digest"]
    assert again["repo"] == "copy"


def test_edits_show_in_status_block_the_build_and_repush_only_the_changed_blob(
    tmp_path: Path, env: dict[str, str]
) -> None:
    project = copy_example(tmp_path / "sir")
    cli(*REGISTER, cwd=project, env=env)
    first = pushed_ref(cli(*BUILD, cwd=project, env=env))
    blobs = project / ".modelops" / "oci" / "blobs" / "sha256"
    before = set(os.listdir(blobs))

    population = project / "data" / "population.csv"
    population.write_text("group,size\nchild,2500\nadult,5600\nsenior,2000\n")
    contacts = project / "data" / "contacts" / "contact_matrix.csv"
    saved = contacts.read_bytes()
    contacts.unlink()

    status = cli("status", cwd=project, env=env).stdout
    assert "modified" in row(status, "data/population.csv")
    assert "missing" in row(status, "data/contacts/contact_matrix.csv")
    assert "current" in row(status, "src/model.py")

    refused = cli(*BUILD, cwd=project, env=env, ok=False)
    assert_one_line_error(refused, "data/population.csv", "data/contacts/contact_matrix.csv")

    contacts.write_bytes(saved)
    cli(*REGISTER, cwd=project, env=env)
    second = pushed_ref(cli(*BUILD, cwd=project, env=env))

    assert second["digest"] != first["digest"]
    new = set(os.listdir(blobs)) - before
    assert sha256(population.read_bytes()) in new
    assert len(new) == 3  # that file's blob, the new config and the new manifest: nothing else
    assert "in the latest pushed bundle" in cli("status", cwd=project, env=env).stdout


def test_seed_commands_against_a_registry(
    tmp_path: Path, env: dict[str, str], oci_registry: OciRegistry
) -> None:
    project = copy_example(tmp_path / "sir")
    repo = f"e2e/sir-{uuid.uuid4().hex[:8]}"
    env.update(MODELOPS_REGISTRY=oci_registry.host, MODELOPS_REPOSITORY=repo)

    cli(*REGISTER, cwd=project, env=env)
    ref = pushed_ref(cli(*BUILD, cwd=project, env=env))

    assert (ref["host"], ref["repo"]) == (oci_registry.host, repo)
    store = RegistryStore(oci_registry.host, retries=1, backoff=0.01)
    assert store.resolve(repo, "latest") == ref["digest"]
    pulled = pull_bundle(store, ref.group(0), cache_dir=tmp_path / "cache")
    for path in BUNDLED:
        assert (pulled / path).read_bytes() == (project / path).read_bytes()

    # The pulled bundle runs under the runner's model contract (in a process of its own, so
    # the example's modules never land in this test process).
    ran = subprocess.run(
        [sys.executable, "-c", RUN_MODEL, str(pulled / "src")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(ran.stdout)
    assert result["days"] == 31  # day 0 plus the 30 configured
    assert 0.0 <= result["summary"]["attack_rate"] <= 1.0
    assert result["summary"]["peak_infected"] > 0


async def _kv_value(url: str, bucket: str, key: str) -> bytes:
    nc = await nats.connect(url)
    try:
        return (await (await nc.jetstream().key_value(bucket)).get(key)).value or b""
    finally:
        await nc.close()


def test_seed_commands_through_the_services(
    tmp_path: Path, env: dict[str, str], oci_registry: OciRegistry, bus: NatsServer
) -> None:
    project = copy_example(tmp_path / "sir")
    repo = f"e2e/bus-{uuid.uuid4().hex[:8]}"
    env.update(
        MODELOPS_NATS_URL=bus.url,
        MODELOPS_REGISTRY=oci_registry.host,
        MODELOPS_REPOSITORY=repo,
    )
    services = ServicesThread(
        registrar=registrar_app.Settings(nats_url=bus.url),
        bundler=bundler_app.Settings(nats_url=bus.url, bundle_store=oci_registry.host),
    )

    with services:
        registered = cli(*REGISTER, cwd=project, env=env)
        built = cli(*BUILD, cwd=project, env=env)

    ref = pushed_ref(built)
    assert "registrar: StochasticSIR recorded at revision 1" in registered.stdout
    assert "through the bundler" in built.stderr
    local = load_registry(project)
    expected = compose_bundle(local, registry_yaml=dump_registry(local)).manifest_digest
    assert ref["digest"] == expected  # the bundler wrote exactly what a direct push writes
    assert ref.group(0) == f"{oci_registry.host}/{repo}@{expected}"
    kv_registry = decode(asyncio.run(_kv_value(bus.url, KV_MODELS, repo)), Registry)
    assert kv_registry.models["StochasticSIR"] == local.models["StochasticSIR"]
    record = asyncio.run(_kv_value(bus.url, KV_BUNDLES, expected.replace(":", ".")))
    assert ref.group(0).encode() in record


def test_a_running_embedded_stack_is_found_without_configuration(
    tmp_path: Path, env: dict[str, str], bus: NatsServer
) -> None:
    """`.modelops/stack.json` (written by `modelops up`) names the bus and the bundle store."""
    project = copy_example(tmp_path / "sir")
    layout = tmp_path / "stack" / "oci"
    services = ServicesThread(
        registrar=registrar_app.Settings(nats_url=bus.url),
        bundler=bundler_app.Settings(nats_url=bus.url, bundle_store=f"oci-layout:{layout}"),
    )
    # The CLI trusts stack.json only while its pid runs a modelops program: a stand-in that
    # waits on stdin until the test closes it.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "modelops-up-stand-in"],
        stdin=subprocess.PIPE,
    )
    try:
        (project / ".modelops").mkdir()
        (project / ".modelops" / "stack.json").write_text(
            json.dumps(
                {
                    "nats_url": bus.url,
                    "pid": stand_in.pid,
                    "bundle_store": f"oci-layout:{layout}",
                    "blob_store": (tmp_path / "stack" / "blobs").as_uri(),
                }
            )
        )
        with services:
            registered = cli(*REGISTER, cwd=project, env=env)
            built = cli(*BUILD, cwd=project, env=env)
    finally:
        assert stand_in.stdin is not None
        stand_in.stdin.close()
        stand_in.wait(timeout=10)

    ref = pushed_ref(built)
    assert "registrar: StochasticSIR recorded" in registered.stdout
    assert "through the bundler" in built.stderr
    assert LayoutStore(layout).resolve("sir", "latest") == ref["digest"]


def test_seed_commands_through_the_services_as_least_privilege_nats_users(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/nats/nats-server.conf: each component logs in as its own user and may only do
    its own job; the CLI and both services still do theirs."""
    passwords = nats_passwords("registrar", "bundler", "cli")
    for user in ("registrar", "bundler", "submitter", "runner", "cli"):
        monkeypatch.setenv(f"MODELOPS_NATS_{user.upper()}_PASSWORD", passwords.get(user, "x"))
    project = copy_example(tmp_path / "sir")
    layout = tmp_path / "oci"
    with NatsServer(tmp_path / "nats", config_file=NATS_CONFIG) as secured:
        env.update(
            MODELOPS_NATS_URL=secured.url,
            MODELOPS_NATS_USER="cli",
            MODELOPS_NATS_PASSWORD=passwords["cli"],
            MODELOPS_REGISTRY=f"oci-layout:{layout}",
        )
        common = {"nats_url": secured.url}
        services = ServicesThread(
            registrar=registrar_app.Settings(
                **common, nats_user="registrar", nats_password=passwords["registrar"]
            ),
            bundler=bundler_app.Settings(
                **common,
                nats_user="bundler",
                nats_password=passwords["bundler"],
                bundle_store=f"oci-layout:{layout}",
            ),
        )
        with services:
            registered = cli(*REGISTER, cwd=project, env=env)
            built = cli(*BUILD, cwd=project, env=env)

    assert "registrar: StochasticSIR recorded at revision 1" in registered.stdout
    assert "through the bundler" in built.stderr
    assert LayoutStore(layout).resolve("sir", "latest") == pushed_ref(built)["digest"]


def test_unsafe_paths_are_refused_at_registration_and_at_build(
    tmp_path: Path, env: dict[str, str]
) -> None:
    project = copy_example(tmp_path / "sir")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.csv").write_text("x\n")

    outside = cli(*REGISTER[:-1], "../outside", cwd=project, env=env, ok=False)
    assert_one_line_error(outside, "outside the project")

    cli(*REGISTER, cwd=project, env=env)
    registry_yaml = project / ".modelops-bundle" / "registry.yaml"
    original = registry_yaml.read_text()
    for bad in ("../population.csv", "/etc/population.csv"):
        registry_yaml.write_text(original.replace("path: data/population.csv", f"path: {bad}"))
        refused = cli(*BUILD, cwd=project, env=env, ok=False)
        assert_one_line_error(refused, "population.csv")
        assert "'..'" in refused.stderr or "absolute" in refused.stderr


def test_registry_down_is_one_clear_line_after_bounded_retries(
    tmp_path: Path, env: dict[str, str]
) -> None:
    project = copy_example(tmp_path / "sir")
    cli(*REGISTER, cwd=project, env=env)
    dead = f"127.0.0.1:{free_port()}"

    proc = cli(*BUILD, "--registry", dead, cwd=project, env=env, ok=False)

    assert_one_line_error(proc, f"cannot reach registry {dead}", "attempts")
    assert proc.stdout == ""


def test_stack_configured_but_nats_down_is_one_clear_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    project = copy_example(tmp_path / "sir")
    env["MODELOPS_NATS_URL"] = f"nats://127.0.0.1:{free_port()}"

    proc = cli(*REGISTER, "--timeout", "1", cwd=project, env=env, ok=False)

    assert_one_line_error(proc, "cannot connect to NATS")
    assert "StochasticSIR" in load_registry(project).models  # the local registration stands
