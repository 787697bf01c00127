"""The runner's pure parts and small adapters: settings, import roots, result records, events,
fetch sizing and back-off, and the entry point's exit status on a configuration error."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import structlog

from modelops_bundle.oci import BundleIndex, IndexFile, IndexModel
from modelops_contracts import TaskMetrics, decode_event, encode
from modelops_contracts.jobs import blob_keys
from modelops_contracts.messages import TaskCompleted, TaskFailed
from modelops_runner.__main__ import main
from modelops_runner.bootstrap import worker_env
from modelops_runner.bundle import import_root, resolve_imports
from modelops_runner.errors import EXIT_CONFIG, ConfigError
from modelops_runner.pacing import fetch_size, is_last_delivery, look_ahead, nak_delay
from modelops_runner.pool import TaskFailure
from modelops_runner.reporting import completed_event, failed_event
from modelops_runner.results import (
    BadOutputName,
    ResultRecord,
    check_output_names,
    find_result,
    save_result,
)
from modelops_runner.settings import RunnerSettings, parse_quantity
from modelops_runtime.blobstore import open_blob_store

DIGEST = "sha256:" + "e" * 64
BASE_ENV = {"MODELOPS_JOB_ID": "job-1", "MODELOPS_BLOB_STORE": "file:///srv/blobs"}


# ----------------------------------------------------------------------------------- settings


def test_settings_defaults_suit_the_embedded_stack() -> None:
    s = RunnerSettings.from_env({**BASE_ENV, "HOME": "/home/u"})
    assert s.job_id == "job-1" and s.nats_url == "nats://127.0.0.1:4222"
    assert s.job_spec == blob_keys.job_spec("job-1")
    assert s.bundle_cache == Path("/home/u/.cache/modelops/bundles")
    assert s.bundle_store is None and s.memory_limit_bytes is None and s.workers == 0
    assert s.s3.endpoint_url is None


def test_settings_read_every_variable() -> None:
    s = RunnerSettings.from_env(
        {
            **BASE_ENV,
            "MODELOPS_NATS_URL": "nats://bus:4222",
            "MODELOPS_NATS_CREDS": "/run/runner.creds",
            "MODELOPS_JOB_SPEC": "s3://b/jobs/job-1/spec.json",
            "MODELOPS_BUNDLE_STORE": "oci-layout:/srv/oci",
            "MODELOPS_BUNDLE_CACHE": "/cache",
            "MODELOPS_WORKERS": "3",
            "MODELOPS_RUNNER_ID": "pod-a",
            "JOB_COMPLETION_INDEX": "4",
            "MODELOPS_MEMORY_LIMIT": "512Mi",
            "MODELOPS_S3_ENDPOINT": "http://s3:8333",
        }
    )
    assert s.nats_creds == "/run/runner.creds" and s.job_spec == "s3://b/jobs/job-1/spec.json"
    assert s.bundle_store == "oci-layout:/srv/oci" and s.bundle_cache == Path("/cache")
    assert s.worker_count(8) == 3 and s.runner_id == "pod-a/4"
    assert s.memory_limit_bytes == 512 * 1024**2 and s.s3.endpoint_url == "http://s3:8333"


def test_the_store_window_may_be_zero_to_store_each_result_at_once() -> None:
    assert RunnerSettings.from_env(BASE_ENV).store_window_s == 0.5
    env = {**BASE_ENV, "MODELOPS_RUNNER_STORE_WINDOW_S": "0"}
    assert RunnerSettings.from_env(env).store_window_s == 0.0


def test_worker_count_falls_back_to_the_job_then_the_cores() -> None:
    s = RunnerSettings.from_env(BASE_ENV)
    assert s.worker_count(5) == 5
    assert s.worker_count(0) >= 1


def test_runner_id_defaults_to_host_and_pid() -> None:
    import os
    import socket

    assert RunnerSettings.from_env(BASE_ENV).runner_id == f"{socket.gethostname()}-{os.getpid()}"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MODELOPS_BLOB_STORE": "file:///x"}, "MODELOPS_JOB_ID is not set"),
        ({"MODELOPS_JOB_ID": "job-1"}, "MODELOPS_BLOB_STORE is not set"),
        ({**BASE_ENV, "MODELOPS_JOB_ID": "Job_1"}, "MODELOPS_JOB_ID='Job_1'"),
        ({**BASE_ENV, "MODELOPS_WORKERS": "two"}, "MODELOPS_WORKERS='two'"),
        ({**BASE_ENV, "MODELOPS_MEMORY_LIMIT": "lots"}, "MODELOPS_MEMORY_LIMIT='lots'"),
        ({**BASE_ENV, "MODELOPS_RUNNER_FETCH_TIMEOUT_S": "-1"}, "FETCH_TIMEOUT_S"),
        ({**BASE_ENV, "MODELOPS_RUNNER_FETCH_TIMEOUT_S": "0"}, "must be a positive"),
        ({**BASE_ENV, "MODELOPS_RUNNER_STORE_WINDOW_S": "-0.1"}, "must be a non-negative"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")) as info:
        RunnerSettings.from_env(env)
    assert info.value.exit_status == EXIT_CONFIG


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1073741824", 1 << 30), ("2Gi", 2 << 30), ("1.5G", 1_500_000_000), ("64Ki", 65536)],
)
def test_parse_quantity(text: str, expected: int) -> None:
    assert parse_quantity(text, name="X") == expected


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() configures logging for its process; put the test session's set-up back after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_main_exits_2_and_says_which_variable_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODELOPS_JOB_ID", raising=False)
    monkeypatch.setenv("MODELOPS_BLOB_STORE", "file:///tmp/x")
    monkeypatch.setenv("MODELOPS_LOG_FORMAT", "json")
    assert main() == 2
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "runner.config_error" and "MODELOPS_JOB_ID" in line["error"]
    assert line["level"] == "error" and line["hint"]


def test_worker_env_drops_runner_settings_and_credentials() -> None:
    env = worker_env(
        {
            "PATH": "/bin",
            "MODELOPS_NATS_URL": "nats://x",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_REGION": "eu-west-1",
            "OMP_NUM_THREADS": "1",
        }
    )
    assert env == {"PATH": "/bin", "AWS_REGION": "eu-west-1", "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------- import roots


@pytest.mark.parametrize(
    ("path", "module", "root"),
    [
        ("src/model.py", "model", "src"),
        ("model.py", "model", ""),
        ("src/pkg/sim.py", "pkg.sim", "src"),
        ("lib/pkg/__init__.py", "pkg", "lib"),
        ("a/b/pkg/sub/__init__.py", "pkg.sub", "a/b"),
    ],
)
def test_import_root(path: str, module: str, root: str) -> None:
    assert import_root(path, module) == root


@pytest.mark.parametrize(
    ("path", "module"), [("src/model.py", "other"), ("src/model.py", "pkg.model"), ("x.py", "a.x")]
)
def test_import_root_refuses_a_path_that_cannot_hold_the_module(path: str, module: str) -> None:
    with pytest.raises(ConfigError, match="cannot be imported as module"):
        import_root(path, module)


def _index(*models: tuple[str, str, str]) -> BundleIndex:
    files = sorted({p for _, _, p in models})
    return BundleIndex(
        project="demo",
        files=[IndexFile(path=p, digest=DIGEST, size=1) for p in files],
        models={
            mid: IndexModel(
                id=mid, entrypoint=ep, path=p, digest=DIGEST, code=[p], scenarios=["lockdown"]
            )
            for mid, ep, p in models
        },
    )


def test_resolve_imports_puts_the_jobs_models_first() -> None:
    index = _index(
        ("other", "tools.extra:Other", "lib/tools/extra.py"),
        ("sir", "model:StochasticSIR", "src/model.py"),
    )
    roots, targets = resolve_imports(index, ["model:StochasticSIR/lockdown"])
    assert roots == ["src", "lib"] and targets == ["model:StochasticSIR"]


def test_resolve_imports_refuses_an_entrypoint_the_bundle_lacks() -> None:
    index = _index(("sir", "model:StochasticSIR", "src/model.py"))
    with pytest.raises(ConfigError, match="no model with entrypoint"):
        resolve_imports(index, ["model:Other"])
    with pytest.raises(ConfigError, match="no scenario 'summer'"):
        resolve_imports(index, ["model:StochasticSIR/summer"])


# ------------------------------------------------------------------------------------ results


async def test_save_result_writes_outputs_then_the_record_once(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    record = ResultRecord(task_id="ab" + "1" * 62, job_id="job-1", attempt=1, outputs={})
    stored, wrote = await save_result(store, record, {"summary": b"one", "series": b"two"})
    assert wrote and stored.outputs == {
        name: store.uri_for(blob_keys.result_output(record.task_id, name))
        for name in ("summary", "series")
    }
    assert await find_result(store, record.task_id) == stored

    later = msgspec.structs.replace(record, job_id="job-2", attempt=3)
    again, wrote_again = await save_result(store, later, {"summary": b"one", "series": b"two"})
    assert not wrote_again and again == stored  # the first record wins


async def test_an_unreadable_record_is_replaced_not_trusted(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    task_id = "cd" + "2" * 62
    await store.put_bytes(blob_keys.result_done(task_id), b"{garbage")
    assert await find_result(store, task_id) is None
    record = ResultRecord(task_id=task_id, job_id="job-1", attempt=1, outputs={})
    stored, wrote = await save_result(store, record, {})
    assert wrote and await find_result(store, task_id) == stored


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".hidden", "x" * 200, "sp ace"])
def test_unsafe_output_names_are_refused(name: str) -> None:
    with pytest.raises(BadOutputName):
        check_output_names(["ok", name])


# ------------------------------------------------------------------------------------- events


def _record(job_id: str) -> ResultRecord:
    return ResultRecord(
        task_id="t1",
        job_id=job_id,
        attempt=2,
        outputs={"summary": "file:///r/summary.parquet"},
        metrics=TaskMetrics(wall_s=1.5),
        runner_id="first-runner",
        time="2026-11-30T00:00:00Z",
        correlation_id="corr-original",
    )


def test_completed_event_from_this_jobs_record_is_the_original_event() -> None:
    event = completed_event(
        _record("job-1"), job_id="job-1", correlation_id="c", attempt=3, runner_id="me"
    )
    assert event.id == "job-1:t1:task_completed:2" and event.attempt == 2
    assert event.time == "2026-11-30T00:00:00Z" and event.runner_id == "first-runner"
    assert event.correlation_id == "corr-original" and not event.cached
    assert decode_event(encode(event)) == event


def test_completed_event_from_another_jobs_record_is_a_cache_hit() -> None:
    event = completed_event(
        _record("job-0"), job_id="job-1", correlation_id="c", attempt=1, runner_id="me"
    )
    assert event.id == "job-1:t1:task_completed:1" and event.cached
    assert event.runner_id == "me" and event.correlation_id == "c"
    assert event.subject == "modelops.evt.job.job-1.task_completed"
    assert isinstance(event, TaskCompleted)


def test_failed_event_carries_every_detail_with_bounded_tails() -> None:
    failure = TaskFailure(
        task_id="t2",
        kind="crashed",
        message="exited 3",
        error_type="",
        traceback_tail="tb" * 10_000,
        stderr_tail="e" * 100,
        exit_code=3,
    )
    event = failed_event(failure, job_id="job-1", correlation_id="c", attempt=2, runner_id="me")
    assert isinstance(event, TaskFailed) and event.final
    assert (event.failure, event.exit_code, event.signal) == ("crashed", 3, None)
    assert event.id == "job-1:t2:task_failed:2" and event.stderr_tail == "e" * 100
    assert len(event.traceback_tail) == 8 * 1024 and event.traceback_tail.endswith("tb")
    assert decode_event(encode(event)) == event


# ----------------------------------------------------------------------------- loop decisions


def test_nak_delay_backs_off_exponentially_to_a_cap() -> None:
    assert [nak_delay(a) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert nak_delay(50) == 30.0


def test_last_delivery() -> None:
    assert is_last_delivery(3, 3) and not is_last_delivery(2, 3)
    assert not is_last_delivery(100, -1)  # unlimited: never "last"


@pytest.mark.parametrize(
    ("occupying", "held", "ahead", "want"),
    [
        (0, 0, 0, 4),  # start: one task per worker
        (4, 4, 0, 0),  # all busy with long tasks: hold nothing idle
        (3, 5, 0, 1),  # one worker free (two results being stored): feed it now
        (4, 4, 8, 8),  # short tasks: a batch ahead
        (10, 10, 8, 0),  # two missing of eight ahead: wait, fetch in batches
        (8, 8, 8, 4),  # half of the look-ahead missing: fetch it
        (3, 30, 8, 2),  # never more than max_held in hand, even for an idle worker
    ],
)
def test_fetch_size(occupying: int, held: int, ahead: int, want: int) -> None:
    got = fetch_size(n_workers=4, occupying=occupying, held=held, max_held=32, ahead=ahead)
    assert got == want


def test_look_ahead_covers_a_window_of_short_tasks_only() -> None:
    assert look_ahead(None, n_workers=2, window_s=0.25, limit=40) == 0  # nothing known yet
    assert look_ahead(1.0, n_workers=2, window_s=0.25, limit=40) == 0  # long tasks
    assert look_ahead(0.02, n_workers=2, window_s=0.25, limit=40) == 26  # 13 per worker
    assert look_ahead(0.0001, n_workers=2, window_s=0.25, limit=40) == 40  # capped
