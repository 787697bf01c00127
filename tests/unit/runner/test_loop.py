"""The runner loop's decisions, driven by in-memory fakes of the queue, pool, store and bus.

The fakes speak the loop's real interfaces (TaskQueue/QueueMessage, Pool, BlobStore subset,
EventPublisher); what is checked is what the loop does with each message: which events it
publishes, in which order it stores, publishes and settles, and how it sizes its fetches.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from modelops_contracts import ParameterSet, SimTask, TaskMetrics, encode
from modelops_contracts.jobs import blob_keys
from modelops_contracts.messages import Event, TaskCompleted, TaskFailed
from modelops_runner.errors import ConsumerGone, ReportError
from modelops_runner.pool import TaskFailure, TaskOutcome, TaskSuccess, WorkItem
from modelops_runner.queue import ConsumerLimits, QueueState
from modelops_runner.results import ResultRecord
from modelops_runner.runner import CORRELATION_HEADER, LoopConfig, Runner
from modelops_runtime.blobstore import BlobNotFound, BlobPut, BlobStoreUnavailable

JOB = "job-unit"
BUNDLE = f"registry.test/sir@sha256:{'c' * 64}"
SIR = "model:StochasticSIR"


def sim_task(seed: int, entrypoint: str = SIR, bundle_ref: str = BUNDLE) -> SimTask:
    return SimTask(
        bundle_ref=bundle_ref,
        entrypoint=entrypoint,
        params=ParameterSet(params={"beta": 0.1}),
        seed=seed,
    )


# --------------------------------------------------------------------------------------- fakes


@dataclass(eq=False)
class FakeMessage:
    data: bytes
    headers: dict[str, str]
    stream_seq: int
    journal: list[tuple[str, Any]]
    attempt: int = 1
    settled: str = ""
    nak_delays: list[float] = field(default_factory=list)
    beats: int = 0
    queue: FakeQueue | None = None

    def _settle(self, how: str) -> None:
        assert not self.settled, f"message {self.stream_seq} settled twice ({self.settled}, {how})"
        self.settled = how
        self.journal.append((how, self.stream_seq))
        if self.queue is not None:
            self.queue.in_flight.discard(self)

    async def ack(self) -> None:
        self._settle("ack")

    async def nak(self, delay_s: float = 0.0) -> None:
        self._settle("nak")
        self.nak_delays.append(delay_s)
        if self.queue is not None and self.queue.redeliver:
            self.queue.push_redelivery(self)

    async def in_progress(self) -> None:
        self.beats += 1

    async def term(self) -> None:
        self._settle("term")


class FakeQueue:
    """A work queue with delivery counts; nak'ed messages come back with attempt + 1."""

    def __init__(
        self, journal: list[tuple[str, Any]], *, max_deliver: int = 3, redeliver: bool = True
    ):
        self.journal = journal
        self.max_deliver = max_deliver
        self.redeliver = redeliver
        self.ready: deque[FakeMessage] = deque()
        self.in_flight: set[FakeMessage] = set()
        self.fetches: list[int] = []
        self.gone = False
        self.extra_ack_pending = 0  # messages "another runner" holds
        self._seq = 0
        self._arrived = asyncio.Event()

    def put(self, data: bytes, headers: dict[str, str] | None = None) -> FakeMessage:
        self._seq += 1
        msg = FakeMessage(
            data=data, headers=headers or {}, stream_seq=self._seq, journal=self.journal, queue=self
        )
        self.ready.append(msg)
        self._arrived.set()
        return msg

    def put_task(self, task: SimTask, **headers: str) -> FakeMessage:
        return self.put(encode(task), {"Nats-Msg-Id": f"{JOB}:{task.task_id}", **headers})

    def push_redelivery(self, old: FakeMessage) -> None:
        if old.attempt >= self.max_deliver:
            return
        msg = FakeMessage(
            data=old.data,
            headers=old.headers,
            stream_seq=old.stream_seq,
            journal=self.journal,
            attempt=old.attempt + 1,
            queue=self,
        )
        self.ready.append(msg)
        self._arrived.set()

    async def limits(self) -> ConsumerLimits:
        return ConsumerLimits(ack_wait_s=30, max_deliver=self.max_deliver, max_ack_pending=1000)

    async def fetch(self, batch: int, timeout_s: float) -> list[FakeMessage]:
        if self.gone:
            raise ConsumerGone("consumer deleted")
        self.fetches.append(batch)
        if not self.ready:
            self._arrived.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._arrived.wait()
            except TimeoutError:
                return []
        out = []
        while self.ready and len(out) < batch:
            msg = self.ready.popleft()
            self.in_flight.add(msg)
            out.append(msg)
        return out

    async def state(self) -> QueueState:
        if self.gone:
            raise ConsumerGone("consumer deleted")
        return QueueState(
            num_pending=len(self.ready),
            num_ack_pending=len(self.in_flight) + self.extra_ack_pending,
        )

    async def close(self) -> None:
        pass


