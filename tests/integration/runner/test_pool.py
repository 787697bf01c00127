"""The worker pool against real worker subprocesses running the test models.

One shared pool serves the tests that leave it usable (crashes included: replacing workers
is part of what is tested); tests that need other settings start their own small pool.
"""

from __future__ import annotations

import asyncio
import functools
import io
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from modelops_runner.pool import (
    TaskFailure,
    TaskOutcome,
    TaskSuccess,
    WorkerPool,
    WorkerStartError,
    WorkItem,
)
from modelops_runner.tables import encode_output
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
SIR = "sir_model:StochasticSIR"
TIMEOUT_S = 1.5  # for the tests about timeouts
ROOMY_TIMEOUT_S = 30.0  # for the rest: a busy machine must not turn slow tasks into timeouts
_ids = iter(range(1_000_000))


def item(entrypoint: str, params: dict | None = None, **kwargs: object) -> WorkItem:
    return WorkItem(
        task_id=f"task-{next(_ids)}", entrypoint=entrypoint, params=params or {}, seed=7, **kwargs
    )


def rows(outcome: TaskOutcome, name: str) -> list[dict]:
    """The rows of an output as the runner stores it (raw columns are written as Parquet)."""
    assert isinstance(outcome, TaskSuccess), outcome
    parquet = encode_output(name, outcome.outputs[name], compression="snappy")
    return pq.read_table(io.BytesIO(parquet)).to_pylist()


def failure(outcome: TaskOutcome, kind: str) -> TaskFailure:
    assert isinstance(outcome, TaskFailure), outcome
    assert outcome.kind == kind, outcome
    return outcome


def our_children() -> set[int]:
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE
    }


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# What the pool waits on (a worker dies, a model starts) happens well within 5 s.
wait_until = functools.partial(wait_for, timeout_s=5.0, poll_s=0.01)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    before = our_children()
    shared = WorkerPool(
        import_paths=[MODELS], n_workers=2, task_timeout_s=ROOMY_TIMEOUT_S, preload=[SIR]
    )
    await shared.start()
    yield shared
    await shared.close()
    assert our_children() - before == set(), "close() left worker processes behind"


