"""What happens to one task message: decode, reuse or run, store, report, settle.

::

    decode SimTask ──bad──▶ TaskFailed(infrastructure) + term        (never redelivered)
    redelivered, record exists ▶ TaskCompleted (the stored run's own event, or cached) + ack
    run on the pool ──────▶ success: outputs, record, TaskCompleted, then ack
                            (a record another run stored first wins: it is reported)
                            an output that cannot be stored: TaskFailed(bad_output) + ack
                            model failure: TaskFailed(final) + ack   (retrying burns time)
    infrastructure trouble ▶ nak with back-off; on the last delivery TaskFailed + term

Acks come last, after the result is stored and JetStream has acknowledged the event, so a
crash anywhere means redelivery, never loss. Store calls are batched across the tasks in
flight (batching.py): one lookup of the redelivered tasks' records serves a whole fetch (a
first delivery is not looked up: the submitter checked the cache when it queued it), and
the tasks that finished meanwhile are finished together: one two-stage put (outputs, then
records), their TaskCompleted events published back to back with one wait for the PubAcks,
then their acks.

`TaskHandler.handle` is the outermost boundary for one message: whatever goes wrong, the
message is acked, nak'ed or terminated, and the log line says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog

from modelops_contracts import InvalidMessage, SimTask, TaskCompleted, TaskMetrics, decode
from modelops_contracts.jobs import STORE_BATCH_TASKS, runner_held_limit
from modelops_contracts.messages import Event, utc_now
from modelops_runtime.blobstore import BlobStore, BlobStoreError

from .batching import Batcher
from .errors import InfrastructureError
from .pacing import is_last_delivery, nak_delay
from .pool import TaskFailure, TaskOutcome, TaskSuccess, WorkItem
from .queue import QueueMessage
from .reporting import EventPublisher, completed_event, failed_event
from .results import BadOutput, ResultRecord, Saved, find_results, save_results

__all__ = [
    "CORRELATION_HEADER",
    "HeldMessage",
    "LoopConfig",
    "Pool",
    "RunStats",
    "Stage",
    "TaskHandler",
]

log = structlog.get_logger(__name__)

CORRELATION_HEADER = "Modelops-Correlation-Id"
"""Optional task message header carrying the SubmitJob's correlation id."""

Stage = Literal["queued", "running", "finishing"]
"""queued: waiting for a worker (here, or next in line in the pool); running: on a worker;
finishing: storing, reporting, settling."""

_FINAL_REPORT_ATTEMPTS = 3


class Pool(Protocol):
    """What the loop needs of WorkerPool."""

    n_workers: int

    async def run(self, item: WorkItem) -> TaskOutcome: ...


@dataclass(frozen=True)
class LoopConfig:
    """What the loop is told: who it is, which job, and the consumer's limits."""

    job_id: str
    runner_id: str
    bundle_ref: str
    n_workers: int
    ack_wait_s: float
    max_deliver: int
    correlation_id: str = ""
    fetch_timeout_s: float = 1.0
    shutdown_grace_s: float = 20.0
    max_held: int = 0  # 0: runner_held_limit(n_workers)
    look_ahead_s: float = 0.25  # with tasks shorter than this, hold about this much work ahead
    store_window_s: float = 0.5  # a finished task waits this long for others to store with
    enqueued_marker: str = ""  # JobSpec.enqueued_marker: leave an empty queue only once it exists
    enqueue_wait_s: float = 300.0  # ...or after the queue stayed empty this long without it
    output_compression: str = "snappy"  # Parquet compression of outputs that come raw

    @property
    def held_limit(self) -> int:
        return self.max_held or runner_held_limit(self.n_workers)


@dataclass
class RunStats:
    """What this runner did, for its final log line."""

    completed: int = 0
    cached: int = 0
    failed: int = 0
    retried: int = 0  # nak'ed for redelivery
    terminated: int = 0
    redelivered: int = 0  # messages this runner got on a second or later delivery
    failures_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class HeldMessage:
    """A fetched message this runner holds until it is settled."""

    msg: QueueMessage
    since: float
    last_beat: float
    stage: Stage = "queued"
    task: asyncio.Task[None] | None = None
    task_id: str = ""  # once decoded, for log lines outside the task's bound context


