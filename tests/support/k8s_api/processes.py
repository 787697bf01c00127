"""A pod's container as a local process group: start, wait, terminate, never leak.

Each container runs in its own session (so its process group holds everything it forks)
with stdout and stderr appended to one log file, as a kubelet's container log. When the
main process exits, whatever it left behind in its group is killed, as the container
runtime kills a container's remaining processes when PID 1 ends. On Linux the child also
asks for SIGKILL if the server's thread dies, so a crashed test run leaves no runners.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import structlog

__all__ = ["PodProcess", "group_alive"]

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_GROUP_POLL = 0.02


def _libc_prctl():  # type: ignore[no-untyped-def]
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL when the forking thread ends."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in group `pgid` (zombies run no code)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _open_log(path: Path) -> BinaryIO:
    """Append mode: a restarted container keeps adding to the same log, as kubelet does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")


class PodProcess:
    """One running container. Create with `start`; `wait` returns the raw returncode
    (negative for a signal); `terminate` is SIGTERM to the group, then SIGKILL."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self._process = process
        self.pid = process.pid
        self.log_path = log_path
        self._done = asyncio.Event()
        self.returncode: int | None = None

    @classmethod
    async def start(
        cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> PodProcess:
        """Raises OSError when the executable cannot be started (the caller reports it)."""
        with _open_log(log_path) as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=str(cwd),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return cls(process, log_path)

    async def wait(self) -> int:
        """Wait for the main process, then clear out the rest of its group."""
        if self.returncode is None:
            code = await self._process.wait()
            await self._kill_group()
            self.returncode = code
            self._done.set()
        return self.returncode

    async def terminate(self, grace: float) -> int:
        """SIGTERM the group, SIGKILL it after `grace` seconds; returns the returncode."""
        if not self._done.is_set():  # never signal a group whose leader pid may be reused
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._done.wait(), timeout=grace)
            except TimeoutError:
                log.info("k8s_test.pod.kill", pid=self.pid, grace_seconds=grace)
                self._signal(signal.SIGKILL)
                await self._done.wait()
        assert self.returncode is not None
        return self.returncode

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def _kill_group(self) -> None:
        """SIGKILL leftovers and wait (bounded) until none of them runs any more."""
        self._signal(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        # Polling /proc: nothing signals the exit of processes that are not our children.
        while group_alive(self.pid) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_GROUP_POLL)