@pytest_asyncio.fixture(loop_scope="module")
async def make_pool() -> AsyncIterator[Callable[..., WorkerPool]]:
    """Pools with custom settings, closed (and checked for leftovers) after the test."""
    made: list[WorkerPool] = []
    before = our_children()

    def make(**kwargs: object) -> WorkerPool:
        kwargs = {
            "import_paths": [MODELS],
            "n_workers": 1,
            "task_timeout_s": ROOMY_TIMEOUT_S,
            **kwargs,
        }
        made.append(WorkerPool(**kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for p in made:
        await p.close()
    leftovers = our_children() - before
    await wait_until(
        lambda: all(gone(pid) for pid in leftovers), "test pools' workers to be reaped"
    )


# --- success paths -------------------------------------------------------------------------


async def test_sir_outputs_decode_to_the_expected_rows_with_metrics(pool: WorkerPool) -> None:
    outcome = await pool.run(item(SIR, {"beta": 0.3}))
    incidence = rows(outcome, "incidence")
    assert [r["day"] for r in incidence] == list(range(160))
    summary = rows(outcome, "summary")
    assert summary == [
        {
            "beta": 0.3,
            "days": 160,
            "peak": summary[0]["peak"],
            "total": sum(r["infected"] for r in incidence),
        }
    ]
    assert isinstance(outcome, TaskSuccess)
    assert outcome.peak_rss_bytes > 20 * 1024 * 1024
    longer = await pool.run(item(SIR, config={"days": 5000}))  # a few ms of CPU
    assert isinstance(longer, TaskSuccess)
    assert longer.wall_s > 0 and 0 < longer.cpu_s < longer.wall_s + 1


async def test_scenario_config_and_output_selection_reach_the_model(pool: WorkerPool) -> None:
    outcome = await pool.run(
        item(f"{SIR}/lockdown", {"beta": 0.9}, config={"days": 30}, outputs=["summary"])
    )
    assert isinstance(outcome, TaskSuccess) and list(outcome.outputs) == ["summary"]
    assert rows(outcome, "summary")[0] | {"peak": 0, "total": 0} == {
        "beta": 0.1,
        "days": 30,
        "peak": 0,
        "total": 0,
    }


async def test_same_task_same_bytes(pool: WorkerPool) -> None:
    a, b = await asyncio.gather(pool.run(item(SIR)), pool.run(item(SIR)))
    assert isinstance(a, TaskSuccess) and isinstance(b, TaskSuccess)
    assert a.outputs == b.outputs


@pytest.mark.parametrize("kind", ["pyarrow", "pandas", "polars", "dict", "numpy", "scalars"])
async def test_every_table_type_is_stored_as_the_same_parquet(pool: WorkerPool, kind: str) -> None:
    outcome = await pool.run(item("table_types_model:TableTypes", {"kind": kind}))
    expected = [
        {"day": 1, "name": "a", "value": 0.5},
        {"day": 2, "name": "b", "value": 1.5},
        {"day": 3, "name": "c", "value": 2.5},
    ]
    assert rows(outcome, "table") == (expected[:1] if kind == "scalars" else expected)
    # plain columns travel raw (the runner writes them warm); library tables as Parquet
    assert isinstance(outcome, TaskSuccess)
    sent = outcome.outputs["table"]
    assert isinstance(sent, dict if kind in ("dict", "numpy", "scalars") else bytes), sent


async def test_a_model_printing_50_mb_to_stdout_and_stderr_completes(pool: WorkerPool) -> None:
    outcome = await pool.run(item("noisy_model:Noisy", {"megabytes": 50}))
    assert rows(outcome, "result") == [{"megabytes": 50}]
    # the next failure's stderr tail holds only what that task wrote
    tail = failure(await pool.run(item("raising_model:Raises")), "model_error").stderr_tail
    assert "raising model: checking beta" in tail and "raising model: about to fail" in tail
    assert "xxxx" not in tail


async def test_per_task_overhead_is_small(pool: WorkerPool) -> None:
    """A guard against per-task spawns or imports (measured: ~0.1 ms; bound: 5 ms)."""
    await pool.run(item("noop_model:NoOp"))
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(pool.run(item("noop_model:NoOp")) for _ in range(300)))
    per_task = (time.perf_counter() - started) / 300
    assert all(isinstance(o, TaskSuccess) and o.outputs == {} for o in outcomes)
    assert per_task < 0.005, f"{per_task * 1e3:.2f} ms per no-op task"


# --- failures that keep the worker -----------------------------------------------------------


async def test_model_error_reports_type_message_traceback_and_stderr(pool: WorkerPool) -> None:
    replaced = pool.stats["workers_replaced"]
    outcome = failure(await pool.run(item("raising_model:Raises", {"beta": -1})), "model_error")
    assert outcome.error_type == "ValueError"
    assert outcome.message == "ValueError: beta must be positive, got -1"
    assert "raising_model.py" in outcome.traceback_tail
    assert "raising model: about to fail" in outcome.stderr_tail
    assert pool.stats["workers_replaced"] == replaced
    assert isinstance(await pool.run(item(SIR)), TaskSuccess)


@pytest.mark.parametrize(
    ("entrypoint", "outputs", "message"),
    [
        ("bad_output_model:ReturnsList", None, "returned list"),
        ("bad_output_model:ReturnsRagged", None, "columns of different lengths"),
        ("bad_output_model:ReturnsObject", None, "not a table"),
        (SIR, ["summary", "prevalence"], "did not return requested output(s) ['prevalence']"),
    ],
)
async def test_bad_output(
    pool: WorkerPool, entrypoint: str, outputs: list[str] | None, message: str
) -> None:
    outcome = failure(await pool.run(item(entrypoint, outputs=outputs)), "bad_output")
    assert message in outcome.message


async def test_unknown_scenario_names_the_known_ones(pool: WorkerPool) -> None:
    outcome = failure(await pool.run(item(f"{SIR}/lockdwn")), "model_error")
    assert "known scenarios: ['baseline', 'lockdown']" in outcome.message


async def test_a_model_that_cannot_import_fails_its_tasks_not_the_worker(pool: WorkerPool) -> None:
    replaced = pool.stats["workers_replaced"]
    outcome = failure(await pool.run(item("no_such_model_module:Model")), "import_error")
    assert "No module named 'no_such_model_module'" in outcome.message
    assert outcome.error_type == "ModuleNotFoundError"
    assert pool.stats["workers_replaced"] == replaced
    assert isinstance(await pool.run(item(SIR)), TaskSuccess)


async def test_unencodable_params_fail_without_touching_a_worker(pool: WorkerPool) -> None:
    outcome = failure(await pool.run(item(SIR, {"beta": object()})), "infrastructure")
    assert "cannot be sent to a worker" in outcome.message


# --- failures that cost the worker -----------------------------------------------------------


async def test_segfault_is_reported_as_signal_and_the_worker_replaced(pool: WorkerPool) -> None:
    replaced = pool.stats["workers_replaced"]
    outcome = failure(await pool.run(item("crashing_models:Segfaults")), "signal")
    assert outcome.signal == signal.SIGSEGV and outcome.exit_code is None
    assert "SIGSEGV" in outcome.message
    assert "Segmentation fault" in outcome.stderr_tail  # faulthandler's dump
    assert "crashing_models.py" in outcome.stderr_tail
    assert pool.stats["workers_replaced"] == replaced + 1
    assert all(
        isinstance(o, TaskSuccess)
        for o in await asyncio.gather(*(pool.run(item(SIR)) for _ in range(4)))
    )


async def test_hard_exit_is_crashed_with_the_exit_code(pool: WorkerPool) -> None:
    outcome = failure(await pool.run(item("crashing_models:ExitsHard", {"code": 3})), "crashed")
    assert outcome.exit_code == 3 and outcome.signal is None
    assert isinstance(await pool.run(item(SIR)), TaskSuccess)


async def test_sigkill_without_memory_pressure_is_a_signal(pool: WorkerPool) -> None:
    outcome = failure(await pool.run(item("crashing_models:SelfKills")), "signal")
    assert outcome.signal == signal.SIGKILL


async def test_timeout_kills_the_worker_and_its_children(
    make_pool: Callable[..., WorkerPool], tmp_path: Path
) -> None:
    pool = make_pool(task_timeout_s=TIMEOUT_S, preload=[SIR])
    await pool.start()
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    outcome = failure(
        await pool.run(item("hanging_model:HangsWithChild", {"pid_file": str(pid_file)})), "timeout"
    )
    assert (
        TIMEOUT_S <= outcome.wall_s < TIMEOUT_S + 3 and time.monotonic() - started < TIMEOUT_S + 3
    )
    assert f"{TIMEOUT_S:g} s timeout" in outcome.message
    grandchild = int(pid_file.read_text())
    await wait_until(lambda: gone(grandchild), "the model's own child process to be killed")
    assert isinstance(await pool.run(item(SIR)), TaskSuccess)


async def test_failures_do_not_disturb_concurrent_tasks(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(n_workers=2, task_timeout_s=TIMEOUT_S, preload=[SIR])
    await pool.start()
    items = [item(SIR, {"beta": 0.2 + i / 100}) for i in range(16)]
    items[3] = item("crashing_models:Segfaults")
    items[8] = item("raising_model:Raises")
    items[12] = item("hanging_model:Hangs")
    outcomes = await asyncio.gather(*(pool.run(i) for i in items))
    kinds = [o.kind if isinstance(o, TaskFailure) else "ok" for o in outcomes]
    assert (
        kinds
        == ["ok"] * 3
        + ["signal"]
        + ["ok"] * 4
        + ["model_error"]
        + ["ok"] * 3
        + ["timeout"]
        + ["ok"] * 3
    )
    assert [o.task_id for o in outcomes] == [i.task_id for i in items]


async def test_cancelling_a_run_kills_its_worker_and_the_pool_goes_on(
    pool: WorkerPool, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    running = asyncio.create_task(
        pool.run(item("hanging_model:HangsWithChild", {"pid_file": str(pid_file)}))
    )
    await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", "the model to start")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    grandchild = int(pid_file.read_text())
    await wait_until(lambda: gone(grandchild), "the cancelled task's processes to be killed")
    assert all(
        isinstance(o, TaskSuccess)
        for o in await asyncio.gather(*(pool.run(item(SIR)) for _ in range(4)))
    )


# --- pools with their own settings -----------------------------------------------------------


async def test_memory_limit_turns_exhaustion_into_oom(make_pool: Callable[..., WorkerPool]) -> None:
    limited = make_pool(memory_limit_bytes=1024**3, preload=[SIR])
    await limited.start()
    outcome = failure(await limited.run(item("hog_model:MemoryHog")), "oom")
    assert outcome.error_type == "MemoryError"
    assert "hog_model.py" in outcome.traceback_tail
    assert limited.stats["workers_replaced"] == 1  # a MemoryError retires the worker
    killed = failure(await limited.run(item("crashing_models:SelfKills")), "oom")
    assert killed.signal == signal.SIGKILL
    assert isinstance(await limited.run(item(SIR)), TaskSuccess)


async def test_recycling_after_one_task_gives_every_task_a_fresh_worker(
    make_pool: Callable[..., WorkerPool],
) -> None:
    leaky = make_pool(preload=["leaky_model:Leaky"])
    await leaky.start()
    assert [
        rows(await leaky.run(item("leaky_model:Leaky")), "calls")[0]["calls"] for _ in range(3)
    ] == [1, 2, 3]

    fresh = make_pool(recycle_after=1, preload=["leaky_model:Leaky"])
    await fresh.start()
    results = [rows(await fresh.run(item("leaky_model:Leaky")), "calls")[0] for _ in range(3)]
    assert [r["calls"] for r in results] == [1, 1, 1]
    assert len({r["pid"] for r in results}) == 3
    assert fresh.stats["workers_replaced"] == 3

    every_two = make_pool(recycle_after=2)
    await every_two.start()
    assert [
        rows(await every_two.run(item("leaky_model:Leaky")), "calls")[0]["calls"] for _ in range(4)
    ] == [1, 2, 1, 2]


async def test_outputs_over_the_frame_limit_are_bad_output(
    make_pool: Callable[..., WorkerPool],
) -> None:
    small = make_pool(max_frame_bytes=16 * 1024)
    await small.start()
    outcome = failure(await small.run(item(SIR, config={"days": 20_000})), "bad_output")
    assert "frame limit" in outcome.message and outcome.error_type == "FrameTooLarge"
    assert small.stats["workers_replaced"] == 0
    assert isinstance(await small.run(item(SIR, config={"days": 10})), TaskSuccess)


async def test_the_stderr_tail_is_bounded(
    make_pool: Callable[..., WorkerPool], tmp_path: Path
) -> None:
    (tmp_path / "m_chatty_fail.py").write_text(
        textwrap.dedent("""
        import sys
        class Model:
            def simulate(self, params, seed):
                for i in range(20_000):
                    print(f"line {i:05d}", file=sys.stderr)
                raise RuntimeError("after much chatter")
    """)
    )
    chatty = make_pool(import_paths=[tmp_path], stderr_tail_bytes=4096)
    await chatty.start()
    outcome = failure(await chatty.run(item("m_chatty_fail:Model")), "model_error")
    assert len(outcome.stderr_tail.encode()) <= 4096
    assert outcome.stderr_tail.endswith("line 19999\n")


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ("x = (\n", "SyntaxError"),
        ("raise RuntimeError('data file missing')\n", "RuntimeError: data file missing"),
        ("class Other:\n    pass\n", "has no 'Model'"),
    ],
)
async def test_start_fails_fast_when_a_preloaded_model_cannot_import(
    make_pool: Callable[..., WorkerPool], tmp_path: Path, source: str, expect: str
) -> None:
    (tmp_path / "m_broken.py").write_text(source)
    broken = make_pool(import_paths=[tmp_path], n_workers=2, preload=["m_broken:Model"])
    before = our_children()
    with pytest.raises(WorkerStartError, match=expect) as info:
        await broken.start()
    assert info.value.kind == "import_error"
    assert expect in info.value.message + info.value.traceback_tail
    assert broken.stats["workers_started"] == 2  # one try per worker, no restart loop
    assert our_children() - before == set()


async def test_start_reports_an_interpreter_that_cannot_run_workers(
    make_pool: Callable[..., WorkerPool], tmp_path: Path
) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no modelops here' >&2\nexit 5\n")
    fake.chmod(0o755)
    with pytest.raises(WorkerStartError, match="exited with status 5 before it was ready") as info:
        await make_pool(python=str(fake)).start()
    assert "no modelops here" in info.value.stderr_tail
    with pytest.raises(WorkerStartError, match="cannot start a worker with"):
        await make_pool(python=str(tmp_path / "missing")).start()


async def test_close_reaps_every_worker(make_pool: Callable[..., WorkerPool]) -> None:
    before = our_children()
    two = make_pool(n_workers=2, recycle_after=1)
    await two.start()
    await asyncio.gather(*(two.run(item(SIR)) for _ in range(4)))
    workers = our_children() - before
    assert workers  # running and replacement workers
    await two.close()
    assert all(gone(pid) for pid in workers)
    assert two.stats["workers_alive"] == 0
    with pytest.raises(RuntimeError, match="closed pool"):
        await two.run(item(SIR))


async def test_a_pool_is_an_async_context_manager(tmp_path: Path) -> None:
    before = our_children()
    async with WorkerPool(import_paths=[MODELS], n_workers=1, python=sys.executable) as ctx:
        assert isinstance(await ctx.run(item(SIR)), TaskSuccess)  # imported on first use
    assert our_children() - before == set()


async def test_a_worker_that_dies_while_idle_is_replaced_before_its_next_task(
    make_pool: Callable[..., WorkerPool],
) -> None:
    before = our_children()
    one = make_pool(preload=[SIR])
    await one.start()
    (worker_pid,) = our_children() - before
    psutil.Process(worker_pid).kill()
    await wait_until(lambda: one.stats["workers_alive"] == 0, "the pool to see its worker die")
    assert isinstance(await one.run(item(SIR)), TaskSuccess)
    assert one.stats["workers_replaced"] == 1


_ORPHAN_SCRIPT = """
import asyncio, sys
from pathlib import Path
import psutil
from modelops_runner.pool import WorkerPool, WorkItem

async def main():
    pool = WorkerPool(import_paths=[Path(sys.argv[1])], n_workers=1)
    await pool.start()
    task = asyncio.create_task(pool.run(WorkItem("t", "hanging_model:Hangs", {}, 1)))
    pids = [p.pid for p in psutil.Process().children()]
    print("WORKERS", *pids, flush=True)
    await task

asyncio.run(main())
"""


async def test_workers_die_with_a_runner_that_is_killed(tmp_path: Path) -> None:
    runner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ORPHAN_SCRIPT, str(MODELS), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert runner.stdout is not None
        async with asyncio.timeout(30):
            line = b""
            while not line.startswith(b"WORKERS"):  # skip the pool's own log lines
                line = await runner.stdout.readline()
                assert line, "the runner script ended without listing its workers"
        workers = [int(pid) for pid in line.split()[1:]]
        assert len(workers) == 1, line
    finally:
        runner.kill()
        await runner.wait()
    await wait_until(lambda: all(gone(pid) for pid in workers), "orphaned workers to die")


async def test_close_interrupts_running_and_waiting_tasks(
    make_pool: Callable[..., WorkerPool], tmp_path: Path
) -> None:
    before = our_children()
    one = make_pool()
    await one.start()
    pid_file = tmp_path / "grandchild.pid"
    running = asyncio.create_task(
        one.run(item("hanging_model:HangsWithChild", {"pid_file": str(pid_file)}))
    )
    waiting = asyncio.create_task(one.run(item(SIR)))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", "the model to start")
    started = time.monotonic()
    await one.close()
    assert time.monotonic() - started < 5
    interrupted = failure(await running, "infrastructure")
    assert "the worker pool was closed" in interrupted.message
    assert "closed before this task started" in failure(await waiting, "infrastructure").message
    assert our_children() - before == set()


async def test_workers_run_in_cwd_and_its_files_do_not_shadow_the_worker(
    make_pool: Callable[..., WorkerPool], tmp_path: Path
) -> None:
    (tmp_path / "msgpack.py").write_text("raise ImportError('shadowed the real msgpack')\n")
    (tmp_path / "data.txt").write_text("from the bundle")
    models = tmp_path / "models"
    models.mkdir()
    (models / "m_reads_data.py").write_text(
        "from pathlib import Path\n"
        "class Model:\n"
        "    def simulate(self, params, seed):\n"
        "        return {'data': {'text': Path('data.txt').read_text()}}\n"
    )
    bundle = make_pool(import_paths=[models], cwd=tmp_path, preload=["m_reads_data:Model"])
    await bundle.start()
    assert rows(await bundle.run(item("m_reads_data:Model")), "data") == [
        {"text": "from the bundle"}
    ]


# --- handing the next task to a worker as it answers -------------------------------------------


async def test_a_worker_that_answers_is_handed_the_next_waiting_task(
    make_pool: Callable[..., WorkerPool],
) -> None:
    one = make_pool(preload=["leaky_model:Leaky"])
    await one.start()
    outcomes = await asyncio.gather(*(one.run(item("leaky_model:Leaky")) for _ in range(6)))
    # in order, on the one worker, each task sent as the previous one's answer arrived
    assert [rows(o, "calls")[0]["calls"] for o in outcomes] == [1, 2, 3, 4, 5, 6]
    assert one.stats["tasks_handed_over"] == 5
    assert one.stats["workers_started"] == 1


async def test_no_task_is_handed_to_a_worker_due_for_recycling(
    make_pool: Callable[..., WorkerPool],
) -> None:
    every_two = make_pool(recycle_after=2, preload=["leaky_model:Leaky"])
    await every_two.start()
    outcomes = await asyncio.gather(*(every_two.run(item("leaky_model:Leaky")) for _ in range(6)))
    calls = [rows(o, "calls")[0] for o in outcomes]
    assert [c["calls"] for c in calls] == [1, 2, 1, 2, 1, 2]
    assert len({c["pid"] for c in calls}) == 3
    assert every_two.stats["tasks_handed_over"] == 3  # the second task of each worker


async def test_a_failure_in_a_handed_task_is_its_own(make_pool: Callable[..., WorkerPool]) -> None:
    one = make_pool(preload=[SIR])
    await one.start()
    items = [item(SIR), item("crashing_models:Segfaults"), item(SIR), item("raising_model:Raises")]
    items.append(item(SIR))
    outcomes = await asyncio.gather(*(one.run(i) for i in items))
    kinds = [o.kind if isinstance(o, TaskFailure) else "ok" for o in outcomes]
    assert kinds == ["ok", "signal", "ok", "model_error", "ok"]
    assert one.stats["workers_replaced"] == 1


async def test_cancelling_a_handed_task_kills_its_worker_and_the_rest_run(
    make_pool: Callable[..., WorkerPool], tmp_path: Path
) -> None:
    one = make_pool(preload=[SIR])
    await one.start()
    pid_file = tmp_path / "grandchild.pid"
    first = asyncio.create_task(one.run(item(SIR)))
    hanging = asyncio.create_task(
        one.run(item("hanging_model:HangsWithChild", {"pid_file": str(pid_file)}))
    )
    after = asyncio.create_task(one.run(item(SIR)))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", "the model to start")
    assert one.stats["tasks_handed_over"] >= 1
    hanging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hanging
    grandchild = int(pid_file.read_text())
    await wait_until(lambda: gone(grandchild), "the cancelled task's processes to be killed")
    assert isinstance(await first, TaskSuccess) and isinstance(await after, TaskSuccess)


async def test_a_task_cancelled_just_after_its_hand_over_takes_its_worker_down_alone(
    make_pool: Callable[..., WorkerPool], tmp_path: Path
) -> None:
    one = make_pool(preload=[SIR])
    pid_file = tmp_path / "grandchild.pid"
    victim: list[asyncio.Task[TaskOutcome]] = []
    hand_over = one._hand_over

    def hand_over_then_cancel(worker: object, reply: dict) -> None:
        hand_over(worker, reply)  # type: ignore[arg-type]
        if victim and one.stats["tasks_handed_over"] == 1 and not victim[0].done():
            victim[0].cancel()  # granted and sent, but not yet resumed

    one._hand_over = hand_over_then_cancel  # type: ignore[method-assign]
    await one.start()
    first = asyncio.create_task(one.run(item(SIR)))
    victim.append(
        asyncio.create_task(
            one.run(item("hanging_model:HangsWithChild", {"pid_file": str(pid_file)}))
        )
    )
    with pytest.raises(asyncio.CancelledError):
        await victim[0]
    assert isinstance(await first, TaskSuccess)  # the answer that handed it over is intact
    assert isinstance(await one.run(item(SIR)), TaskSuccess)  # on the replacement worker
    assert one.stats["workers_replaced"] == 1
    if pid_file.exists() and pid_file.read_text():
        await wait_until(lambda: gone(int(pid_file.read_text())), "the model's child to be killed")
