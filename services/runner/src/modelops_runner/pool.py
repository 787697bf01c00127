"""The worker pool: model tasks run in long-lived subprocesses, one task per worker at a time.

Why subprocesses: models are arbitrary (native code, leaks, segfaults, infinite loops), and
the runner must outlive all of them. Why long-lived: importing a model costs far more than
running a small task, so a worker imports once and serves many tasks over a pipe (one
round trip each, see protocol.py). A worker is replaced when its task times out, when it
dies, when it reports running out of memory, and after `recycle_after` tasks.

Handing over: when a worker answers and tasks are waiting, the next one's frame is written
to that worker from inside the callback that read the answer, before anything else runs.
On 2 busy cores the path back through the awaiting coroutines took 1-2 ms per task, time
the worker sat idle (7% of a ~20 ms task); now the gap is one pipe round trip.

Each worker runs in its own session (process group), so a timeout kills whatever the model
started too. Its stderr (and stdout, which the worker points there) is read as it arrives
into a bounded buffer: a chatty model never blocks, and a failure carries the tail that the
model wrote during that task.

Diagnosing a death from the exit status::

    killed by SIGKILL, not by us   -> oom     when a memory limit is set, the cgroup counted an
                                              OOM kill, or the worker held over half its share
                                              of memory; otherwise signal
    other signal (SIGSEGV, ...)    -> signal  (TaskFailure.signal is the number)
    any exit status                -> crashed (TaskFailure.exit_code)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import structlog

from .protocol import (
    MAX_FRAME_BYTES,
    FrameDecoder,
    FrameTooLarge,
    Message,
    ProtocolError,
    encode_frame,
)

if TYPE_CHECKING:  # tables imports pyarrow, which the runner loads off its event loop
    from .tables import Compression

__all__ = [
    "TaskFailure",
    "TaskOutcome",
    "TaskSuccess",
    "WorkItem",
    "WorkerPool",
    "WorkerStartError",
    "classify_exit",
]

log = structlog.get_logger(__name__)

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_STOP_GRACE_S = 2.0
_REAP_DEADLINE_S = 10.0
_STDERR_EOF_DEADLINE_S = 1.0
_RSS_SAMPLE_EVERY_S = 0.5
_MAX_START_FAILURES = 3


@dataclass(frozen=True)
class WorkItem:
    """One task for the pool: which model, with what parameters, seed, config and outputs."""

    task_id: str
    entrypoint: str
    params: dict[str, Any]
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    on_start: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    """Called when the task is sent to a worker (until then it waits in line)."""


@dataclass(frozen=True)
class TaskSuccess:
    """A task's outputs by name (Parquet bytes, or raw columns the runner writes as Parquet:
    see wire.py), and what it cost."""

    task_id: str
    outputs: dict[str, Any]
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int


@dataclass(frozen=True)
class TaskFailure:
    """Why a task failed. `kind` is a modelops_contracts TaskFailureKind."""

    task_id: str
    kind: str
    message: str
    error_type: str = ""
    traceback_tail: str = ""
    stderr_tail: str = ""
    exit_code: int | None = None
    signal: int | None = None
    wall_s: float = 0.0


TaskOutcome = TaskSuccess | TaskFailure


class WorkerStartError(RuntimeError):
    """A worker could not start: the model does not import, or the interpreter is unusable."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "infrastructure",
        error_type: str = "",
        traceback_tail: str = "",
        stderr_tail: str = "",
        exit_code: int | None = None,
    ) -> None:
        details = f"\n{traceback_tail.rstrip()}" if traceback_tail else ""
        if stderr_tail and not traceback_tail:
            details = f"\nworker stderr:\n{stderr_tail.rstrip()}"
        super().__init__(message + details)
        self.message = message
        self.kind = kind
        self.error_type = error_type
        self.traceback_tail = traceback_tail
        self.stderr_tail = stderr_tail
        self.exit_code = exit_code

    def as_failure(self, task_id: str) -> TaskFailure:
        return TaskFailure(
            task_id=task_id,
            kind=self.kind,
            message=self.message,
            error_type=self.error_type,
            traceback_tail=self.traceback_tail,
            stderr_tail=self.stderr_tail,
            exit_code=self.exit_code,
        )