Behaviour = Callable[[WorkItem], Awaitable[TaskOutcome]]


def success(item: WorkItem) -> TaskSuccess:
    return TaskSuccess(
        task_id=item.task_id,
        outputs={"summary": b"PAR1-" + item.task_id.encode()},
        wall_s=0.02,
        cpu_s=0.01,
        peak_rss_bytes=1 << 20,
    )


class FakePool:
    def __init__(self, n_workers: int = 2, behaviour: Behaviour | None = None) -> None:
        self.n_workers = n_workers
        self.items: list[WorkItem] = []
        self.running = 0
        self.max_running = 0
        self.cancelled = 0
        self._behaviour = behaviour
        self._workers = asyncio.Semaphore(n_workers)

    async def run(self, item: WorkItem) -> TaskOutcome:
        async with self._workers:  # as WorkerPool: tasks beyond the workers wait in line
            self.items.append(item)
            if item.on_start is not None:
                item.on_start()
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            try:
                if self._behaviour is not None:
                    return await self._behaviour(item)
                return success(item)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self.running -= 1


class MemoryStore:
    """The BlobStore calls results.py makes, in memory, with injectable outages.

    Each put_batch stage ends with a ("sync", n) journal entry, as file:// syncs once per stage.
    """

    uri = "mem://store"

    def __init__(self, journal: list[tuple[str, Any]]) -> None:
        self.blobs: dict[str, bytes] = {}
        self.journal = journal
        self.fail_next_puts = 0

    def uri_for(self, key: str) -> str:
        return f"{self.uri}/{key}"

    def _key(self, key_or_uri: str) -> str:
        return key_or_uri.removeprefix(self.uri + "/")

    def _maybe_fail(self) -> None:
        if self.fail_next_puts:
            self.fail_next_puts -= 1
            raise BlobStoreUnavailable("mem://store", detail="injected outage")

    async def get_bytes(self, key_or_uri: str) -> bytes:
        key = self._key(key_or_uri)
        if key not in self.blobs:
            raise BlobNotFound(self.uri_for(key))
        return self.blobs[key]

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        self._maybe_fail()
        self.blobs[key] = data
        self.journal.append(("put", key))
        return self.uri_for(key)

    async def put_if_absent(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> bool:
        self._maybe_fail()
        if key in self.blobs:
            return False
        self.blobs[key] = data
        self.journal.append(("put", key))
        return True

    async def exists(self, key_or_uri: str) -> bool:
        self.journal.append(("exists", self._key(key_or_uri)))
        return self._key(key_or_uri) in self.blobs

    async def get_batch(self, keys_or_uris: Sequence[str]) -> list[bytes | None]:
        self.journal.append(("get_batch", len(keys_or_uris)))
        return [self.blobs.get(self._key(k)) for k in keys_or_uris]

    async def put_batch(self, *stages: Sequence[BlobPut]) -> list[list[bool]]:
        self._maybe_fail()
        results = []
        for stage in stages:
            wrote = []
            for put in stage:
                if put.if_absent and put.key in self.blobs:
                    wrote.append(False)
                    continue
                self.blobs[put.key] = put.data
                self.journal.append(("put", put.key))
                wrote.append(True)
            self.journal.append(("sync", len(stage)))
            results.append(wrote)
        return results


class FakePublisher:
    def __init__(self, journal: list[tuple[str, Any]]) -> None:
        self.events: list[Event] = []
        self.journal = journal
        self.fail_next = 0

    async def publish(self, event: Event) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ReportError(f"no PubAck for {event.id}")
        self.events.append(event)
        self.journal.append(("publish", event.id))

    async def publish_many(self, events: Sequence[Event]) -> list[ReportError | None]:
        problems: list[ReportError | None] = []
        for event in events:
            try:
                await self.publish(event)
            except ReportError as exc:
                problems.append(exc)
            else:
                problems.append(None)
        return problems

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class World:
    journal: list[tuple[str, Any]]
    queue: FakeQueue
    pool: FakePool
    store: MemoryStore
    bus: FakePublisher

    def runner(self, **overrides: Any) -> Runner:
        cfg = LoopConfig(
            job_id=JOB,
            runner_id="unit-runner",
            bundle_ref=BUNDLE,
            n_workers=self.pool.n_workers,
            ack_wait_s=overrides.pop("ack_wait_s", 30.0),
            max_deliver=self.queue.max_deliver,
            correlation_id="corr-1",
            fetch_timeout_s=overrides.pop("fetch_timeout_s", 0.02),
            **overrides,
        )
        return Runner(cfg, queue=self.queue, pool=self.pool, store=self.store, publisher=self.bus)


def make_world(
    *, n_workers: int = 2, behaviour: Behaviour | None = None, max_deliver: int = 3
) -> World:
    journal: list[tuple[str, Any]] = []
    return World(
        journal=journal,
        queue=FakeQueue(journal, max_deliver=max_deliver),
        pool=FakePool(n_workers, behaviour),
        store=MemoryStore(journal),
        bus=FakePublisher(journal),
    )


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Yield to the loop until `predicate` holds (deadline poll, no timed sleeps)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


def record_of(store: MemoryStore, task_id: str) -> ResultRecord:
    return msgspec.json.decode(store.blobs[blob_keys.result_done(task_id)], type=ResultRecord)


# --------------------------------------------------------------------------------------- tests


async def test_successful_tasks_store_then_publish_then_ack_and_drain() -> None:
    w = make_world()
    tasks = [sim_task(seed) for seed in range(5)]
    msgs = [w.queue.put_task(t) for t in tasks]

    assert await w.runner().run() == "drained"

    completed = w.bus.of(TaskCompleted)
    assert sorted(e.task_id for e in completed) == sorted(t.task_id for t in tasks)
    for task, msg in zip(tasks, msgs, strict=True):
        event = next(e for e in completed if e.task_id == task.task_id)
        assert event.id == f"{JOB}:{task.task_id}:task_completed:1"
        assert not event.cached and event.attempt == 1 and event.runner_id == "unit-runner"
        assert event.correlation_id == "corr-1"
        assert event.metrics == TaskMetrics(wall_s=0.02, cpu_s=0.01, peak_rss_bytes=1 << 20)
        output_key = blob_keys.result_output(task.task_id, "summary")
        assert event.outputs == {"summary": w.store.uri_for(output_key)}
        assert w.store.blobs[output_key] == b"PAR1-" + task.task_id.encode()
        assert record_of(w.store, task.task_id).outputs == event.outputs
        # order: output, then _done.json, then the event, then the ack
        steps = [
            ("put", output_key),
            ("put", blob_keys.result_done(task.task_id)),
            ("publish", event.id),
            ("ack", msg.stream_seq),
        ]
        positions = [w.journal.index(step) for step in steps]
        assert positions == sorted(positions)
    item = w.pool.items[0]
    assert item.entrypoint == SIR and item.params == {"beta": 0.1} and item.outputs is None


async def test_store_calls_are_batched_and_each_record_follows_its_synced_outputs() -> None:
    w = make_world(n_workers=4)
    tasks = [sim_task(seed) for seed in range(40)]
    msgs = [w.queue.put_task(t) for t in tasks]
    for msg in msgs:
        msg.attempt = 2  # redeliveries, which are looked up (first deliveries are not)

    assert await w.runner(max_held=40).run() == "drained"

    lookups = [n for kind, n in w.journal if kind == "get_batch"]
    stages = [n for kind, n in w.journal if kind == "sync"]
    assert sum(lookups) == 40 and len(lookups) < 20  # one lookup serves a whole fetch
    assert sum(stages) == 80 and len(stages) < 40  # outputs + records of many tasks per stage
    syncs = [i for i, step in enumerate(w.journal) if step[0] == "sync"]
    for task, msg in zip(tasks, msgs, strict=True):
        output = w.journal.index(("put", blob_keys.result_output(task.task_id, "summary")))
        done = w.journal.index(("put", blob_keys.result_done(task.task_id)))
        synced = next(i for i in syncs if i > output)
        assert output < synced < done  # the record is written once its outputs are durable
        published = w.journal.index(("publish", f"{JOB}:{task.task_id}:task_completed:2"))
        assert (
            next(i for i in syncs if i > done)
            < published
            < w.journal.index(("ack", msg.stream_seq))
        )


def _stored_by_another_job(w: World, task: SimTask) -> ResultRecord:
    stored = ResultRecord(
        task_id=task.task_id,
        job_id="job-earlier",
        attempt=1,
        outputs={"summary": "mem://store/x.parquet"},
        runner_id="old-runner",
        time="2026-01-01T00:00:00Z",
    )
    w.store.blobs[blob_keys.result_done(task.task_id)] = msgspec.json.encode(stored)
    return stored


async def test_a_redelivered_task_stored_by_another_job_is_reported_cached_unrun() -> None:
    w = make_world()
    task = sim_task(1)
    stored = _stored_by_another_job(w, task)
    msg = w.queue.put_task(task)
    msg.attempt = 2

    assert await w.runner().run() == "drained"

    (event,) = w.bus.of(TaskCompleted)
    assert event.cached and event.outputs == stored.outputs and event.runner_id == "unit-runner"
    assert w.pool.items == [] and msg.settled == "ack"


async def test_a_first_delivery_is_not_looked_up_and_a_record_stored_meanwhile_wins() -> None:
    """The submitter checked the cache when it queued the task; another job that stored the
    same task since then costs a run, and its record is the one reported."""
    w = make_world()
    task = sim_task(1)
    stored = _stored_by_another_job(w, task)
    msg = w.queue.put_task(task)

    assert await w.runner().run() == "drained"

    assert not [step for step in w.journal if step[0] == "get_batch"]  # no lookup
    assert [item.task_id for item in w.pool.items] == [task.task_id]  # it ran
    (event,) = w.bus.of(TaskCompleted)
    assert event.cached and event.outputs == stored.outputs  # the stored record won
    assert record_of(w.store, task.task_id) == stored and msg.settled == "ack"


async def test_a_redelivered_task_already_stored_by_this_job_republishes_the_same_event() -> None:
    """The crash-after-store case: same event id and content, so JetStream keeps one."""
    w = make_world()
    task = sim_task(2)
    first = make_world()
    first.queue.put_task(task)
    await first.runner().run()
    (original,) = first.bus.of(TaskCompleted)
    w.store.blobs.update(first.store.blobs)  # the result survived the crash; the ack did not
    msg = w.queue.put_task(task)
    msg.attempt = 2

    await w.runner().run()

    (again,) = w.bus.of(TaskCompleted)
    assert again.id == original.id and again.time == original.time
    assert again.attempt == 1 and not again.cached
    assert msgspec.structs.asdict(again) == msgspec.structs.asdict(original)
    assert w.pool.items == [] and msg.settled == "ack"


async def test_a_model_failure_is_final_and_acked() -> None:
    async def fail(item: WorkItem) -> TaskOutcome:
        return TaskFailure(
            task_id=item.task_id,
            kind="signal",
            message="worker died from SIGSEGV",
            stderr_tail="x" * 20_000,
            signal=11,
        )

    w = make_world(behaviour=fail)
    task = sim_task(3)
    msg = w.queue.put_task(task, **{CORRELATION_HEADER: "corr-from-header"})

    assert await w.runner().run() == "drained"

    (event,) = w.bus.of(TaskFailed)
    assert event.failure == "signal" and event.final and event.signal == 11
    assert event.task_id == task.task_id and event.correlation_id == "corr-from-header"
    assert event.id == f"{JOB}:{task.task_id}:task_failed:1"
    assert len(event.stderr_tail) == 8 * 1024  # bounded: events are kept for 30 days
    assert msg.settled == "ack" and blob_keys.result_done(task.task_id) not in w.store.blobs


async def test_an_undecodable_message_is_reported_and_terminated_never_retried() -> None:
    w = make_world()
    msg = w.queue.put(b'{"entrypoint": 42}', {"Nats-Msg-Id": f"{JOB}:abc123"})
    junk = w.queue.put(b"\xff\xfe not json")

    assert await w.runner().run() == "drained"

    events = {e.task_id: e for e in w.bus.of(TaskFailed)}
    assert set(events) == {"abc123", f"undecodable-seq-{junk.stream_seq}"}
    assert all(e.failure == "infrastructure" and e.final for e in events.values())
    assert "cannot be decoded" in events["abc123"].message
    assert msg.settled == junk.settled == "term" and w.pool.items == []


async def test_a_task_for_another_bundle_is_terminated() -> None:
    w = make_world()
    other = f"registry.test/sir@sha256:{'d' * 64}"
    msg = w.queue.put_task(sim_task(4, bundle_ref=other))

    await w.runner().run()

    (event,) = w.bus.of(TaskFailed)
    assert event.failure == "infrastructure" and other in event.message
    assert msg.settled == "term" and w.pool.items == []


async def test_blob_store_outage_naks_with_backoff_then_succeeds_on_redelivery() -> None:
    w = make_world()
    w.store.fail_next_puts = 1
    task = sim_task(5)
    first = w.queue.put_task(task)

    assert await w.runner().run() == "drained"

    assert first.settled == "nak" and first.nak_delays == [1.0]
    (event,) = w.bus.of(TaskCompleted)
    assert event.attempt == 2 and event.id.endswith(":task_completed:2")
    assert not w.bus.of(TaskFailed)


async def test_infrastructure_failure_on_the_last_delivery_is_final_and_terminated() -> None:
    w = make_world(max_deliver=3)
    w.store.fail_next_puts = 10**6
    task = sim_task(6)
    w.queue.put_task(task)
    runner = w.runner()

    assert await runner.run() == "drained"

    naks = [step for step in w.journal if step[0] == "nak"]
    terms = [step for step in w.journal if step[0] == "term"]
    assert len(naks) == 2 and len(terms) == 1
    (event,) = w.bus.of(TaskFailed)
    assert event.failure == "infrastructure" and event.final and event.attempt == 3
    assert "gave up after 3 deliveries" in event.message and "injected outage" in event.message
    assert runner.stats.retried == 2 and runner.stats.terminated == 1


async def test_unacknowledged_event_is_not_acked_and_the_retry_publishes_the_same_id() -> None:
    w = make_world()
    w.bus.fail_next = 1
    task = sim_task(7)
    first = w.queue.put_task(task)

    await w.runner().run()

    assert first.settled == "nak"
    (event,) = w.bus.of(TaskCompleted)
    assert event.id == f"{JOB}:{task.task_id}:task_completed:1"  # from the stored record
    assert len(w.pool.items) == 1  # the model ran once; the retry reused its stored result


async def test_pool_infrastructure_failure_is_retried_not_final() -> None:
    calls = 0

    async def flaky(item: WorkItem) -> TaskOutcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            return TaskFailure(task_id=item.task_id, kind="infrastructure", message="pipe broke")
        return success(item)

    w = make_world(behaviour=flaky)
    w.queue.put_task(sim_task(8))

    await w.runner().run()

    assert calls == 2 and len(w.bus.of(TaskCompleted)) == 1 and not w.bus.of(TaskFailed)


async def test_bad_output_names_fail_the_task_as_bad_output() -> None:
    async def weird(item: WorkItem) -> TaskOutcome:
        return TaskSuccess(
            task_id=item.task_id, outputs={"../escape": b"x"}, wall_s=0, cpu_s=0, peak_rss_bytes=0
        )

    w = make_world(behaviour=weird)
    msg = w.queue.put_task(sim_task(9))

    await w.runner().run()

    (event,) = w.bus.of(TaskFailed)
    assert event.failure == "bad_output" and "../escape" in event.message
    assert msg.settled == "ack" and not w.store.blobs


async def test_fetches_are_sized_to_free_workers_and_workers_stay_busy() -> None:
    gate = asyncio.Event()

    async def slow(item: WorkItem) -> TaskOutcome:
        await gate.wait()
        return success(item)

    w = make_world(n_workers=3, behaviour=slow)
    for seed in range(10):
        w.queue.put_task(sim_task(seed))
    run = asyncio.create_task(w.runner().run())

    await until(lambda: w.pool.running == 3, "three tasks running")
    assert w.queue.fetches[0] == 3  # long tasks (unknown yet): no batch ahead
    assert len(w.queue.in_flight) == 3
    gate.set()
    assert await run == "drained"
    assert w.pool.max_running == 3 and len(w.bus.of(TaskCompleted)) == 10


async def test_finished_tasks_wait_for_company_but_never_for_nothing() -> None:
    w = make_world(n_workers=2)
    for seed in range(30):
        w.queue.put_task(sim_task(seed))

    async with asyncio.timeout(10):  # a minute's window never holds the job up
        assert await w.runner(store_window_s=60.0).run() == "drained"

    stages = [n for kind, n in w.journal if kind == "sync"]  # outputs, then records
    assert stages[0] <= 2  # the first results go out at once: the job is seen running
    assert len(stages) <= 6 and sum(stages) == 60  # the rest waited for one another
    assert len(w.bus.of(TaskCompleted)) == 30 and not w.queue.in_flight


async def test_finished_tasks_that_fill_the_runners_room_are_stored_at_once() -> None:
    async def brief(item: WorkItem) -> TaskOutcome:
        await asyncio.sleep(0.005)
        return success(item)

    w = make_world(n_workers=2, behaviour=brief)
    for seed in range(40):
        w.queue.put_task(sim_task(seed))
    running_at_store: list[int] = []
    put_batch = w.store.put_batch

    async def watched(*stages: Sequence[BlobPut]) -> list[list[bool]]:
        running_at_store.append(w.pool.running)
        return await put_batch(*stages)

    w.store.put_batch = watched  # type: ignore[method-assign]

    async with asyncio.timeout(10):
        assert await w.runner(store_window_s=60.0, max_held=6).run() == "drained"

    stages = [n for kind, n in w.journal if kind == "sync"]
    assert max(stages) <= 6 and sum(stages) == 80
    # held at the limit, the window is cut short while the workers still run: they are not
    # left idle until every task here has finished
    assert sum(1 for n in running_at_store if n > 0) >= len(running_at_store) // 2
    assert len(w.bus.of(TaskCompleted)) == 40


async def test_short_tasks_are_fetched_ahead_in_batches() -> None:
    w = make_world(n_workers=2)
    for seed in range(200):
        w.queue.put_task(sim_task(seed))

    assert await w.runner(max_held=24).run() == "drained"

    assert w.queue.fetches[0] == 2  # nothing known yet: one task per worker
    assert max(w.queue.fetches) >= 11  # once tasks prove short: a window's worth at once
    assert len(w.queue.fetches) < 60  # batches, not a round trip per task
    assert w.pool.max_running <= 2 and len(w.bus.of(TaskCompleted)) == 200


async def test_long_running_tasks_get_in_progress_heartbeats() -> None:
    gate = asyncio.Event()

    async def long(item: WorkItem) -> TaskOutcome:
        await gate.wait()
        return success(item)

    w = make_world(n_workers=1, behaviour=long)
    msg = w.queue.put_task(sim_task(1))
    run = asyncio.create_task(w.runner(ack_wait_s=0.15).run())

    await until(lambda: msg.beats >= 2, "two heartbeats")
    gate.set()
    assert await run == "drained"
    assert msg.settled == "ack"


async def test_stop_naks_queued_messages_and_lets_running_tasks_finish() -> None:
    gate = asyncio.Event()

    async def quick_then_slow(item: WorkItem) -> TaskOutcome:
        if len(w.pool.items) > 2:  # the first two are quick: the loop starts fetching ahead
            await gate.wait()
        return success(item)

    w = make_world(n_workers=1, behaviour=quick_then_slow)
    w.queue.redeliver = False
    by_task = {t.task_id: w.queue.put_task(t) for t in (sim_task(seed) for seed in range(6))}
    msgs = list(by_task.values())
    runner = w.runner(shutdown_grace_s=30)
    run = asyncio.create_task(runner.run())
    await until(lambda: w.pool.running == 1 and len(w.pool.items) == 3, "a slow task running")
    await until(lambda: len(w.queue.in_flight) == 4, "the rest queued behind it")
    running = by_task[w.pool.items[2].task_id]
    queued = [m for m in w.queue.in_flight if m is not running]

    runner.stop()
    await until(lambda: all(m.settled == "nak" for m in queued), "queued messages nak'ed at once")
    assert not running.settled and not run.done()  # the running task is given its grace

    gate.set()
    assert await run == "stopped"
    assert running.settled == "ack"
    assert [m.settled for m in msgs[:2]] == ["ack", "ack"] and len(w.bus.of(TaskCompleted)) == 3


async def test_stop_after_the_grace_period_interrupts_and_naks_running_tasks() -> None:
    async def forever(item: WorkItem) -> TaskOutcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    w = make_world(n_workers=1, behaviour=forever)
    w.queue.redeliver = False
    msg = w.queue.put_task(sim_task(1))
    runner = w.runner(shutdown_grace_s=0.05)
    run = asyncio.create_task(runner.run())
    await until(lambda: w.pool.running == 1, "the task running")

    runner.stop()

    assert await run == "stopped"
    assert msg.settled == "nak" and w.pool.cancelled == 1 and not w.bus.events


async def test_a_deleted_consumer_cancels_the_job_and_stops_running_tasks() -> None:
    async def forever(item: WorkItem) -> TaskOutcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    w = make_world(n_workers=1, behaviour=forever)
    msg = w.queue.put_task(sim_task(1))
    w.queue.put_task(sim_task(2))
    run = asyncio.create_task(w.runner().run())
    await until(lambda: w.pool.running == 1, "the task running")

    w.queue.gone = True

    assert await run == "cancelled"
    assert w.pool.cancelled == 1 and not msg.settled and not w.bus.events


async def test_the_runner_waits_while_another_runner_holds_tasks() -> None:
    """Drained means nothing pending and nothing awaiting ack anywhere, not just here."""
    w = make_world()
    w.queue.extra_ack_pending = 1
    run = asyncio.create_task(w.runner().run())
    await until(lambda: len(w.queue.fetches) >= 3, "a few empty fetches")
    assert not run.done()

    # the other runner crashed: its task is redelivered here
    w.queue.extra_ack_pending = 0
    msg = w.queue.put_task(sim_task(1))
    msg.attempt = 2

    assert await run == "drained"
    assert msg.settled == "ack"


@pytest.mark.parametrize("attempt", [1, 2])
async def test_outer_boundary_naks_on_unexpected_errors(attempt: int) -> None:
    async def broken(item: WorkItem) -> TaskOutcome:
        raise RuntimeError("a bug in the loop's collaborators")

    w = make_world(behaviour=broken, max_deliver=2)
    w.queue.redeliver = False
    msg = w.queue.put_task(sim_task(1))
    msg.attempt = attempt

    await w.runner().run()

    if attempt == 1:
        assert msg.settled == "nak" and not w.bus.events
    else:  # the last delivery: reported as final infrastructure failure, terminated
        (event,) = w.bus.of(TaskFailed)
        assert event.failure == "infrastructure" and "RuntimeError" in event.error_type
        assert msg.settled == "term"
