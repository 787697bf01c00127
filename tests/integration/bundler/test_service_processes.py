"""`python -m modelops_registrar` / `python -m modelops_bundler` as real processes: they come
up on MODELOPS_* settings, answer commands, and drain and exit 0 on SIGTERM; a bad setting is
one line and exit code 1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from modelops_cli.bus import request
from modelops_contracts import (
    BuildBundle,
    BundleFailed,
    CommandRejected,
    ModelEntry,
    ModelRegistered,
    RegisterModel,
    TrackedFile,
)
from modelops_contracts.subjects import COMMANDS_STREAM
from modelops_runtime.processes import NatsServer

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "0" * 64


def service_env(nats_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env.update(
        MODELOPS_NATS_URL=nats_url,
        MODELOPS_BUNDLE_STORE=f"oci-layout:{tmp_path / 'oci'}",
        MODELOPS_LOG_FORMAT="json",
    )
    return env


def model() -> ModelEntry:
    return ModelEntry(
        id="m",
        entrypoint="model:M",
        path="model.py",
        code=[TrackedFile(path="model.py", digest=DIGEST, size=1)],
    )


@pytest.mark.parametrize(
    ("module", "command", "answers"),
    [
        (
            "modelops_registrar",
            RegisterModel(correlation_id="p1", project="p", model=model()),
            (ModelRegistered, CommandRejected),
        ),
        (
            "modelops_bundler",
            BuildBundle(correlation_id="p2", project="p", repository="p"),
            (BundleFailed, CommandRejected),
        ),
    ],
)
async def test_service_process_serves_then_drains_on_sigterm(
    tmp_path: Path, module: str, command: object, answers: tuple[type, ...]
) -> None:
    durable = module.removeprefix("modelops_")
    with NatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        # JetStream announces each consumer it creates: the service is serving once its
        # durable consumer exists.
        created = await nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.CREATED.{COMMANDS_STREAM}.{durable}"
        )
        await nc.flush()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            env=service_env(server.url, tmp_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await created.next_msg(timeout=20)
            answer = await request(server.url, command, answers=answers, timeout=20)
        finally:
            await nc.close()
            proc.send_signal(signal.SIGTERM)
            _, stderr_bytes = await asyncio.wait_for(proc.communicate(), 30)
    stderr = stderr_bytes.decode()

    assert proc.returncode == 0, stderr
    assert isinstance(answer, answers[0]), answer  # registered; build failed: nothing uploaded
    assert f'"{durable}.stopped"' in stderr


def test_bad_setting_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = service_env("nats://127.0.0.1:1", tmp_path)
    env["MODELOPS_REGISTRAR_MAX_DELIVER"] = "many"

    proc = subprocess.run(
        [sys.executable, "-m", "modelops_registrar"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "MODELOPS_REGISTRAR_MAX_DELIVER='many' is not a whole number" in line
