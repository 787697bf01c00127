"""The runner works as the least-privilege `runner` user of deploy/nats/nats-server.conf: it only
pulls its job's tasks, reads its consumer, settles messages and publishes task events."""

from __future__ import annotations

from pathlib import Path

import pytest
from runner_jobkit import JobSite, read_job_events, sir_tasks

from modelops_contracts.messages import TaskCompleted
from modelops_runtime.nats_setup import connect
from modelops_runtime.processes import NatsServer

pytestmark = pytest.mark.integration


async def test_runner_needs_no_more_than_the_runner_users_permissions(
    tmp_path: Path, secured_nats: NatsServer, passwords: dict[str, str]
) -> None:
    site = JobSite(tmp_path, secured_nats.url)
    tasks = sir_tasks(site.bundle(), range(6), beta=0.2)
    # the submitter's part, as the submitter user
    submitter = await connect(
        secured_nats.url, name="test-submitter", user="submitter", password=passwords["submitter"]
    )
    try:
        job = await site.queue(submitter, tasks)
    finally:
        await submitter.close()
    runner = await site.run(
        job, extra={"MODELOPS_NATS_USER": "runner", "MODELOPS_NATS_PASSWORD": passwords["runner"]}
    )
    assert runner.returncode == 0, runner.log()[-3000:]
    assert "permissions violation" not in runner.log().lower()

    cli = await connect(secured_nats.url, name="test-cli", user="cli", password=passwords["cli"])
    try:
        events = await read_job_events(cli, job.job_id)
    finally:
        await cli.close()
    completed = {e.task_id for e in events if isinstance(e, TaskCompleted)}
    assert completed == job.task_ids
