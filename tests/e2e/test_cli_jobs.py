"""Jobs through the real CLI on the real embedded stack (`modelops up --detach`), as a user
types them: the seed's three steps (register-model, build --push, submit_job.py --bundle
sha256:…), `modelops submit/watch/jobs/results/plot/logs/cancel`, another system publishing a
SubmitJob with nothing but contracts and nats-py, and the errors a person can meet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from modelops_runtime.nats_setup import connect, ensure_jetstream
from modelops_runtime.processes import ManagedProcess, NatsServer, free_port
from tests.support.servers import OciRegistry, SeaweedS3

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent
DAYS = 160  # StochasticSIR's default config: one row per day, day 0 included
TIMEOUT_S = 180

FLAKY_MODEL = '''"""Fails for x > 0.7; sleeps `sleep` seconds first; one row out."""

import sys
import time


class Flaky:
    outputs = ["value"]
    parameters = {"x": {"lower": 0.0, "upper": 1.0}, "sleep": {"lower": 0.0, "upper": 5.0}}

    def simulate(self, params, seed):
        time.sleep(params["sleep"])
        if params["x"] > 0.7:
            print("flaky: giving up", file=sys.stderr)
            raise ValueError(f"x={params['x']} is too large")
        return {"value": {"y": [params["x"] * 2.0]}}
'''


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    ref: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.ref.rsplit("@", 1)[1]

    def run(
        self, *args: str, tool: str = "modelops", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a console script in the project, as a user would."""
        return _run([str(BIN / tool), *args], cwd=self.root, env=self.env, check=check)

    def python(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([sys.executable, *args], cwd=self.root, env=self.env, check=check)


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str], check: bool
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv[1:]} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.strip().splitlines()[-1]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, `error: …` plus `hint: …` on stderr, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and any(line.startswith("hint: ") for line in lines), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    return {**env, "COLUMNS": "200", **extra}


@pytest.fixture(scope="module")
def sir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A copy of examples/sir with its own embedded stack, registered and pushed."""
    root = tmp_path_factory.mktemp("jobs") / "sir"
    shutil.copytree(
        EXAMPLES / "sir", root, ignore=shutil.ignore_patterns("__pycache__", ".modelops*")
    )
    project = Project(root=root, env=clean_env())
    up = project.run("up", "--detach")
    assert "ModelOps stack is up" in up.stdout
    try:
        project.run(
            "register-model",
            "model:StochasticSIR",
            "--path",
            "src/model.py",
            "--data",
            "data/",
            tool="modelops-bundle",
        )
        project.ref = last_line(project.run("build", "--push", tool="modelops-bundle"))
        assert project.ref.startswith("local/sir@sha256:")
        yield project
    finally:
        stack = json.loads((root / ".modelops" / "stack.json").read_text())
        down = project.run("down", check=False)
        assert down.returncode == 0, down.stderr
        assert not (root / ".modelops" / "stack.json").exists()
        for pid in (stack["pid"], stack["nats_pid"]):
            assert not Path(f"/proc/{pid}").exists() or b"Z" in _state(pid), f"pid {pid} still runs"


def _state(pid: int) -> bytes:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return b"Z"
    return stat[stat.rindex(b")") + 2 :][:1]


@pytest.fixture(scope="module")
def flaky(sir: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A second project (a model that fails for x > 0.7) on the same stack via MODELOPS_HOME."""
    root = tmp_path_factory.mktemp("flaky") / "flaky"
    (root / "src").mkdir(parents=True)
    (root / "src" / "model.py").write_text(FLAKY_MODEL)
    (root / "sets.csv").write_text("x,sleep\n0.1,0\n0.5,0\n0.8,0\n0.9,0\n")
    (root / "slow.csv").write_text("x,sleep\n" + "".join(f"{i / 100},1.0\n" for i in range(30)))
    project = Project(root=root, env=clean_env(MODELOPS_HOME=str(sir.root / ".modelops")))
    project.run("register-model", "model:Flaky", "--path", "src/model.py", tool="modelops-bundle")
    project.ref = last_line(project.run("build", "--push", tool="modelops-bundle"))
    return project


