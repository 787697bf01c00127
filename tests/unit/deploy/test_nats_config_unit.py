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


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-Abcdefghijklmnopq", "start with a letter"),
        ("5qAbcdefghijklmnop", "start with a letter"),
        ("1234567890123456789", "start with a letter"),
        ("Abcdefgh/ijkl+mnop=", "letters and digits"),
        ("Abcdefgh ijklmnopq", "letters and digits"),
        ("Abcdefgh,ijklmnopq", "letters and digits"),
        ("short", "shorter than 16"),
    ],
)
def test_passwords_nats_server_would_misread_are_named(value: str, reason: str):
    problem = rc.password_problem(value)
    assert problem is not None and reason in problem


def test_generated_passwords_are_safe_distinct_and_the_server_starts_with_them():
    """`render_config.py --passwords` output goes straight into .env: nats-server must start."""
    fresh = [rc.new_password() for _ in range(2000)]
    assert len(set(fresh)) == len(fresh)
    assert all(rc.password_problem(p) is None for p in fresh)
    assert {p[0].isdigit() for p in fresh} == {False}
    binary = find_executable("nats-server", hint=NATS_HINT)
    env = {**os.environ, **{rc.password_env(u): rc.new_password() for u in USERS}}
    done = subprocess.run(
        [binary, "-t", "-c", DEPLOY / "nats" / "nats-server.conf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_passwords_flag_prints_one_env_line_per_user(capsys: pytest.CaptureFixture[str]):
    assert rc.main(["--passwords"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [rc.password_env(u) for u in USERS]
    assert all(rc.password_problem(line.split("=", 1)[1]) is None for line in lines)
