"""Render deploy/nats/nats-server.conf: one NATS user per ModelOps component, least privilege.

The permission table below is the source of truth; the .conf file (and its copy in the
Kubernetes base, which kustomize may only read from inside its own folder) is generated from it
so that every subject is spelled from `modelops_contracts.subjects` and carries the reason it is
allowed. Regenerate after editing:

    .venv/bin/python deploy/nats/render_config.py          # write both copies
    .venv/bin/python deploy/nats/render_config.py --check  # exit 1 if they are stale
    .venv/bin/python deploy/nats/render_config.py --passwords  # fresh .env lines, one per user

How the permissions are shaped (details in docs/deployment.md):

- JetStream is driven by request subjects, so "consume from consumer C of stream S" means
  publishing to `$JS.API.CONSUMER.{CREATE,INFO,MSG.NEXT}.S.C` and acknowledging on
  `$JS.ACK.S.C.>`; KV reads are `$JS.API.DIRECT.GET.KV_b…`/`$JS.API.STREAM.MSG.GET.KV_b`, KV
  writes are publishes to `$KV.b.<key>`; ordered consumers (KV watch, event replay) answer flow
  control on `$JS.FC.<stream>.>`.
- Replies: each user may subscribe only to its own inbox prefix `_INBOX.<user>.>` (clients
  connect with `inbox_prefix="_INBOX.<user>"`), so no user can read another user's replies,
  which carry pulled messages and KV values.
- NATS wildcards match whole tokens only: `runners-*` would be a literal name. So a runner may
  pull from any consumer of MODELOPS_TASKS (all of them are `runners-<job_id>` consumers),
  not only its own job's; see the trade-off in docs/deployment.md.
"""

from __future__ import annotations

import argparse
import secrets
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modelops_contracts import subjects as s

__all__ = [
    "OUTPUTS",
    "USERS",
    "Rule",
    "User",
    "new_password",
    "password_env",
    "password_problem",
    "render",
]

HERE = Path(__file__).resolve().parent
OUTPUTS = (HERE / "nats-server.conf", HERE.parent / "k8s" / "base" / "nats" / "nats-server.conf")

CMD, EVT, TASKS = s.COMMANDS_STREAM, s.EVENTS_STREAM, s.TASKS_STREAM
ALL_STREAMS = (CMD, EVT, TASKS, *(f"KV_{b}" for b in (s.KV_MODELS, s.KV_BUNDLES, s.KV_JOBS)))


@dataclass(frozen=True)
class Rule:
    """Subjects allowed (or denied) together, and why."""

    why: str
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class User:
    name: str
    summary: str
    publish: tuple[Rule, ...]
    subscribe: tuple[Rule, ...] = ()
    deny_publish: tuple[Rule, ...] = ()
    deny_subscribe: tuple[Rule, ...] = field(default=())


def password_env(user: str) -> str:
    """The environment variable nats-server reads the user's password from."""
    return f"MODELOPS_NATS_{user.upper()}_PASSWORD"