def classify_exit(
    returncode: int, *, killed_by_pool: bool = False, memory_pressure: bool = False
) -> tuple[str, str, int | None, int | None]:
    """(kind, description, exit_code, signal) for a worker that died mid-task.

    `memory_pressure` says a SIGKILL we did not send is most likely the OOM killer's.
    """
    sig = -returncode if returncode < 0 else (9 if returncode == 128 + 9 else None)
    if killed_by_pool:
        return "crashed", "the worker stopped answering and was killed", None, sig
    if sig == signal.SIGKILL:
        if memory_pressure:
            return "oom", "the worker was killed (SIGKILL), most likely out of memory", None, sig
        return "signal", "the worker was killed by signal SIGKILL (9)", None, sig
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "signal", f"the worker died from signal {name} ({sig})", None, sig
    return "crashed", f"the worker exited with status {returncode}", returncode, None


class _WorkerGone(Exception):
    """The worker's process ended or closed its protocol pipe."""


class _TailBuffer:
    """The last `capacity` bytes of a stream, and how many bytes it has carried in total."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.total = 0
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def append(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self.total += len(data)
        while len(self._chunks) > 1 and self._size - len(self._chunks[0]) >= self.capacity:
            self._size -= len(self._chunks.popleft())

    def tail(self, since: int = 0) -> str:
        """Text written after byte offset `since`, at most `capacity` bytes of it."""
        data = b"".join(self._chunks)
        skip = max(0, since - (self.total - len(data)))
        return data[skip:][-self.capacity :].decode("utf-8", errors="replace")


def _read_int_file(path: str, key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return None


def _oom_kill_count() -> int | None:
    """The cgroup's OOM-kill counter (v2, then v1), or None outside a memory cgroup."""
    count = _read_int_file("/sys/fs/cgroup/memory.events", "oom_kill")
    return (
        count
        if count is not None
        else _read_int_file("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")
    )


def _memory_ceiling() -> int:
    """Memory this runner may use: the cgroup limit if there is one, else physical memory."""
    total = psutil.virtual_memory().total
    with contextlib.suppress(OSError, ValueError):
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text != "max":
            return min(total, int(text))
    return total


