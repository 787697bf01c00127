"""Local launcher: runners as processes on this host (the embedded stack, docker compose).

Each runner is its own session (process group), so stopping it also stops the worker
processes it spawned. Output goes to `<state>/jobs/<job_id>/runner-<i>.log`. The runners'
pids and start times are recorded in `runners.json` beside the logs: a submitter restarted
after a crash can still find and stop them, and the start time guards against a recycled pid.
A clean shutdown (`close`) stops the runners; the next start launches them again for jobs
that still have tasks (see handlers.resume_runners).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from ..errors import LaunchError
from .base import LaunchRequest

__all__ = ["LocalLauncher", "process_start_time"]

log = structlog.get_logger(__name__)

PID_FILE = "runners.json"
_POLL_S = 0.05


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait() is missing
        return None
    return int(fields[19])


def _alive(pid: int, started: int) -> bool:
    return process_start_time(pid) == started


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


class LocalLauncher:
    """Starts `command` once per runner with the runner environment added to ours."""

    name = "local"

    def __init__(
        self,
        jobs_dir: Path,
        command: Sequence[str],
        *,
        stop_grace_s: float = 5.0,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.command = list(command)
        self.stop_grace_s = stop_grace_s
        self.base_env = dict(os.environ if base_env is None else base_env)
        self._procs: dict[str, list[asyncio.subprocess.Process]] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    def folder(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def _recorded(self, job_id: str) -> list[tuple[int, int]]:
        """(pid, start time) of the job's runners that are still the processes we started."""
        try:
            data = json.loads((self.folder(job_id) / PID_FILE).read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            log.warning("launcher.local.bad_pid_file", job_id=job_id, error=str(exc))
            return []
        return [
            (r["pid"], r["start"]) for r in data.get("runners", []) if _alive(r["pid"], r["start"])
        ]

    async def launch(self, request: LaunchRequest) -> None:
        job_id = request.job_id
        if await self.has_runners(job_id):
            log.info("launcher.local.already_running", job_id=job_id)
            return
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        procs: list[asyncio.subprocess.Process] = []
        try:
            for i in range(request.runners):
                env = {**self.base_env, **request.env, "MODELOPS_RUNNER_ID": f"{job_id}-{i}"}
                with open(folder / f"runner-{i}.log", "ab") as out:  # noqa: ASYNC230 - instant
                    procs.append(
                        await asyncio.create_subprocess_exec(
                            *self.command,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,  # own group: stop() reaches its workers
                        )
                    )
        except OSError as exc:
            for proc in procs:
                _signal_group(proc.pid, signal.SIGKILL)
            raise LaunchError(
                f"cannot start runner command {self.command!r} for job {job_id}: {exc}",
                hint="check MODELOPS_RUNNER_COMMAND and that modelops-runner is installed",
            ) from exc
        self._procs[job_id] = procs
        records = [{"pid": p.pid, "start": process_start_time(p.pid) or 0} for p in procs]
        tmp = folder / f".{PID_FILE}.tmp"
        tmp.write_text(json.dumps({"runners": records}))
        tmp.replace(folder / PID_FILE)
        for i, proc in enumerate(procs):
            task = asyncio.create_task(self._reap(job_id, i, proc), context=contextvars.Context())
            self._reapers.add(task)
            task.add_done_callback(self._reapers.discard)
        log.info("launcher.local.started", job_id=job_id, runners=len(procs), logs=str(folder))

    async def _reap(self, job_id: str, index: int, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        log.info("launcher.local.runner_exited", job_id=job_id, runner=index, exit_code=code)

    async def stop(self, job_id: str) -> None:
        own = self._procs.pop(job_id, [])
        targets = {p.pid: process_start_time(p.pid) for p in own if p.returncode is None}
        targets.update(dict(self._recorded(job_id)))
        targets = {pid: start for pid, start in targets.items() if start is not None}
        for pid in targets:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        while any(_alive(pid, start) for pid, start in targets.items()):
            if time.monotonic() >= deadline:
                log.warning("launcher.local.kill", job_id=job_id, grace_s=self.stop_grace_s)
                break
            await asyncio.sleep(_POLL_S)  # polling the pids with a deadline
        for pid in targets:
            _signal_group(pid, signal.SIGKILL)  # leftovers in the group (workers) go too
        for proc in own:
            if proc.returncode is None:
                await proc.wait()
        log.info("launcher.local.stopped", job_id=job_id, runners=len(targets))

    async def has_runners(self, job_id: str) -> bool:
        own = self._procs.get(job_id, [])
        return any(p.returncode is None for p in own) or bool(self._recorded(job_id))

    async def wait(self, job_id: str) -> list[int | None]:
        """Exit codes of the runners this launcher started for the job (waits for them)."""
        return [await p.wait() for p in self._procs.get(job_id, [])]

    async def close(self) -> None:
        """Stop the runners started here: on a clean shutdown nothing is left behind, and the
        next start relaunches runners for jobs with tasks left (handlers.resume_runners).
        After a crash (no close) they go on, and the next start tracks them."""
        for job_id in list(self._procs):
            await self.stop(job_id)
        for task in list(self._reapers):
            task.cancel()
        self._reapers.clear()
