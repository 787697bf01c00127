"""deploy/nats: the committed config is the generator's output, and its table is least privilege.

What each user can really do is proven against a running nats-server in
tests/integration/deploy/test_nats_permissions.py; these checks pin the shape of the table.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from modelops_runtime.processes import NATS_HINT, find_executable

from .repo import DEPLOY, load_render_config

rc = load_render_config()
USERS = {u.name: u for u in rc.USERS}


def allowed(user: str, kind: str = "publish") -> set[str]:
    rules = USERS[user].publish if kind == "publish" else USERS[user].subscribe
    return {subject for rule in rules for subject in rule.subjects}


def test_committed_configs_are_the_generators_output():
    text = rc.render()
    for path in rc.OUTPUTS:
        assert path.read_text() == text, f"{path} is stale: run deploy/nats/render_config.py"
    assert rc.main(["--check"]) == 0


def test_nats_server_accepts_the_config():
    binary = find_executable("nats-server", hint=NATS_HINT)
    env = {**os.environ, **{rc.password_env(u): "pw" for u in USERS}}
    done = subprocess.run(
        [binary, "-t", "-c", DEPLOY / "nats" / "nats-server.conf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "is valid" in done.stdout + done.stderr


def test_one_user_per_component_each_with_its_own_password_variable():
    assert set(USERS) == {"registrar", "bundler", "submitter", "runner", "cli"}
    text = rc.render()
    for name in USERS:
        assert f"password: ${rc.password_env(name)}\n" in text


@pytest.mark.parametrize("name", sorted(USERS))
def test_nobody_gets_blanket_access(name: str):
    publish, subscribe = allowed(name), allowed(name, "subscribe")
    for wide in (">", "$JS.>", "$JS.API.>", "$KV.>", "modelops.>", "_INBOX.>"):
        assert wide not in publish | subscribe
    assert f"_INBOX.{name}.>" in subscribe
    assert not {s for s in subscribe if s.startswith("_INBOX.") and s != f"_INBOX.{name}.>"}
    assert not {s for s in publish if ".STREAM.DELETE." in s or ".STREAM.MSG.DELETE." in s}
    assert not {s for s in publish if s.startswith("_INBOX")}


def test_the_runner_may_only_pull_tasks_and_report_results():
    publish = allowed("runner")
    assert {s for s in publish if not s.startswith("$JS.")} == {
        "modelops.evt.job.*.task_completed",
        "modelops.evt.job.*.task_failed",
    }
    assert {s for s in publish if s.startswith("$JS.")} == {
        "$JS.API.CONSUMER.MSG.NEXT.MODELOPS_TASKS.*",
        "$JS.API.CONSUMER.INFO.MODELOPS_TASKS.*",
        "$JS.ACK.MODELOPS_TASKS.*.>",
    }
    assert allowed("runner", "subscribe") == {"_INBOX.runner.>"}


def test_the_cli_publishes_commands_and_only_reads_the_rest():
    publish = allowed("cli")
    assert {s for s in publish if not s.startswith("$JS.")} == {"modelops.cmd.>"}
    assert not {s for s in publish if ".STREAM.CREATE." in s or ".STREAM.UPDATE." in s}
    assert not {s for s in publish if "MODELOPS_TASKS" in s and "STREAM.INFO" not in s}
    denied = {s for rule in USERS["cli"].deny_publish for s in rule.subjects}
    assert "$JS.API.CONSUMER.MSG.NEXT.MODELOPS_EVENTS.submitter" in denied


@pytest.mark.parametrize("name", ["registrar", "bundler", "submitter"])
def test_services_consume_commands_only_through_their_own_durable(name: str):
    next_ = {
        s for s in allowed(name) if s.startswith("$JS.API.CONSUMER.MSG.NEXT.MODELOPS_COMMANDS")
    }
    assert next_ == {f"$JS.API.CONSUMER.MSG.NEXT.MODELOPS_COMMANDS.{name}"}
    assert not {s for s in allowed(name) if s.startswith("modelops.cmd")}
