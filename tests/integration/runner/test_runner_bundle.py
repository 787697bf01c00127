"""A bundle that fails verification is refused before any model code runs: the runner exits 2,
acks nothing, publishes nothing, and says why in one clear log line."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from runner_jobkit import FIXTURE_MODELS, JobSite, read_job_events, sir_tasks

from modelops_bundle.registry_file import load_registry

pytestmark = pytest.mark.integration

SENTINEL_MODEL = """\
import os
from pathlib import Path

Path(os.environ["RUNNER_TEST_SENTINEL"]).write_text("model code ran")


class StochasticSIR:
    def simulate(self, params, seed):
        return {}
"""


def _error_lines(log: str) -> list[dict]:
    return [json.loads(x) for x in log.splitlines() if x.startswith("{") and '"error"' in x]


async def test_corrupted_bundle_blob_is_refused_before_any_model_code_runs(
    tmp_path: Path, nats_server, nats_client, oci_registry
) -> None:
    site = JobSite(tmp_path, nats_server.url, bundle_store=oci_registry.host)
    # a model file of its own: blobs are shared by digest across the session's registry
    unique = (FIXTURE_MODELS / "sir_model.py").read_text() + f"# {uuid.uuid4().hex}\n"
    bundle_ref = site.bundle(extra_files={"src/sir_model.py": unique.encode()})
    # Replace the model file's blob inside the registry's storage with code that would leave
    # a trace if it ever ran. The registry serves it without complaint.
    (model,) = load_registry(tmp_path / "project").models.values()
    (code,) = [f for f in model.code if f.path == "src/sir_model.py"]
    oci_registry.blob_path(code.digest).write_text(SENTINEL_MODEL)
    sentinel = tmp_path / "sentinel"

    tasks = sir_tasks(bundle_ref, range(5), beta=0.2)
    job = await site.queue(nats_client, tasks)
    runner = await site.run(job, extra={"RUNNER_TEST_SENTINEL": str(sentinel)})

    assert runner.returncode == 2, runner.log()[-3000:]
    assert not sentinel.exists()  # no model code ran, not even an import
    (line,) = [x for x in _error_lines(runner.log()) if x["event"] == "runner.bundle_refused"]
    assert line["level"] == "error" and line["exit_status"] == 2
    assert "failed verification" in line["error"] and "src/sir_model.py" in line["error"]
    assert code.digest in line["error"]
    assert "pool.started" not in runner.log()
    info = await nats_client.jetstream().consumer_info("MODELOPS_TASKS", job.consumer)
    assert info.num_pending == len(tasks) and info.num_ack_pending == 0
    assert info.delivered.stream_seq == 0  # not one task was even fetched
    assert await read_job_events(nats_client, job.job_id) == []
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.startswith(".")]


async def test_missing_job_spec_is_a_configuration_error(
    tmp_path: Path, nats_server, nats_client
) -> None:
    site = JobSite(tmp_path, nats_server.url, bundle_store="127.0.0.1:1")
    job = await site.queue(nats_client, [], bundle_ref=f"127.0.0.1:1/x/y@sha256:{'b' * 64}")
    elsewhere = {"MODELOPS_JOB_SPEC": "jobs/elsewhere/spec.json"}
    runner = await site.run(job, timeout_s=30, extra=elsewhere)
    assert runner.returncode == 2, runner.log()[-3000:]
    (line,) = [x for x in _error_lines(runner.log()) if x["event"] == "runner.config_error"]
    assert "jobs/elsewhere/spec.json" in line["error"] and "MODELOPS_JOB_SPEC" in line["hint"]