# ------------------------------------------------------------------------------ workflows


def test_seed_steps_then_results_as_parquet_and_csv(sir: Project) -> None:
    """Step 3 of the seed verbatim: `python submit_job.py --bundle sha256:…` (a bare digest)."""
    proc = sir.python(
        str(EXAMPLES / "submit_job.py"), "--bundle", sir.digest, "--n", "4", "--replicates", "3"
    )
    job = last_line(proc)
    assert job.startswith("job-") and "completed: 12/12 tasks, 0 failed" in proc.stderr

    saved = sir.run("results", job, "-o", "out/timeseries.parquet")
    assert last_line(saved) == "out/timeseries.parquet" and "output 'timeseries'" in saved.stderr
    table = pq.read_table(sir.root / "out" / "timeseries.parquet")
    assert table.num_rows == 12 * (DAYS + 1)  # tasks x output rows
    assert table.column_names[:2] == ["task_id", "param_id"]
    assert set(table.column_names[2:5]) == {"beta", "gamma", "I0"}
    assert table.column_names[5:] == ["seed", "replicate", "day", "S", "I", "R", "incidence"]
    assert len(set(table["task_id"].to_pylist())) == 12
    assert len(set(table["param_id"].to_pylist())) == 4
    assert set(table["replicate"].to_pylist()) == {0, 1, 2}

    sir.run("results", job, "--output", "summary", "-o", "out/summary.csv")
    summary = pacsv.read_csv(sir.root / "out" / "summary.csv")
    assert summary.num_rows == 12
    assert {"task_id", "param_id", "beta", "seed", "replicate", "attack_rate"} <= set(
        summary.column_names
    )
    assert len(set(summary["seed"].to_pylist())) == 12  # distinct seeds per replicate and set


def test_study_submit_wait_jobs_plot_and_cached_resubmit(sir: Project) -> None:
    create = sir.run(
        "study",
        "create",
        "--space",
        "parameters.yaml",
        "--method",
        "sobol",
        "--n",
        "4",
        "--replicates",
        "2",
        "--seed",
        "3",
        "--name",
        "cli-e2e",
        "-o",
        "studies/cli.json",
    )
    assert last_line(create) == "studies/cli.json" and "= 8 tasks" in create.stderr
    submitted = sir.run("submit", "studies/cli.json", "--bundle", sir.ref, "--wait")
    job = submitted.stdout.strip().splitlines()[0]
    assert "completed: 8/8 tasks, 0 failed" in submitted.stderr

    listing = sir.run("jobs")
    assert any(
        job in line and "completed" in line and "cli-e2e" in line
        for line in listing.stdout.splitlines()
    )

    plot = sir.run("plot", job, "-o", "out/cli.png")
    assert "time series" in plot.stderr
    assert (sir.root / "out" / "cli.png").read_bytes()[:4] == b"\x89PNG"

    again = sir.run("submit", "studies/cli.json", "--bundle", "latest", "--wait")  # a tag this time
    assert "8 already computed" in again.stderr and "8 cached" in again.stderr


def test_watch_exits_nonzero_when_tasks_fail_and_logs_say_why(flaky: Project) -> None:
    flaky.run("study", "create", "--table", "sets.csv", "--replicates", "2", "-o", "study.json")
    job = last_line(flaky.run("submit", "study.json", "--bundle", flaky.digest))
    watch = flaky.run("watch", job, check=False)
    assert_one_line_error(watch, f"4 of 8 tasks of job {job} failed", f"modelops logs {job}")
    assert "8/8 tasks, 4 failed" in watch.stderr

    listing = flaky.run("logs", job)
    assert listing.stdout.count("model_error") == 4 and "x=0.9 is too large" in listing.stdout
    task = listing.stdout.split("│ ")[5].split()[0]  # first data row, first column
    detail = flaky.run("logs", job, task[:10])
    assert "ValueError" in detail.stdout and "traceback" in detail.stdout
    assert "flaky: giving up" in detail.stdout  # the stderr tail
    assert_one_line_error(flaky.run("logs", job, "ffffffffffff", check=False), "no failed task")

    flaky.run("results", job, "-o", "value.csv")  # the successful half is there
    assert pacsv.read_csv(flaky.root / "value.csv").num_rows == 4