class _Worker(asyncio.SubprocessProtocol):
    """One worker subprocess: its pipes, its stderr tail, and request/response over frames."""

    def __init__(self, *, tail_bytes: int, max_frame_bytes: int) -> None:
        self.stderr = _TailBuffer(tail_bytes)
        self.exited = asyncio.Event()
        self.stderr_closed = asyncio.Event()
        self.transport: asyncio.SubprocessTransport | None = None
        self.pid = 0
        self.tasks_done = 0
        self.busy = False
        self.rss_peak = 0
        self.killed_by_pool = False
        self.oom_kills_at_start = _oom_kill_count()
        self.on_reply: Callable[[_Worker, Message], None] | None = None  # before its waiter
        self._decoder = FrameDecoder(max_bytes=max_frame_bytes)
        self._inbox: deque[Message] = deque()
        self._waiter: asyncio.Future[Message] | None = None
        self._error: Exception | None = None

    # asyncio callbacks: these run in the event loop as data arrives, never blocking
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport
        self.pid = transport.get_pid()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd == 2:
            self.stderr.append(bytes(data))
            return
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            self.kill()
            return
        for message in messages:
            if self.on_reply is not None:
                self.on_reply(self, message)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(message)
            else:
                self._inbox.append(message)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._fail(_WorkerGone(f"worker {self.pid} closed its protocol pipe"))
        elif fd == 2:
            self.stderr_closed.set()

    def process_exited(self) -> None:
        self.exited.set()
        self._fail(_WorkerGone(f"worker {self.pid} exited"))

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._error)

    # used by the pool
    @property
    def alive(self) -> bool:
        return self._error is None and not self.exited.is_set()

    @property
    def returncode(self) -> int | None:
        return self.transport.get_returncode() if self.transport else None

    def send(self, message: Message) -> None:
        self.send_frame(encode_frame(message, max_bytes=self._decoder.max_bytes))

    def send_frame(self, frame: bytes) -> None:
        if not self.alive or self.transport is None:
            raise self._error or _WorkerGone(f"worker {self.pid} is not running")
        pipe = self.transport.get_pipe_transport(0)
        assert isinstance(pipe, asyncio.WriteTransport)
        pipe.write(frame)

    async def receive(self) -> Message:
        if self._inbox:
            return self._inbox.popleft()
        if self._error is not None:
            raise self._error
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await waiter
        finally:
            if self._waiter is waiter:  # a handed-over task may be waiting on the next answer
                self._waiter = None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (the model's own children too)."""
        if self.returncode is None:
            self.killed_by_pool = True
        self._killpg()

    def _killpg(self) -> None:
        # pid 0 would mean *our* process group: only ever signal a real worker's group
        if self.pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    async def wait_dead(self) -> int | None:
        """Wait (bounded) for the exit status and for the last of stderr."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REAP_DEADLINE_S):
                await self.exited.wait()
        self._killpg()  # the worker is gone; its stragglers go too
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STDERR_EOF_DEADLINE_S):
                await self.stderr_closed.wait()
        return self.returncode

    async def stop(self, *, graceful: bool) -> None:
        """Ask the worker to exit, kill it after a grace period, and release its pipes."""
        if graceful and self.alive and self.transport is not None:
            with contextlib.suppress(_WorkerGone, ProtocolError):
                self.send({"op": "exit"})
            stdin = self.transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_GRACE_S):
                    await self.exited.wait()
        self.kill()
        await self.wait_dead()
        if self.transport is not None:
            self.transport.close()


@dataclass(eq=False)
class _Slot:
    """A place for one worker: the live one, or the replacement being started.

    `handed_over`: the worker's answer handed the slot (and the worker) straight to a
    waiting task, so the task that got that answer must not give the slot back.
    """

    worker: _Worker | None = None
    starting: asyncio.Task[_Worker] | None = None
    handed_over: bool = False


@dataclass(frozen=True)
class _Grant:
    """A slot given to a task; `sent`: its frame is already on the way to `worker`."""

    slot: _Slot
    sent: bool = False
    worker: _Worker | None = None
    mark: int = 0  # the worker's stderr position when the frame was sent
    started: float = 0.0  # time.monotonic() then
    deadline: float = 0.0  # loop.time() by which it must answer


@dataclass(eq=False)
class _Waiting:
    """A task waiting for a slot: its encoded frame, and where its grant arrives."""

    frame: bytes
    granted: asyncio.Future[_Grant]
    on_start: Callable[[], None] | None = None


class WorkerPool:
    """A fixed number of worker subprocesses that run WorkItems; see the module docstring.

    `import_paths` go first on the workers' sys.path (the bundle's root). `preload` names
    entrypoints each worker imports at start, so start() fails fast on a broken model;
    without it models are imported at their first task. `env` is the workers' whole
    environment (None: the runner's); numeric libraries default to one thread per worker.
    `memory_limit_bytes` caps each worker's address space (RLIMIT_AS), not just its RSS.
    """

    def __init__(
        self,
        *,
        import_paths: Sequence[Path],
        n_workers: int | None = None,
        task_timeout_s: float = 3600,
        recycle_after: int = 0,
        memory_limit_bytes: int | None = None,
        stderr_tail_bytes: int = 64 * 1024,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        preload: Sequence[str] = (),
        cwd: Path | None = None,
        start_timeout_s: float = 300,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        compression: Compression = "zstd",
    ) -> None:
        self.n_workers = n_workers or os.cpu_count() or 1
        self.task_timeout_s = task_timeout_s
        self.recycle_after = recycle_after
        self.memory_limit_bytes = memory_limit_bytes
        self._tail_bytes = stderr_tail_bytes
        self._python = python
        self._cwd = cwd
        self._start_timeout_s = start_timeout_s
        self._max_frame_bytes = max_frame_bytes
        self._env = dict(os.environ if env is None else env)
        for name in _THREAD_ENV:
            self._env.setdefault(name, "1")
        self._init: Message = {
            "op": "init",
            "import_paths": [str(Path(p).resolve()) for p in import_paths],
            "preload": list(preload),
            "memory_limit": memory_limit_bytes,
            "max_frame_bytes": max_frame_bytes,
            "compression": compression,
        }
        self._rss_high = _memory_ceiling() // (2 * self.n_workers)
        self._slots = [_Slot() for _ in range(self.n_workers)]
        self._idle: list[_Slot] = []
        self._waiting: deque[_Waiting] = deque()
        self._background: set[asyncio.Task[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._start_failures = 0
        self._broken: WorkerStartError | None = None
        self._state = "new"
        self._counts = {
            "tasks_run": 0,
            "tasks_succeeded": 0,
            "tasks_failed": 0,
            "workers_started": 0,
            "workers_replaced": 0,
            "tasks_handed_over": 0,
        }
        self._failures_by_kind: dict[str, int] = {}

    # lifecycle
    async def start(self) -> None:
        """Start every worker; raise WorkerStartError (and leave nothing running) if one cannot."""
        if self._state != "new":
            raise RuntimeError(f"WorkerPool.start() called on a {self._state} pool")
        self._state = "running"
        results = await asyncio.gather(
            *(self._spawn() for _ in self._slots), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for slot, result in zip(self._slots, results, strict=True):
            if isinstance(result, _Worker):
                slot.worker = result
            self._idle.append(slot)
        if errors:
            await self.close()
            raise errors[0]
        self._monitor = asyncio.create_task(self._watch_memory())
        log.info(
            "pool.started",
            workers=self.n_workers,
            pids=[s.worker.pid for s in self._slots if s.worker],
        )

    async def close(self) -> None:
        """Stop every worker and wait until all are reaped.

        Idle workers are asked to exit (SIGKILL after a grace period); busy ones are killed at
        once and their run() returns an infrastructure failure. To finish in-flight tasks,
        await them before closing.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        if self._monitor is not None:
            self._monitor.cancel()
        starting = [s.starting for s in self._slots if s.starting is not None]
        for task in starting:
            task.cancel()
        stops = [s.worker.stop(graceful=not s.worker.busy) for s in self._slots if s.worker]
        started = await asyncio.gather(*starting, *stops, return_exceptions=True)
        # a start that finished before it could be cancelled left a worker nobody holds
        late = [w.stop(graceful=True) for w in started if isinstance(w, _Worker)]
        await asyncio.gather(*late, return_exceptions=True)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._monitor is not None:
            await asyncio.gather(self._monitor, return_exceptions=True)
        for slot in self._slots:
            slot.worker = slot.starting = None
        log.info("pool.closed", **self.stats)

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: tasks run/succeeded/failed (and by kind), workers started/replaced/alive."""
        alive = sum(1 for s in self._slots if s.worker is not None and s.worker.alive)
        return {
            **self._counts,
            "failures_by_kind": dict(self._failures_by_kind),
            "workers_alive": alive,
        }

    # running tasks
    async def run(self, item: WorkItem) -> TaskOutcome:
        """Run one task on the next free worker. Never raises for anything the model does."""
        if self._state != "running":
            raise RuntimeError(f"WorkerPool.run() on a {self._state} pool: call start() first")
        frame = self._frame(item)
        if isinstance(frame, TaskFailure):
            outcome: TaskOutcome = frame
        else:
            grant = await self._grant(frame, item.on_start)
            try:
                outcome = await self._run_on(grant, item, frame)
            finally:
                if grant.slot.handed_over:
                    grant.slot.handed_over = False  # its next task has it already
                else:
                    self._release(grant.slot)
        self._counts["tasks_run"] += 1
        if isinstance(outcome, TaskSuccess):
            self._counts["tasks_succeeded"] += 1
        else:
            self._counts["tasks_failed"] += 1
            self._failures_by_kind[outcome.kind] = self._failures_by_kind.get(outcome.kind, 0) + 1
        return outcome

    def _frame(self, item: WorkItem) -> bytes | TaskFailure:
        task: Message = {
            "op": "task",
            "id": item.task_id,
            "entrypoint": item.entrypoint,
            "params": item.params,
            "seed": item.seed,
            "config": item.config,
            "outputs": item.outputs,
        }
        try:
            return encode_frame(task, max_bytes=self._max_frame_bytes)
        except (FrameTooLarge, TypeError, ValueError, OverflowError) as exc:  # msgpack refused it
            return TaskFailure(
                task_id=item.task_id,
                kind="infrastructure",
                error_type=type(exc).__name__,
                message=f"task {item.task_id} cannot be sent to a worker: {exc} "
                "(hint: params and config must be plain scalars, lists and dicts)",
            )

    async def _grant(self, frame: bytes, on_start: Callable[[], None] | None) -> _Grant:
        """A free slot now, or wait (in order) for a worker's answer or a released slot."""
        if self._idle:
            return _Grant(self._idle.pop())
        waiting = _Waiting(frame, asyncio.get_running_loop().create_future(), on_start)
        self._waiting.append(waiting)
        try:
            return await waiting.granted
        except asyncio.CancelledError:
            granted = waiting.granted
            if granted.done() and not granted.cancelled():  # granted, then cancelled
                grant = granted.result()
                if grant.sent and grant.worker is not None:  # its task started: stop it
                    grant.worker.kill()
                    self._retire(grant.slot, grant.worker, graceful=False)
                self._release(grant.slot)
            raise

    def _release(self, slot: _Slot) -> None:
        """Give a slot to the first task still waiting, else back to the idle ones."""
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.granted.done():
                waiting.granted.set_result(_Grant(slot))
                return
        self._idle.append(slot)

    def _hand_over(self, worker: _Worker, reply: Message) -> None:
        """On a worker's answer (inside the pipe callback): send it the next waiting task now,
        unless it is about to be retired. The task that got this answer keeps its outcome."""
        if reply.get("op") not in ("result", "failure") or self._state != "running":
            return
        if not self._waiting or reply.get("retire") or not worker.alive:
            return
        if self.recycle_after and worker.tasks_done + 1 >= self.recycle_after:
            return
        slot = next((s for s in self._slots if s.worker is worker), None)
        if slot is None or slot.handed_over:
            return
        while self._waiting:
            waiting = self._waiting.popleft()
            if waiting.granted.done():
                continue  # cancelled while it waited
            mark = worker.stderr.total
            try:
                worker.send_frame(waiting.frame)
            except _WorkerGone:
                self._waiting.appendleft(waiting)
                return
            worker.busy, worker.rss_peak = True, 0
            slot.handed_over = True
            self._counts["tasks_handed_over"] += 1
            if waiting.on_start is not None:
                waiting.on_start()
            deadline = asyncio.get_running_loop().time() + self.task_timeout_s
            waiting.granted.set_result(_Grant(slot, True, worker, mark, time.monotonic(), deadline))
            return

    async def _run_on(self, grant: _Grant, item: WorkItem, frame: bytes) -> TaskOutcome:
        slot = grant.slot
        if grant.sent and grant.worker is not None:
            worker, mark = grant.worker, grant.mark
            started, deadline = grant.started, grant.deadline
        else:
            try:
                worker = await self._ready_worker(slot)
            except WorkerStartError as exc:
                return exc.as_failure(item.task_id)
            mark = worker.stderr.total
            started = time.monotonic()
            deadline = asyncio.get_running_loop().time() + self.task_timeout_s
            worker.busy, worker.rss_peak = True, 0
        try:
            async with asyncio.timeout_at(deadline):
                if not grant.sent:
                    worker.send_frame(frame)
                    if item.on_start is not None:
                        item.on_start()
                reply = await worker.receive()
        except TimeoutError:
            worker.kill()
            await worker.wait_dead()
            self._retire(slot, worker, graceful=False)
            log.warning(
                "worker.timeout",
                task_id=item.task_id,
                pid=worker.pid,
                timeout_s=self.task_timeout_s,
            )
            return TaskFailure(
                task_id=item.task_id,
                kind="timeout",
                stderr_tail=worker.stderr.tail(mark),
                message=f"task {item.task_id} ran past its {self.task_timeout_s:g} s timeout; "
                "its worker was killed and replaced "
                "(hint: raise the task timeout or make the run shorter)",
                wall_s=time.monotonic() - started,
            )
        except (_WorkerGone, ProtocolError) as exc:
            return await self._worker_lost(slot, worker, item, exc, mark, started)
        except asyncio.CancelledError:
            if not slot.handed_over:  # else its answer came, and the worker has moved on
                worker.kill()
                self._retire(slot, worker, graceful=False)
            raise
        finally:
            if not slot.handed_over:
                worker.busy = False
        worker.tasks_done += 1
        if reply.get("retire") or (self.recycle_after and worker.tasks_done >= self.recycle_after):
            self._retire(slot, worker, graceful=True)
        return self._outcome(
            item, reply, worker.stderr.tail(mark) if reply["op"] != "result" else ""
        )

    @staticmethod
    def _outcome(item: WorkItem, reply: Message, stderr_tail: str) -> TaskOutcome:
        if reply["op"] == "result" and reply.get("id") == item.task_id:
            return TaskSuccess(
                task_id=item.task_id,
                outputs=reply["outputs"],
                wall_s=reply["wall_s"],
                cpu_s=reply["cpu_s"],
                peak_rss_bytes=reply["peak_rss"],
            )
        if reply["op"] == "failure" and reply.get("id") == item.task_id:
            return TaskFailure(
                task_id=item.task_id,
                kind=reply["kind"],
                message=reply["message"],
                error_type=reply.get("error_type", ""),
                traceback_tail=reply.get("traceback", ""),
                stderr_tail=stderr_tail,
            )
        return TaskFailure(
            task_id=item.task_id,
            kind="infrastructure",
            stderr_tail=stderr_tail,
            message=f"worker answered task {item.task_id} with an unexpected "
            f"{reply['op']!r} message for {reply.get('id')!r}",
        )

    async def _worker_lost(
        self,
        slot: _Slot,
        worker: _Worker,
        item: WorkItem,
        exc: Exception,
        mark: int,
        started: float,
    ) -> TaskFailure:
        returncode = await worker.wait_dead()
        self._retire(slot, worker, graceful=False)
        wall_s = time.monotonic() - started
        tail = worker.stderr.tail(mark)
        if self._state == "closed":
            return TaskFailure(
                task_id=item.task_id,
                kind="infrastructure",
                stderr_tail=tail,
                wall_s=wall_s,
                message=f"task {item.task_id} was interrupted: the worker pool was closed",
            )
        if isinstance(exc, ProtocolError) or returncode is None:
            return TaskFailure(
                task_id=item.task_id,
                kind="infrastructure",
                stderr_tail=tail,
                wall_s=wall_s,
                error_type=type(exc).__name__,
                message=f"worker {worker.pid} broke the pipe protocol during task "
                f"{item.task_id}: {exc} (hint: does the model write to inherited fds?)",
            )
        kills = _oom_kill_count()
        pressure = (
            bool(self.memory_limit_bytes)
            or worker.rss_peak >= self._rss_high
            or (
                kills is not None
                and worker.oom_kills_at_start is not None
                and kills > worker.oom_kills_at_start
            )
        )
        kind, how, exit_code, sig = classify_exit(
            returncode, killed_by_pool=worker.killed_by_pool, memory_pressure=pressure
        )
        log.warning(
            "worker.died", task_id=item.task_id, pid=worker.pid, kind=kind, returncode=returncode
        )
        return TaskFailure(
            task_id=item.task_id,
            kind=kind,
            stderr_tail=tail,
            exit_code=exit_code,
            signal=sig,
            wall_s=wall_s,
            message=f"{how} while running task {item.task_id} (worker {worker.pid}); "
            "a replacement worker was started",
        )

    # worker lifecycle
    async def _ready_worker(self, slot: _Slot) -> _Worker:
        if self._state != "running":
            raise WorkerStartError("the worker pool was closed before this task started")
        if slot.worker is not None:
            if slot.worker.alive:
                return slot.worker
            dead = slot.worker
            log.warning("worker.died_idle", pid=dead.pid, returncode=dead.returncode)
            self._retire(slot, dead, graceful=False)
        if self._broken is not None:
            raise self._broken
        if slot.starting is None:
            slot.starting = asyncio.create_task(self._spawn())
        starting = slot.starting
        try:
            # shielded: a cancelled run() leaves the start going for the next task on this slot
            worker = await asyncio.shield(starting)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (
                starting.cancelled()
                and self._state == "closed"
                and not (current and current.cancelling())
            ):
                raise WorkerStartError(
                    "the worker pool was closed before a worker was ready"
                ) from None
            raise
        except WorkerStartError as exc:
            slot.starting = None
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                self._broken = exc  # stop respawning a worker that cannot start
            raise
        slot.starting = None
        slot.worker = worker
        self._start_failures = 0
        return worker

    def _retire(self, slot: _Slot, worker: _Worker, *, graceful: bool) -> None:
        """Take `worker` out of `slot`, stop it in the background, and start a replacement."""
        if slot.worker is worker:
            slot.worker = None
        if self._state == "closed":
            return  # close() is stopping every worker itself
        self._track(asyncio.create_task(worker.stop(graceful=graceful)))
        if self._state == "running" and slot.starting is None and self._broken is None:
            self._counts["workers_replaced"] += 1
            slot.starting = asyncio.create_task(self._spawn())
            slot.starting.add_done_callback(_retrieve)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _spawn(self) -> _Worker:
        loop = asyncio.get_running_loop()
        worker = _Worker(tail_bytes=self._tail_bytes, max_frame_bytes=self._max_frame_bytes)
        worker.on_reply = self._hand_over
        try:
            await loop.subprocess_exec(
                lambda: worker,
                self._python,
                "-P",  # no cwd on sys.path: a bundle's files must not shadow the worker's imports
                "-m",
                "modelops_runner.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=self._env,
                cwd=self._cwd,
            )
        except OSError as exc:
            raise WorkerStartError(
                f"cannot start a worker with {self._python!r}: {exc} "
                "(hint: pass python= an interpreter that has modelops_runner installed)",
                error_type=type(exc).__name__,
            ) from exc
        self._counts["workers_started"] += 1
        try:
            async with asyncio.timeout(self._start_timeout_s):
                worker.send(self._init)
                reply = await worker.receive()
        except TimeoutError as exc:
            await worker.stop(graceful=False)
            raise WorkerStartError(
                f"worker {worker.pid} was not ready within {self._start_timeout_s:g} s "
                "(hint: a slow model import? raise start_timeout_s)",
                stderr_tail=worker.stderr.tail(),
            ) from exc
        except (_WorkerGone, ProtocolError) as exc:
            returncode = await worker.wait_dead()
            await worker.stop(graceful=False)
            raise WorkerStartError(
                f"worker {worker.pid} exited with status {returncode} before it was ready "
                f"(hint: can {self._python} import modelops_runner?)",
                stderr_tail=worker.stderr.tail(),
                exit_code=returncode,
            ) from exc
        except BaseException:
            await asyncio.shield(worker.stop(graceful=False))
            raise
        if reply["op"] == "ready":
            log.debug("worker.started", pid=worker.pid)
            return worker
        await worker.stop(graceful=False)
        if reply["op"] == "import_error":
            raise WorkerStartError(
                reply["message"],
                kind="import_error",
                error_type=reply.get("error_type", ""),
                traceback_tail=reply.get("traceback", ""),
                stderr_tail=worker.stderr.tail(),
                exit_code=worker.returncode,
            )
        raise WorkerStartError(
            f"worker {worker.pid} answered init with {reply['op']!r}",
            stderr_tail=worker.stderr.tail(),
        )

    async def _watch_memory(self) -> None:
        """Sample busy workers' RSS, so a SIGKILL can be told apart as probably the OOM killer's."""
        while True:
            await asyncio.sleep(_RSS_SAMPLE_EVERY_S)
            for slot in self._slots:
                worker = slot.worker
                if worker is not None and worker.busy and worker.alive:
                    with contextlib.suppress(psutil.Error):
                        worker.rss_peak = max(
                            worker.rss_peak, psutil.Process(worker.pid).memory_info().rss
                        )


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a background start's exception as seen; the next run() on its slot reports it."""
    if not task.cancelled():
        task.exception()
