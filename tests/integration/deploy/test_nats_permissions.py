"""deploy/nats/nats-server.conf on a real nats-server: each user can do its job and no more.

Allowed work is driven through nats-py's real JetStream and KV calls (consumer creation, pull,
ack/nak/term/in_progress, KV get/put/update/keys/history/watch, publish acks), and must produce
no permission violation at all. Denials are proven by the server's own "Permissions Violation"
error for the exact subject, which the client receives right after a flush; that is faster and
more precise than waiting for a request to time out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from modelops_contracts import subjects as s
from modelops_runtime.health import jetstream_ready_check
from modelops_runtime.nats_setup import JetStreamSetupError, ensure_jetstream
from modelops_runtime.processes import NatsServer

pytestmark = pytest.mark.integration

CMD, EVT, TASKS = s.COMMANDS_STREAM, s.EVENTS_STREAM, s.TASKS_STREAM
DEADLINE_S = 5.0
# `passwords` and `secured_nats` (deploy/nats/nats-server.conf) come from tests/support/fixtures


class Client:
    """A nats-py connection as one user that records the server's permission violations."""

    def __init__(self) -> None:
        self.nc = nats.NATS()
        self.violations: asyncio.Queue[str] = asyncio.Queue()

    async def _error(self, exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            self.violations.put_nowait(str(exc).lower())

    async def connect(self, url: str, user: str, password: str) -> Client:
        await self.nc.connect(
            servers=[url],
            user=user,
            password=password,
            inbox_prefix=f"_INBOX.{user}",
            name=f"test-{user}",
            error_cb=self._error,
            allow_reconnect=False,
            connect_timeout=2,
        )
        return self

    @property
    def js(self) -> nats.js.JetStreamContext:
        return self.nc.jetstream(timeout=DEADLINE_S)

    async def expect_violation(self, kind: str, subject: str) -> None:
        """Wait for the server's violation of `kind` (publish/subscription) on `subject`."""
        want = f'permissions violation for {kind} to "{subject.lower()}"'
        seen: list[str] = []
        try:
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    got = await self.violations.get()
                    if want in got:
                        return
                    seen.append(got)
        except TimeoutError:
            pytest.fail(f"no violation {want!r} within {DEADLINE_S}s; saw {seen}")

    async def denied_publish(self, subject: str) -> None:
        await self.nc.publish(subject, b"{}", reply=self.nc.new_inbox())
        await self.nc.flush()
        await self.expect_violation("publish", subject)

    async def denied_subscribe(self, subject: str) -> None:
        await self.nc.subscribe(subject)
        await self.nc.flush()
        await self.expect_violation("subscription", subject)

    def assert_clean(self) -> None:
        found = []
        while not self.violations.empty():
            found.append(self.violations.get_nowait())
        assert not found, f"unexpected permission violations: {found}"


@pytest.fixture
async def connect(secured_nats: NatsServer, passwords: dict[str, str]) -> AsyncIterator[object]:
    clients: list[Client] = []

    async def _connect(user: str) -> Client:
        client = await Client().connect(secured_nats.url, user, passwords[user])
        clients.append(client)
        return client

    # Streams and buckets exist before each test, declared by a service user as in production.
    setup = await _connect("submitter")
    await ensure_jetstream(setup.js)
    try:
        yield _connect
    finally:
        for client in clients:
            await client.nc.close()


def new_job() -> str:
    return f"job{uuid.uuid4().hex[:12]}"


async def fetch_one(sub):
    msgs = await sub.fetch(1, timeout=DEADLINE_S)
    assert len(msgs) == 1
    return msgs[0]


# ------------------------------------------------------------------------- authentication


async def test_unknown_user_and_anonymous_and_wrong_password_are_refused(
    secured_nats: NatsServer, passwords: dict[str, str]
):
    for user, password in [("registrar", "wrong"), ("nobody", "x"), (None, None)]:
        nc = nats.NATS()
        with pytest.raises((nats.errors.Error, OSError)):
            await nc.connect(
                servers=[secured_nats.url],
                user=user,
                password=password,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
            )
        await nc.close()


# ------------------------------------------------------------------------------- services


async def test_registrar_consumes_register_model_keeps_registry_and_emits(connect):
    cli, registrar = await connect("cli"), await connect("registrar")
    await ensure_jetstream(registrar.js)  # the real start-up call: create/update only
    ready = jetstream_ready_check(
        registrar.js, streams=[CMD, EVT], kv=[s.KV_MODELS, s.KV_BUNDLES, s.KV_JOBS]
    )
    assert await ready() is True

    ack = await cli.js.publish(s.command_subject("register_model"), b'{"project":"p"}')
    assert ack.stream == CMD
    sub = await registrar.js.pull_subscribe(
        s.command_subject("register_model"), durable="registrar", stream=CMD
    )
    msg = await fetch_one(sub)
    assert msg.subject == s.command_subject("register_model")
    await msg.ack_sync()

    kv = await registrar.js.key_value(s.KV_MODELS)
    project = f"proj-{uuid.uuid4().hex[:8]}"
    rev = await kv.put(project, b"v1")
    rev2 = await kv.update(project, b"v2", last=rev)  # optimistic concurrency
    assert (await kv.get(project)).value == b"v2"
    assert [e.revision for e in await kv.history(project)] == [rev, rev2]
    assert project in await kv.keys()
    watcher = await kv.watch(project)
    assert (await watcher.updates(timeout=DEADLINE_S)).value == b"v2"
    await watcher.stop()

    await registrar.js.publish(f"{s.MODEL_EVENTS}.model_registered", b"{}")
    await registrar.js.publish(f"{s.REJECTED_EVENTS}.command_rejected", b"{}")
    registrar.assert_clean()

    # Not its commands, events, buckets or consumers.
    await registrar.denied_publish(s.command_subject("submit_job"))
    await registrar.denied_publish(s.job_event_subject("j1", "job_completed"))
    await registrar.denied_publish(f"{s.BUNDLE_EVENTS}.bundle_pushed")
    await registrar.denied_publish(f"$KV.{s.KV_JOBS}.j1")
    await registrar.denied_publish(f"$JS.API.CONSUMER.MSG.NEXT.{CMD}.submitter")
    await registrar.denied_publish(f"$JS.API.STREAM.DELETE.{CMD}")
    await registrar.denied_subscribe("_INBOX.>")
    await registrar.denied_subscribe(s.COMMAND_SUBJECTS)


async def test_bundler_consumes_build_bundle_and_model_events_and_records_bundles(connect):
    cli, registrar, bundler = (
        await connect("cli"),
        await connect("registrar"),
        await connect("bundler"),
    )
    await cli.js.publish(s.command_subject("build_bundle"), b"{}")
    await registrar.js.publish(f"{s.MODEL_EVENTS}.model_registered", b"{}")
    models = await registrar.js.key_value(s.KV_MODELS)
    await models.put("bundler-test", b"registry")

    commands = await bundler.js.pull_subscribe(
        s.command_subject("build_bundle"), durable="bundler", stream=CMD
    )
    await (await fetch_one(commands)).ack()
    auto = await bundler.js.pull_subscribe(
        f"{s.MODEL_EVENTS}.>", durable="bundler-on-register", stream=EVT
    )
    await (await fetch_one(auto)).ack()

    assert (await (await bundler.js.key_value(s.KV_MODELS)).get("bundler-test")).value == (
        b"registry"
    )
    bundles = await bundler.js.key_value(s.KV_BUNDLES)
    await bundles.put("sha256-abc", b"index")
    await bundles.put("project.latest", b"sha256-abc")
    await bundler.js.publish(f"{s.BUNDLE_EVENTS}.bundle_pushed", b"{}")
    bundler.assert_clean()

    await bundler.denied_publish(f"$KV.{s.KV_MODELS}.bundler-test")  # the registry is read-only
    await bundler.denied_publish(f"{s.MODEL_EVENTS}.model_registered")
    await bundler.denied_publish(s.task_subject("j1"))
    await bundler.denied_publish(f"$JS.API.CONSUMER.MSG.NEXT.{CMD}.registrar")


async def test_submitter_runs_a_job_queue_tracks_events_and_cancels(connect):
    cli, submitter = await connect("cli"), await connect("submitter")
    job = new_job()
    await cli.js.publish(s.command_subject("submit_job"), b"{}")
    await cli.js.publish(s.command_subject("cancel_job"), b"{}")
    commands = await submitter.js.pull_subscribe(
        "",
        durable="submitter",
        stream=CMD,
        config=ConsumerConfig(
            filter_subjects=[s.command_subject("submit_job"), s.command_subject("cancel_job")]
        ),
    )
    for msg in await commands.fetch(2, timeout=DEADLINE_S):
        await msg.ack()

    jobs = await submitter.js.key_value(s.KV_JOBS)
    rev = await jobs.create(job, b"submitted")
    await jobs.update(job, b"running", last=rev)

    # The job's queue: consumer, tasks, inspection.
    consumer = f"runners-{job}"
    await submitter.js.add_consumer(
        TASKS,
        ConsumerConfig(
            name=consumer,
            durable_name=consumer,
            filter_subject=s.task_subject(job),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=3,
            max_ack_pending=64,
        ),
    )
    acks = await asyncio.gather(
        *(
            submitter.js.publish(
                s.task_subject(job), b"task", headers={"Nats-Msg-Id": f"{job}:{i}"}
            )
            for i in range(5)
        )
    )
    assert {a.stream for a in acks} == {TASKS}
    assert (await submitter.js.consumer_info(TASKS, consumer)).num_pending == 5

    # Tracking: a durable on job events, and a replay from a recorded sequence.
    await submitter.js.publish(s.job_event_subject(job, "job_submitted"), b"{}")
    start = (await submitter.js.stream_info(EVT)).state.last_seq
    tracker = await submitter.js.pull_subscribe(
        s.job_events_filter(), durable="submitter", stream=EVT
    )
    seen = await tracker.fetch(1, timeout=DEADLINE_S)
    for msg in seen:
        await msg.ack()
    replay = await submitter.js.subscribe(
        s.job_events_filter(job),
        stream=EVT,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
    )
    replayed = await replay.next_msg(timeout=DEADLINE_S)
    assert replayed.subject == s.job_event_subject(job, "job_submitted")
    await replay.unsubscribe()

    # Cancel: purge the job's subject, delete its consumer, record it.
    assert await submitter.js.purge_stream(TASKS, subject=s.task_subject(job))
    assert await submitter.js.delete_consumer(TASKS, consumer)
    await jobs.put(job, b"cancelled")
    await submitter.js.publish(s.job_event_subject(job, "job_cancelled"), b"{}")
    submitter.assert_clean()

    await submitter.denied_publish(s.command_subject("register_model"))
    await submitter.denied_publish(f"$KV.{s.KV_MODELS}.x")
    await submitter.denied_publish(f"$JS.API.CONSUMER.MSG.NEXT.{EVT}.bundler-on-register")
    await submitter.denied_publish(f"$JS.API.STREAM.DELETE.{TASKS}")
    await submitter.denied_subscribe(s.TASK_SUBJECTS)


async def test_runner_pulls_its_job_and_reports_nothing_else(connect):
    submitter, runner = await connect("submitter"), await connect("runner")
    job = new_job()
    consumer = f"runners-{job}"
    await submitter.js.add_consumer(
        TASKS,
        ConsumerConfig(
            name=consumer,
            durable_name=consumer,
            filter_subject=s.task_subject(job),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=2,
        ),
    )
    for i in range(3):
        await submitter.js.publish(s.task_subject(job), f"t{i}".encode())

    # The runner binds to the consumer the submitter made (stream named: no lookup needed).
    sub = await runner.js.pull_subscribe(s.task_subject(job), durable=consumer, stream=TASKS)
    done, failed, retried = await sub.fetch(3, timeout=DEADLINE_S)
    await done.in_progress()
    await runner.js.publish(
        s.job_event_subject(job, "task_completed"), b"{}", headers={"Nats-Msg-Id": "t0:c:1"}
    )
    await done.ack_sync()
    await runner.js.publish(s.job_event_subject(job, "task_failed"), b"{}")
    await failed.term()
    await retried.nak()
    again = await fetch_one(sub)
    assert again.data == retried.data
    await again.ack_sync()
    info = await sub.consumer_info()  # the runner's "drained?" check
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    runner.assert_clean()

    # Commands, other events, the queue itself, KV, streams: all refused.
    await runner.denied_publish(s.command_subject("submit_job"))
    await runner.denied_publish(s.command_subject("cancel_job"))
    await runner.denied_publish(s.job_event_subject(job, "job_completed"))
    await runner.denied_publish(f"{s.MODEL_EVENTS}.model_registered")
    await runner.denied_publish(s.task_subject(job))
    await runner.denied_publish(f"$KV.{s.KV_JOBS}.{job}")
    await runner.denied_publish(f"$JS.API.DIRECT.GET.{'KV_' + s.KV_JOBS}")
    await runner.denied_publish(f"$JS.API.STREAM.MSG.GET.KV_{s.KV_JOBS}")
    await runner.denied_publish(f"$JS.API.CONSUMER.CREATE.{TASKS}.mine.{s.TASK_SUBJECTS}")
    await runner.denied_publish(f"$JS.API.CONSUMER.DELETE.{TASKS}.{consumer}")
    await runner.denied_publish(f"$JS.API.STREAM.PURGE.{TASKS}")
    await runner.denied_publish(f"$JS.API.STREAM.INFO.{EVT}")
    await runner.denied_publish(f"$JS.API.CONSUMER.MSG.NEXT.{CMD}.submitter")
    await runner.denied_publish(f"$JS.API.STREAM.CREATE.{TASKS}")
    for subject in (
        s.EVENT_SUBJECTS,
        s.COMMAND_SUBJECTS,
        s.TASK_SUBJECTS,
        "_INBOX.>",
        "_INBOX.submitter.>",
        f"$KV.{s.KV_JOBS}.>",
    ):
        await runner.denied_subscribe(subject)


async def test_runner_cannot_declare_streams_through_the_real_api(connect):
    """ensure_jetstream as the runner: the server refuses the request, nothing is created."""
    runner = await connect("runner")
    js = runner.nc.jetstream(timeout=0.5)
    with pytest.raises(JetStreamSetupError, match="did not answer"):
        await ensure_jetstream(js)
    await runner.expect_violation("publish", f"$JS.API.STREAM.INFO.{CMD}")


async def test_cli_publishes_commands_and_reads_events_and_records(connect):
    cli, registrar, submitter = (
        await connect("cli"),
        await connect("registrar"),
        await connect("submitter"),
    )
    job = new_job()
    jobs = await submitter.js.key_value(s.KV_JOBS)
    await jobs.put(job, b"record")

    live = await cli.nc.subscribe(s.EVENT_SUBJECTS)
    await cli.nc.flush()
    for kind in ("register_model", "build_bundle", "submit_job", "cancel_job"):
        assert (await cli.js.publish(s.command_subject(kind), b"{}")).stream == CMD
    await registrar.js.publish(f"{s.MODEL_EVENTS}.model_registered", b"answer")
    assert (await live.next_msg(timeout=DEADLINE_S)).data == b"answer"

    history = await cli.js.subscribe(
        f"{s.MODEL_EVENTS}.>", stream=EVT, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    assert (await history.next_msg(timeout=DEADLINE_S)).subject.startswith(s.MODEL_EVENTS)
    await history.unsubscribe()
    pull = await cli.js.pull_subscribe(f"{s.MODEL_EVENTS}.>", stream=EVT)  # ephemeral
    await (await fetch_one(pull)).ack()

    records = await cli.js.key_value(s.KV_JOBS)
    assert (await records.get(job)).value == b"record"
    assert job in await records.keys()
    assert (await cli.js.stream_info(TASKS)).config.name == TASKS
    cli.assert_clean()

    await cli.denied_publish(s.job_event_subject(job, "job_completed"))
    await cli.denied_publish(f"{s.MODEL_EVENTS}.model_registered")
    await cli.denied_publish(s.task_subject(job))
    await cli.denied_publish(f"$KV.{s.KV_JOBS}.{job}")
    await cli.denied_publish(f"$JS.API.CONSUMER.MSG.NEXT.{EVT}.submitter")
    await cli.denied_publish(f"$JS.ACK.{EVT}.submitter.1.1.1.1.0")
    await cli.denied_publish(f"$JS.API.CONSUMER.CREATE.{TASKS}.x.{s.task_subject(job)}")
    await cli.denied_publish(f"$JS.API.STREAM.CREATE.{CMD}")
    await cli.denied_subscribe(s.TASK_SUBJECTS)
    await cli.denied_subscribe("_INBOX.runner.>")


async def test_a_faststream_pull_subscriber_works_as_the_services_build_it(
    secured_nats: NatsServer, passwords: dict[str, str], connect
):
    """The services consume through faststream: its consumer set-up must fit the permissions."""
    from faststream import AckPolicy as FsAckPolicy
    from faststream.nats import JStream, NatsBroker, PullSub
    from faststream.nats.annotations import NatsMessage
    from faststream.nats.security import NatsUserPassword

    cli = await connect("cli")
    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            violations.append(str(exc))

    broker = NatsBroker(
        secured_nats.url,
        security=NatsUserPassword(username="registrar", password=passwords["registrar"]),
        inbox_prefix="_INBOX.registrar",
        error_cb=on_error,
    )
    got: asyncio.Queue[bytes] = asyncio.Queue()

    @broker.subscriber(
        s.command_subject("register_model"),
        stream=JStream(CMD, declare=False),
        durable="registrar",
        pull_sub=PullSub(batch_size=4, timeout=0.5),
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_deliver=5),
        ack_policy=FsAckPolicy.MANUAL,
        # faststream passes its own default "_INBOX." to each pull subscription: repeat ours.
        inbox_prefix=b"_INBOX.registrar.",
    )
    async def handle(msg: NatsMessage) -> None:
        await msg.ack()
        got.put_nowait(msg.raw_message.data)

    async with broker:
        await broker.start()
        await cli.js.publish(s.command_subject("register_model"), b"via-faststream")
        async with asyncio.timeout(DEADLINE_S):
            while (await got.get()) != b"via-faststream":
                pass
    assert not violations