def test_cancel_stops_the_job(flaky: Project) -> None:
    flaky.run("study", "create", "--table", "slow.csv", "-o", "slow.json")
    job = last_line(flaky.run("submit", "slow.json", "--bundle", flaky.ref, "--workers", "1"))
    cancel = flaky.run("cancel", job)
    assert f"Cancelled {job}" in cancel.stdout
    assert_one_line_error(flaky.run("watch", job, check=False), "was cancelled")
    assert "already cancelled" in flaky.run("cancel", job).stdout
    assert_one_line_error(flaky.run("results", job, "-o", "x.csv", check=False), "cancelled")
    listing = flaky.run("jobs")
    assert any(job in line and "cancelled" in line for line in listing.stdout.splitlines())


def test_another_system_publishes_with_contracts_and_nats_only(sir: Project) -> None:
    nats_url = json.loads((sir.root / ".modelops" / "stack.json").read_text())["nats_url"]
    proc = sir.python(
        "-X",
        "importtime",
        str(EXAMPLES / "publish_command.py"),
        "--nats",
        nats_url,
        "--bundle",
        sir.ref,
        "--timeout",
        "120",
    )
    job = last_line(proc)
    assert job.startswith("job-") and f"{job}: completed 6, failed 0" in proc.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    ours = {name for name in imported if name.startswith("modelops")}
    assert ours == {"modelops_contracts"}, ours
    assert "nats" in imported
    status = sir.run("jobs")
    assert any(job in line and "completed" in line for line in status.stdout.splitlines())


def test_a_second_up_is_a_no_op(sir: Project) -> None:
    before = json.loads((sir.root / ".modelops" / "stack.json").read_text())
    again = sir.run("up", "--detach")
    assert "already running" in again.stdout and f"pid {before['pid']}" in again.stdout
    foreground = sir.run("up")  # also when asked to run in the foreground: no second stack
    assert "already running" in foreground.stdout
    assert json.loads((sir.root / ".modelops" / "stack.json").read_text()) == before


# ------------------------------------------------------------------------------ errors


def test_no_stack_running(tmp_path: Path) -> None:
    proc = _run([str(BIN / "modelops"), "jobs"], cwd=tmp_path, env=clean_env(), check=False)
    assert_one_line_error(proc, "no ModelOps stack is running", "modelops up")


def test_nats_configured_but_unreachable(tmp_path: Path) -> None:
    env = clean_env(MODELOPS_NATS_URL=f"nats://127.0.0.1:{free_port()}")
    proc = _run([str(BIN / "modelops"), "watch", "job-1"], cwd=tmp_path, env=env, check=False)
    assert_one_line_error(proc, "cannot connect to NATS")


def test_unknown_job(sir: Project) -> None:
    for command in ("watch", "results", "cancel", "logs"):
        extra = ["-o", "x.csv"] if command == "results" else []
        proc = sir.run(command, "job-000000000000", *extra, check=False)
        assert_one_line_error(proc, "no job 'job-000000000000'", "modelops jobs")


def test_bad_study_files(sir: Project) -> None:
    (sir.root / "bad.json").write_text('{"model": "model:StochasticSIR", "parameter_sets": []}')
    proc = sir.run("submit", "bad.json", "--bundle", sir.digest, check=False)
    assert_one_line_error(proc, "study file bad.json is not a valid study", "parameter_sets")
    proc = sir.run("submit", "missing.json", "--bundle", sir.digest, check=False)
    assert_one_line_error(proc, "does not exist", "modelops study create")


def test_parameters_outside_the_model_ranges_are_refused(sir: Project) -> None:
    proc = sir.run(
        "study",
        "create",
        "--param",
        "beta=0.5:0.9",
        "--param",
        "gamma=0.1:0.2",
        "--param",
        "I0=1:5:int",
        "--n",
        "3",
        "-o",
        "wide.json",
        check=False,
    )
    assert_one_line_error(proc, "declared by model:StochasticSIR")


