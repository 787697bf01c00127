"""The runner works as the least-privilege `runner` user of deploy/nats/nats-server.conf: it only
pulls its job's tasks, reads its consumer, settles messages and publishes task events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from runner_jobkit import RunnerProcess, build_bundle, queue_job, read_job_events, runner_env

from modelops_contracts import ParameterSet, SimTask
from modelops_contracts.messages import TaskCompleted
from modelops_runtime.blobstore import open_blob_store
from modelops_runtime.nats_setup import connect
from modelops_runtime.processes import NatsServer
from tests.support.deploy_files import nats_passwords

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "nats" / "nats-server.conf"
USERS = ("registrar", "bundler", "submitter", "runner", "cli")


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return nats_passwords(*USERS)


@pytest.fixture(scope="module")
def secured_nats(
    tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]
) -> Iterator[NatsServer]:
    with pytest.MonkeyPatch.context() as mp:
        for user, password in passwords.items():
            mp.setenv(f"MODELOPS_NATS_{user.upper()}_PASSWORD", password)
        with NatsServer(tmp_path_factory.mktemp("nats-secured"), config_file=CONFIG) as server:
            yield server


async def test_runner_needs_no_more_than_the_runner_users_permissions(
    tmp_path: Path, secured_nats: NatsServer, passwords: dict[str, str]
) -> None:
    layout = f"oci-layout:{tmp_path / 'oci'}"
    bundle_ref = build_bundle(
        tmp_path / "project", {"sir_model:StochasticSIR": "src/sir_model.py"}, store_location=layout
    )
    blob_uri = f"file://{tmp_path / 'blobs'}"
    store = open_blob_store(blob_uri)
    tasks = [
        SimTask(
            bundle_ref=bundle_ref,
            entrypoint="sir_model:StochasticSIR",
            params=ParameterSet(params={"beta": 0.2}),
            seed=seed,
        )
        for seed in range(6)
    ]
    # the submitter's part, as the submitter user
    submitter = await connect(
        secured_nats.url, name="test-submitter", user="submitter", password=passwords["submitter"]
    )
    try:
        job = await queue_job(submitter, store, bundle_ref=bundle_ref, tasks=tasks)
    finally:
        await submitter.close()
    env = runner_env(
        nats_url=secured_nats.url,
        job=job,
        blob_store=blob_uri,
        bundle_store=layout,
        cache=tmp_path / "cache",
        extra={"MODELOPS_NATS_USER": "runner", "MODELOPS_NATS_PASSWORD": passwords["runner"]},
    )
    runner = await RunnerProcess(env=env, log_path=tmp_path / "runner.log").start()
    try:
        assert await runner.wait(60) == 0, runner.log()[-3000:]
    finally:
        await runner.aclose()
    assert "permissions violation" not in runner.log().lower()

    cli = await connect(secured_nats.url, name="test-cli", user="cli", password=passwords["cli"])
    try:
        events = await read_job_events(cli, job.job_id)
    finally:
        await cli.close()
    completed = {e.task_id for e in events if isinstance(e, TaskCompleted)}
    assert completed == job.task_ids