# nats-server parses the value of `$VAR` as config syntax, not as a plain string: `-x…` and
# `12345` fail to parse or become numbers, `true` a boolean, and `,` `}` `#` or a space end the
# value early. So passwords use only letters and digits and start with a letter; that keeps
# `openssl rand -base64` output (which may start with a digit or hold `/+=`) out of the config.
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32  # 32 symbols of 62: about 190 bits


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password nats-server reads back verbatim from its environment."""
    first = secrets.choice(string.ascii_letters)
    return first + "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length - 1))


def password_problem(value: str) -> str | None:
    """Why nats-server would misread `value` as a `$VAR` password, or None when it is safe."""
    if len(value) < 16:
        return "is shorter than 16 characters"
    if not value[0].isascii() or not value[0].isalpha():
        return "must start with a letter (nats-server parses a leading digit or '-' as a number)"
    bad = sorted({c for c in value if c not in PASSWORD_ALPHABET})
    if bad:
        return f"may hold only letters and digits, not {' '.join(map(repr, bad))}"
    return None


# ------------------------------------------------------------------------------ rule builders


def inbox(user: str) -> Rule:
    return Rule(
        "replies to our own requests (JetStream API, publish acks, pulled messages)",
        (f"_INBOX.{user}.>",),
    )


def ensure_jetstream() -> Rule:
    return Rule(
        "ensure_jetstream at start-up: create or update (never delete) our streams and buckets",
        tuple(f"$JS.API.STREAM.{op}.{name}" for name in ALL_STREAMS for op in ("CREATE", "UPDATE")),
    )


def stream_info(why: str, *names: str) -> Rule:
    return Rule(f"stream info: {why}", tuple(f"$JS.API.STREAM.INFO.{n}" for n in names))


def durable(stream: str, consumer: str, what: str) -> Rule:
    """Create/update, inspect and pull from one named durable, and settle its messages."""
    api = "$JS.API.CONSUMER"
    return Rule(
        f"{what}: durable '{consumer}' on {stream}",
        (
            f"{api}.CREATE.{stream}.{consumer}",
            f"{api}.CREATE.{stream}.{consumer}.>",  # the filtered form nats-py uses
            f"{api}.DURABLE.CREATE.{stream}.{consumer}",
            f"{api}.INFO.{stream}.{consumer}",
            f"{api}.MSG.NEXT.{stream}.{consumer}",
            f"$JS.ACK.{stream}.{consumer}.>",
        ),
    )


def kv_read(bucket: str) -> Rule:
    stream = f"KV_{bucket}"
    return Rule(
        f"read KV {bucket}: get, keys, history, watch",
        (
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.*",
            f"$JS.API.CONSUMER.DELETE.{stream}.*",
            f"$JS.FC.{stream}.>",
        ),
    )


def kv_write(bucket: str) -> Rule:
    return Rule(f"write KV {bucket}: put, create, update (CAS), delete", (f"$KV.{bucket}.>",))


def event_reader(*, durable_ok: bool) -> Rule:
    api = "$JS.API.CONSUMER"
    subs = [
        f"{api}.CREATE.{EVT}",
        f"{api}.CREATE.{EVT}.>",
        f"{api}.INFO.{EVT}.*",
        f"{api}.MSG.NEXT.{EVT}.*",
        f"$JS.ACK.{EVT}.>",
        f"$JS.FC.{EVT}.>",
    ]
    if durable_ok:
        subs += [f"{api}.DURABLE.CREATE.{EVT}.*", f"{api}.DELETE.{EVT}.*"]
    return Rule(
        "read event history: consumers on the events stream from any sequence (replay, watch)",
        tuple(subs),
    )


def publish(what: str, *subjects_: str) -> Rule:
    return Rule(what, subjects_)


# ----------------------------------------------------------------------------- the users

REJECTED = f"{s.REJECTED_EVENTS}.>"
SERVICE_DURABLES = {  # the durable consumer names the services use, by stream
    "registrar": {CMD: "registrar"},
    "bundler": {CMD: "bundler", EVT: "bundler-on-register"},
    "submitter": {CMD: "submitter", EVT: "submitter"},
}


def _not_others_durables(stream: str, *, user: str = "") -> Rule:
    """Deny pulling from, settling or deleting another service's durable on a shared stream."""
    names = sorted({d[stream] for u, d in SERVICE_DURABLES.items() if stream in d and u != user})
    return Rule(
        f"never pull from, settle or delete another service's durable on {stream} (theft)",
        tuple(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{n}" for n in names)
        + tuple(f"$JS.ACK.{stream}.{n}.>" for n in names)
        + tuple(f"$JS.API.CONSUMER.DELETE.{stream}.{n}" for n in names),
    )


USERS: tuple[User, ...] = (
    User(
        "registrar",
        "validates RegisterModel, keeps the model registry (KV), emits ModelRegistered",
        publish=(
            ensure_jetstream(),
            stream_info("readiness checks and ensure_jetstream", *ALL_STREAMS),
            durable(CMD, "registrar", "RegisterModel commands"),
            kv_read(s.KV_MODELS),
            kv_write(s.KV_MODELS),
            publish("its events", f"{s.MODEL_EVENTS}.>", REJECTED),
        ),
        subscribe=(inbox("registrar"),),
    ),
    User(
        "bundler",
        "builds bundles from registered models, records them (KV), emits BundlePushed",
        publish=(
            ensure_jetstream(),
            stream_info("readiness checks and ensure_jetstream", *ALL_STREAMS),
            durable(CMD, "bundler", "BuildBundle commands"),
            durable(EVT, "bundler-on-register", "ModelRegistered (optional auto-build)"),
            kv_read(s.KV_MODELS),
            kv_read(s.KV_BUNDLES),
            kv_write(s.KV_BUNDLES),
            publish("its events", f"{s.BUNDLE_EVENTS}.>", REJECTED),
        ),
        subscribe=(inbox("bundler"),),
    ),
    User(
        "submitter",
        "binds studies, enqueues tasks, creates each job's runner consumer, tracks jobs",
        publish=(
            ensure_jetstream(),
            stream_info("readiness checks and ensure_jetstream", *ALL_STREAMS),
            durable(CMD, "submitter", "SubmitJob, CancelJob"),
            event_reader(durable_ok=True),
            Rule(
                "each job's task queue: create/inspect/delete `runners-<job_id>`, purge on cancel",
                (
                    f"$JS.API.CONSUMER.CREATE.{TASKS}.>",
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{TASKS}.*",
                    f"$JS.API.CONSUMER.INFO.{TASKS}.*",
                    f"$JS.API.CONSUMER.DELETE.{TASKS}.*",
                    f"$JS.API.CONSUMER.NAMES.{TASKS}",
                    f"$JS.API.CONSUMER.LIST.{TASKS}",
                    f"$JS.API.STREAM.PURGE.{TASKS}",
                ),
            ),
            publish("enqueue tasks, one subject per job", s.task_subject("*")),
            kv_read(s.KV_JOBS),
            kv_write(s.KV_JOBS),
            kv_read(s.KV_BUNDLES),
            kv_read(s.KV_MODELS),
            publish("job lifecycle events and rejections", s.job_events_filter("*"), REJECTED),
        ),
        subscribe=(inbox("submitter"),),
        deny_publish=(_not_others_durables(EVT, user="submitter"),),
    ),
    User(
        "runner",
        "pulls one job's tasks and reports TaskCompleted/TaskFailed; nothing else",
        publish=(
            Rule(
                "pull and inspect task consumers (all are runners-<job_id>; see the trade-off)",
                (
                    f"$JS.API.CONSUMER.MSG.NEXT.{TASKS}.*",
                    f"$JS.API.CONSUMER.INFO.{TASKS}.*",
                ),
            ),
            Rule("ack, nak, in_progress, term of pulled tasks", (f"$JS.ACK.{TASKS}.*.>",)),
            publish(
                "task result events",
                s.job_event_subject("*", "task_completed"),
                s.job_event_subject("*", "task_failed"),
            ),
        ),
        subscribe=(inbox("runner"),),
    ),
    User(
        "cli",
        "publishes commands, reads events, job records and the registry (read-only)",
        publish=(
            publish(
                "commands (RegisterModel, BuildBundle, SubmitJob, CancelJob)", s.COMMAND_SUBJECTS
            ),
            stream_info("status and watch (last sequence)", *ALL_STREAMS),
            event_reader(durable_ok=False),
            kv_read(s.KV_JOBS),
            kv_read(s.KV_MODELS),
            kv_read(s.KV_BUNDLES),
        ),
        subscribe=(
            inbox("cli"),
            Rule("live events (watch, waiting for a command's answer)", (s.EVENT_SUBJECTS,)),
        ),
        deny_publish=(_not_others_durables(EVT),),
    ),
)


# ------------------------------------------------------------------------------- rendering

HEADER = """\
# ModelOps NATS server configuration: JetStream plus one user per component with
# least-privilege subject permissions.
#
# GENERATED by deploy/nats/render_config.py from its permission table: edit that file and run
#     .venv/bin/python deploy/nats/render_config.py
# (a test fails when this file and the table disagree).
#
# Passwords come from the environment (nats-server resolves $NAME from it and refuses to start
# when one is unset):
{envs}
# nats-server parses each value as config syntax: use letters and digits only, starting with a
# letter (`render_config.py --passwords` prints such values). A value may instead be a bcrypt
# hash ('nats server passwd') so the server never holds the plaintext.
# Clients connect with user <name>, its password, and inbox_prefix "_INBOX.<name>".

port: 4222
http_port: 8222  # monitoring: /healthz for probes, /varz, /jsz

# The store directory is given on the command line (-sd /data/jetstream in compose and
# Kubernetes): nats-server refuses a config that sets it twice, and tests pass their own.
jetstream {{
  max_file_store: 16GB  # below the 20Gi volume of the Kubernetes StatefulSet
  max_memory_store: 256MB
}}

# TLS: mount a certificate and uncomment (and make clients use tls:// URLs; see
# docs/deployment.md). verify: true additionally requires client certificates (mutual TLS).
# tls {{
#   cert_file: "/etc/nats/tls/tls.crt"
#   key_file: "/etc/nats/tls/tls.key"
#   ca_file: "/etc/nats/tls/ca.crt"
#   verify: false
#   timeout: 2
# }}
"""


def _quote(subject: str) -> str:
    return f'"{subject}"'


def _rules(rules: tuple[Rule, ...], indent: str) -> list[str]:
    """Each rule's reason as a comment, then its subjects; a subject listed before is skipped."""
    lines: list[str] = []
    seen: set[str] = set()
    for rule in rules:
        fresh = [subj for subj in rule.subjects if subj not in seen]
        seen.update(fresh)
        if fresh:
            lines.append(f"{indent}# {rule.why}")
            lines.extend(f"{indent}{_quote(subj)}" for subj in fresh)
    return lines


def _section(kind: str, allow: tuple[Rule, ...], deny: tuple[Rule, ...]) -> list[str]:
    out = [f"        {kind}: {{", "          allow: ["]
    out += _rules(allow, "            ")
    out.append("          ]")
    if deny:
        out.append("          deny: [")
        out += _rules(deny, "            ")
        out.append("          ]")
    out.append("        }")
    return out


def _user(user: User) -> list[str]:
    out = [
        f"    # {user.name}: {user.summary}",
        "    {",
        f"      user: {user.name}",
        f"      password: ${password_env(user.name)}",
        "      permissions: {",
    ]
    out += _section("publish", user.publish, user.deny_publish)
    out += _section("subscribe", user.subscribe, user.deny_subscribe)
    out += ["      }", "    }"]
    return out


def render(users: tuple[User, ...] = USERS) -> str:
    """The whole configuration file as text (pure)."""
    envs = "\n".join(f"#   {password_env(u.name)}" for u in users)
    lines = [HEADER.format(envs=envs).rstrip("\n"), "", "authorization {", "  timeout: 2"]
    lines.append("  users: [")
    for user in users:
        lines += _user(user)
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    parser.add_argument(
        "--passwords",
        action="store_true",
        help="print one fresh MODELOPS_NATS_<USER>_PASSWORD=… line per user (for .env)",
    )
    args = parser.parse_args(argv)
    if args.passwords:
        for user in USERS:
            print(f"{password_env(user.name)}={new_password()}")
        return 0
    text = render()
    stale = [p for p in OUTPUTS if not p.is_file() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path} (run {Path(__file__).name})", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