@dataclass(frozen=True, eq=False)
class _Finished:
    """A task that ran: its message, its record (no outputs yet) and its outputs to store."""

    msg: QueueMessage
    record: ResultRecord
    outputs: Mapping[str, bytes]


class _Retry(Exception):
    """Infrastructure trouble while handling one task: nak it (or give up on the last try)."""


class TaskHandler:
    """Handles fetched messages one coroutine each; those waiting for a worker wait in the
    pool's line.

    `on_stage` tells the loop when a message stops needing a worker (so it can fetch more);
    `in_flight` how many messages are queued or running here (finished ones wait for their
    company only while some are); `task_s` is a moving average of a task's time on a worker
    (the loop's look-ahead).
    """

    def __init__(
        self,
        cfg: LoopConfig,
        *,
        pool: Pool,
        store: BlobStore,
        publisher: EventPublisher,
        stats: RunStats,
        on_stage: Callable[[HeldMessage, Stage], None],
        in_flight: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.stats = stats
        self.task_s: float | None = None
        self.consumer_gone = False  # set by the loop: settling is pointless then
        self._pool = pool
        self._publisher = publisher
        self._on_stage = on_stage
        self._in_flight = in_flight
        self._clock = clock
        self._lookups: Batcher[str, ResultRecord | None] = Batcher(
            lambda task_ids: find_results(store, task_ids), name="result-lookups"
        )
        self._store = store
        self._saves: Batcher[_Finished, TaskCompleted] = Batcher(
            self._store_and_report,
            name="result-saves",
            window_s=cfg.store_window_s,
            window_items=STORE_BATCH_TASKS,  # the loop hurries it when they fill its room
            company=self._company_coming,
        )

    def hurry_saves(self) -> None:
        """Store and report the finished tasks now, without waiting for more to join them."""
        self._saves.hurry()

    def _company_coming(self) -> bool:
        """Whether finished tasks should wait for more to store with: not before this
        runner's first results are out (a job's first TaskCompleted tells its watchers that
        it runs), and not while nothing else is queued or running here."""
        return self._saves.batches > 0 and self._in_flight() > 0

    async def close(self) -> None:
        """Stop the store batchers; call once no message is being handled any more."""
        await self._lookups.close()
        await self._saves.close()

    async def handle(self, held: HeldMessage) -> None:
        """Process one message; never raises but CancelledError (then it naks)."""
        msg = held.msg
        try:
            await self._process(held)
        except asyncio.CancelledError:
            if not self.consumer_gone:
                with contextlib.suppress(InfrastructureError):
                    await msg.nak()
                log.info(
                    "task.interrupted", task_id=held.task_id, action="nak", attempt=msg.attempt
                )
            raise
        except Exception as exc:  # the outermost per-message boundary: never lose the message
            try:
                action = await self._give_back(held, exc)
            except InfrastructureError as settle_exc:
                action = f"none ({settle_exc}): redelivered after ack_wait"
            log.error(
                "task.handler_error",
                task_id=held.task_id,
                action=action,
                attempt=msg.attempt,
                exc_info=True,
            )

    async def _process(self, held: HeldMessage) -> None:
        msg = held.msg
        try:
            task = decode(msg.data, SimTask)
        except InvalidMessage as exc:
            await self._reject(msg, f"task message cannot be decoded: {exc}")
            return
        held.task_id = task.task_id
        correlation_id = msg.headers.get(CORRELATION_HEADER) or self.cfg.correlation_id
        correlation_id = correlation_id or self.cfg.job_id
        with structlog.contextvars.bound_contextvars(
            job_id=self.cfg.job_id, task_id=task.task_id, correlation_id=correlation_id
        ):
            if task.bundle_digest != self.cfg.bundle_ref.rsplit("@", 1)[1]:
                await self._reject(
                    msg,
                    f"task {task.task_id} is for bundle {task.bundle_ref}, but this job runs "
                    f"{self.cfg.bundle_ref}",
                    task_id=task.task_id,
                    correlation_id=correlation_id,
                )
                return
            try:
                await self._run_task(held, task, correlation_id)
            except (_Retry, BlobStoreError, InfrastructureError) as exc:
                action = await self._give_back(held, exc, task_id=task.task_id, cid=correlation_id)
                log.warning(
                    "task.infrastructure_error", error=str(exc), action=action, attempt=msg.attempt
                )

    async def _run_task(self, held: HeldMessage, task: SimTask, correlation_id: str) -> None:
        msg, attempt = held.msg, held.msg.attempt
        # A first delivery was not done when the submitter queued it (it checked the cache);
        # only a redelivery may find its result stored, by a run that stored it and then
        # lost its ack. A lookup is a request per task on S3, so first deliveries skip it:
        # if a concurrent job stores the same task meanwhile, its record wins at save time.
        stored = await self._lookups.submit(task.task_id) if attempt > 1 else None
        if stored is not None:
            self._on_stage(held, "finishing")
            await self._report_done(msg, stored, correlation_id)
            return
        outcome = await self._run_on_pool(held, task)
        self._on_stage(held, "finishing")
        if isinstance(outcome, TaskSuccess):
            record = ResultRecord(
                task_id=task.task_id,
                job_id=self.cfg.job_id,
                attempt=attempt,
                outputs={},
                metrics=_metrics(outcome),
                runner_id=self.cfg.runner_id,
                time=utc_now(),
                correlation_id=correlation_id,
            )
            try:
                event = await self._saves.submit(_Finished(msg, record, outcome.outputs))
            except BadOutput as exc:
                outcome = TaskFailure(
                    task_id=task.task_id,
                    kind="bad_output",
                    message=str(exc),
                    error_type=type(exc).__name__,
                    wall_s=outcome.wall_s,
                )
            else:
                self._count_done(event)
                return
        if outcome.kind == "infrastructure":
            raise _Retry(outcome.message)
        await self._publish(
            failed_event(
                outcome,
                job_id=self.cfg.job_id,
                correlation_id=correlation_id,
                attempt=attempt,
                runner_id=self.cfg.runner_id,
            )
        )
        await msg.ack()
        self.stats.failed += 1
        kinds = self.stats.failures_by_kind
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
        log.warning(
            "task.failed",
            kind=outcome.kind,
            error=outcome.message,
            error_type=outcome.error_type,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            attempt=attempt,
        )

    async def _run_on_pool(self, held: HeldMessage, task: SimTask) -> TaskOutcome:
        def started_on_a_worker() -> None:
            held.stage = "running"

        # every fetched task waits in the pool's line (in fetch order), so a worker's next
        # one is sent the moment it answers
        started = self._clock()
        outcome = await self._pool.run(
            WorkItem(
                task_id=task.task_id,
                entrypoint=task.entrypoint,
                params=dict(task.params.params),
                seed=task.seed,
                config=dict(task.config),
                outputs=list(task.outputs) if task.outputs is not None else None,
                on_start=started_on_a_worker,
            )
        )
        # the worker's own time: the wait in line is not the task's
        took = outcome.wall_s or (self._clock() - started)
        self.task_s = took if self.task_s is None else 0.8 * self.task_s + 0.2 * took
        return outcome

    async def _report_done(self, msg: QueueMessage, record: ResultRecord, cid: str) -> None:
        event = self._completed(msg, record, cid)
        await self._publish(event)
        await msg.ack()
        self._count_done(event)

    def _completed(self, msg: QueueMessage, record: ResultRecord, cid: str) -> TaskCompleted:
        return completed_event(
            record,
            job_id=self.cfg.job_id,
            correlation_id=cid,
            attempt=msg.attempt,
            runner_id=self.cfg.runner_id,
        )

    def _count_done(self, event: TaskCompleted) -> None:
        if event.cached:
            self.stats.cached += 1
        else:
            self.stats.completed += 1
        log.debug("task.completed", cached=event.cached, wall_s=event.metrics.wall_s)

    async def _store_and_report(
        self, batch: list[_Finished]
    ) -> list[TaskCompleted | BaseException]:
        """Finish a batch of tasks as one: store their results, publish their TaskCompleted
        events back to back, wait for the PubAcks together, then ack each message whose
        event is stored. Per task, in order: its event, or the error for that task alone
        (BadOutput, a store error, a ReportError or an ack that failed: the task is given
        back). Acks still come last, after the result and its event are stored."""
        saved = await save_results(
            self._store,
            [(item.record, item.outputs) for item in batch],
            compression=self.cfg.output_compression,
        )
        answers: list[TaskCompleted | BaseException] = []
        for item, answer in zip(batch, saved, strict=True):
            if isinstance(answer, Saved):
                answers.append(self._completed(item.msg, answer.record, item.record.correlation_id))
            else:
                answers.append(answer)
        ready = [(i, a) for i, a in enumerate(answers) if isinstance(a, TaskCompleted)]
        problems = await self._publisher.publish_many([event for _, event in ready])
        for (i, _), problem in zip(ready, problems, strict=True):
            if problem is not None:
                answers[i] = problem
                continue
            try:
                await batch[i].msg.ack()
            except InfrastructureError as exc:
                answers[i] = exc
        return answers

    async def _publish(self, event: Event) -> None:
        await self._publisher.publish(event)

    async def _reject(
        self,
        msg: QueueMessage,
        reason: str,
        *,
        task_id: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """A message no runner can ever run: report it once and terminate it (no redelivery)."""
        task_id = task_id or _task_id_of(msg, self.cfg.job_id)
        failure = TaskFailure(task_id=task_id, kind="infrastructure", message=reason)
        await self._publish_final(failure, msg.attempt, correlation_id or self.cfg.job_id)
        await msg.term()
        self.stats.terminated += 1
        log.error("task.rejected", task_id=task_id, reason=reason, action="term")

    async def _give_back(
        self, held: HeldMessage, exc: BaseException, *, task_id: str | None = None, cid: str = ""
    ) -> str:
        """nak with back-off, or on the last allowed delivery report the failure and term."""
        msg = held.msg
        if not is_last_delivery(msg.attempt, self.cfg.max_deliver):
            delay = nak_delay(msg.attempt)
            await msg.nak(delay)
            self.stats.retried += 1
            return f"nak (redelivery in {delay:g} s)"
        failure = TaskFailure(
            task_id=task_id or _task_id_of(msg, self.cfg.job_id),
            kind="infrastructure",
            error_type=type(exc).__name__,
            message=f"gave up after {msg.attempt} deliveries: {exc}",
        )
        await self._publish_final(failure, msg.attempt, cid or self.cfg.job_id)
        await msg.term()
        self.stats.terminated += 1
        return "term (last delivery)"

    async def _publish_final(self, failure: TaskFailure, attempt: int, cid: str) -> None:
        """Publish a final TaskFailed, retrying briefly; if JetStream never takes it, say so.

        The message is terminated either way (a message no runner can handle must not loop),
        so a lost final event leaves the task without a terminal event: logged as an error.
        """
        event = failed_event(
            failure,
            job_id=self.cfg.job_id,
            correlation_id=cid,
            attempt=attempt,
            runner_id=self.cfg.runner_id,
        )
        for n in range(1, _FINAL_REPORT_ATTEMPTS + 1):
            try:
                await self._publish(event)
                return
            except InfrastructureError as exc:
                if n == _FINAL_REPORT_ATTEMPTS:
                    log.error(
                        "task.final_report_lost",
                        task_id=failure.task_id,
                        error=str(exc),
                        hint="the job will not see this task finish; check NATS",
                    )
                    return
                await asyncio.sleep(0.5 * n)  # a short back-off between publish retries


def _metrics(outcome: TaskSuccess) -> TaskMetrics:
    return TaskMetrics(
        wall_s=outcome.wall_s, cpu_s=outcome.cpu_s, peak_rss_bytes=outcome.peak_rss_bytes
    )


def _task_id_of(msg: QueueMessage, job_id: str) -> str:
    """The task id the submitter put in Nats-Msg-Id (`<job_id>:<task_id>`), else a stand-in."""
    msg_id = msg.headers.get("Nats-Msg-Id", "")
    prefix = f"{job_id}:"
    if msg_id.startswith(prefix) and len(msg_id) > len(prefix):
        return msg_id[len(prefix) :]
    return f"undecodable-seq-{msg.stream_seq}"
