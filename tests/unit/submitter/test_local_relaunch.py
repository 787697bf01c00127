"""The local launcher starts a job's runners again once every earlier one has exited (the
submitter relaunches after an enqueue its runners gave up waiting for), never while one runs."""

from __future__ import annotations

import sys
from pathlib import Path

from modelops_contracts import LaunchOptions
from modelops_submitter.launchers.base import LaunchRequest
from modelops_submitter.launchers.local import LocalLauncher


async def test_launch_again_after_all_runners_exited_starts_new_ones(tmp_path: Path) -> None:
    launcher = LocalLauncher(tmp_path / "jobs", [sys.executable, "-c", "print('runner ran')"])
    req = LaunchRequest(job_id="job-r", runners=1, options=LaunchOptions(runners=1), env={"X": "1"})
    await launcher.launch(req)
    assert await launcher.wait("job-r") == [0]
    assert not await launcher.has_runners("job-r")
    await launcher.launch(req)
    assert await launcher.wait("job-r") == [0]
    log = (tmp_path / "jobs/job-r/runner-0.log").read_text()
    assert log.count("runner ran") == 2, log
    await launcher.close()