def test_file_changed_since_registration(sir: Project, tmp_path: Path) -> None:
    copy = tmp_path / "sir"
    shutil.copytree(sir.root, copy, ignore=shutil.ignore_patterns(".modelops", "out", "studies"))
    (copy / "data" / "population.csv").write_text("group,size\nall,5\n")
    env = clean_env(MODELOPS_HOME=str(sir.root / ".modelops"))
    proc = _run([str(BIN / "modelops-bundle"), "build", "--push"], cwd=copy, env=env, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "data/population.csv" in proc.stderr and "register" in proc.stderr


def test_registry_unreachable(sir: Project) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proc = sir.run("build", "--push", "--registry", dead, tool="modelops-bundle", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert dead in proc.stderr and "error:" in proc.stderr


# ------------------------------------------------------------------------------ deployment


async def _declare_streams(url: str) -> None:
    """What a deployment's set-up does once: declare the streams and buckets."""
    nc = await connect(url, name="test-setup")
    try:
        await ensure_jetstream(nc.jetstream())
    finally:
        await nc.close()


def test_a_full_deployment_by_configuration_only(
    oci_registry: OciRegistry, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    """The same commands against services running as their own processes, a real registry
    and S3: only MODELOPS_* variables change, nothing embedded is used."""
    bucket = asyncio.run(s3_server.make_bucket(f"cli-{uuid.uuid4().hex[:12]}"))
    with contextlib.ExitStack() as running:
        nats = running.enter_context(NatsServer(tmp_path / "nats"))
        asyncio.run(_declare_streams(nats.url))
        env = clean_env(
            MODELOPS_NATS_URL=nats.url,
            MODELOPS_REGISTRY=oci_registry.host,
            MODELOPS_BUNDLE_STORE=oci_registry.host,
            MODELOPS_BLOB_STORE=f"s3://{bucket}/modelops",
            MODELOPS_S3_ENDPOINT=s3_server.endpoint_url,
            AWS_ACCESS_KEY_ID=s3_server.access_key,
            AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
            MODELOPS_STATE_DIR=str(tmp_path / "submitter-state"),
            MODELOPS_BUNDLE_CACHE=str(tmp_path / "bundle-cache"),
            DOCKER_CONFIG=str(tmp_path / "docker"),
        )
        for service in ("registrar", "bundler", "submitter"):
            running.enter_context(
                ManagedProcess(
                    service,
                    [sys.executable, "-m", f"modelops_{service}"],
                    log_dir=tmp_path / "logs",
                    ready=lambda: True,  # commands wait in the stream until it subscribes
                    env=env,
                )
            )
        root = tmp_path / "sir"
        shutil.copytree(
            EXAMPLES / "sir", root, ignore=shutil.ignore_patterns("__pycache__", ".modelops*")
        )
        project = Project(root=root, env=env)
        project.run(
            "register-model",
            "model:StochasticSIR",
            "--path",
            "src/model.py",
            "--data",
            "data/",
            tool="modelops-bundle",
        )
        ref = last_line(project.run("build", "--push", tool="modelops-bundle"))
        assert ref.startswith(f"{oci_registry.host}/sir@sha256:")
        project.run(
            "study",
            "create",
            "--space",
            "parameters.yaml",
            "--n",
            "3",
            "--replicates",
            "2",
            "-o",
            "s.json",
        )
        submitted = project.run("submit", "s.json", "--bundle", ref.rsplit("@", 1)[1], "--wait")
        job = submitted.stdout.strip().splitlines()[0]
        assert "completed: 6/6 tasks, 0 failed" in submitted.stderr
        project.run("results", job, "--output", "summary", "-o", "summary.csv")
        assert pacsv.read_csv(root / "summary.csv").num_rows == 6
        assert not (root / ".modelops").exists()  # no embedded stack, layout or blob folder
