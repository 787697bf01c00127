"""The embedded stack (`modelops up`): nats-server plus the registrar, bundler and submitter
in one process, keeping its state under `.modelops/`.

Layout of the home folder::

    .modelops/
      stack.json     {nats_url, pid, bundle_store, blob_store, ...} while the stack runs
      stack.lock     held by the running stack process (one stack per home)
      ports.json     the ports last used, reused so runners and clients keep their URL
      nats/          JetStream file store (streams and KV buckets survive restarts)
      oci/           OCI image-layout folder: the bundle store
      blobs/         the blob store (job specs, task outputs, results tables)
      jobs/          local runners' logs, per job
      logs/          nats-server.log, stack.log (detached)

The services are configured the way a deployment configures them, through `MODELOPS_*`
environment variables, set in this process before they start. Each service is started through
its one public entry, `serve(settings, stop=, ready=)` in `modelops_<service>.app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog

from modelops_runtime.nats_setup import connect, ensure_jetstream
from modelops_runtime.processes import LOCALHOST, NatsServer, ServerStartError, free_port

from .config import CliConfig, StackInfo
from .errors import StackError

__all__ = [
    "READY_TIMEOUT_S",
    "ensure_running",
    "run_stack",
    "service_env",
    "start_detached",
    "stop_stack",
]

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
RUNNER_GRACE_S = 10.0  # within STOP_TIMEOUT_S: `down` waits for the whole shutdown
_POLL_S = 0.05
_WATCHDOG_S = 1.0

ServiceRun = Callable[[asyncio.Event, asyncio.Event], Awaitable[None]]
"""A service started with its stop and ready events."""


# ---------------------------------------------------------------------- pure


def service_env(cfg: CliConfig, nats_url: str, base: Mapping[str, str]) -> dict[str, str]:
    """The environment the services (and, through the submitter, the runners) get."""
    env = dict(base)
    env.update(
        {
            "MODELOPS_NATS_URL": nats_url,
            "MODELOPS_STATE_DIR": str(cfg.home),
            "MODELOPS_BUNDLE_STORE": cfg.registry,
            "MODELOPS_BLOB_STORE": cfg.blob_store,
            "MODELOPS_BUNDLE_CACHE": str(cfg.home / "bundle-cache"),
            "MODELOPS_LAUNCHER": cfg.launcher,
        }
    )
    if cfg.s3_endpoint:
        env["MODELOPS_S3_ENDPOINT"] = cfg.s3_endpoint
    if cfg.nats_creds:
        env["MODELOPS_NATS_CREDS"] = cfg.nats_creds
    return env


def _record(info: StackInfo, **extra: Any) -> dict[str, Any]:
    return {
        "nats_url": info.nats_url,
        "pid": info.pid,
        "bundle_store": info.bundle_store,
        "blob_store": info.blob_store,
        **extra,
    }


# ---------------------------------------------------------------------- state files


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # readers see the old file or the new one, never half of one


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def _ports(home: Path) -> tuple[int, int]:
    """(client, monitor) ports: those used last time if still free, so URLs stay stable."""
    path = home / "ports.json"
    try:
        last = json.loads(path.read_text())
        nats_port, monitor_port = int(last["nats"]), int(last["monitor"])
    except (OSError, ValueError, KeyError, TypeError):
        nats_port = monitor_port = 0
    if not nats_port or not _port_free(nats_port):
        nats_port = free_port()
    if not monitor_port or monitor_port == nats_port or not _port_free(monitor_port):
        monitor_port = free_port()
    _write_json(path, {"nats": nats_port, "monitor": monitor_port})
    return nats_port, monitor_port


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """Hold `stack.lock` for the life of the stack: one stack per home folder."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "stack.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another 'modelops up' is already starting or running in {home}",
                hint="use it, or stop it with 'modelops down'",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------- the stack process


def _service(serve: Callable[..., Awaitable[None]], settings: object) -> ServiceRun:
    """Start one service's `serve(settings, stop=, ready=)`.

    A serve() without `ready` counts as ready at once: commands wait in the JetStream command
    stream until its consumer subscribes, so nothing sent meanwhile is lost.
    """
    takes_ready = "ready" in inspect.signature(serve).parameters

    async def run(stop: asyncio.Event, ready: asyncio.Event) -> None:
        if takes_ready:
            await serve(settings, stop=stop, ready=ready)
        else:
            ready.set()
            await serve(settings, stop=stop)

    return run


def _services() -> dict[str, ServiceRun]:
    # Imported here: only the stack process needs the services (and their dependencies).
    from modelops_bundler import app as bundler
    from modelops_registrar import app as registrar
    from modelops_submitter import app as submitter

    return {
        name: _service(module.serve, module.Settings.from_env())
        for name, module in (
            ("registrar", registrar),
            ("bundler", bundler),
            ("submitter", submitter),
        )
    }


async def _serve_services(
    cfg: CliConfig, info: StackInfo, nats: NatsServer, on_ready: Callable[[StackInfo], None]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Declare streams and buckets once, before three services race to do it.
    nc = await connect(info.nats_url, name="modelops-stack", credentials=cfg.nats_creds)
    try:
        await ensure_jetstream(nc.jetstream())
    finally:
        await nc.close()

    services = _services()
    ready = {name: asyncio.Event() for name in services}

    async def watchdog() -> None:
        while not stop.is_set():
            if nats.process is None or not nats.process.running:
                raise StackError(
                    "nats-server stopped unexpectedly",
                    hint=f"see {cfg.home / 'logs' / 'nats-server.log'}",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _WATCHDOG_S)

    async def announce() -> None:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(event.wait() for event in ready.values())), READY_TIMEOUT_S
            )
        except TimeoutError:
            late = sorted(name for name, event in ready.items() if not event.is_set())
            raise StackError(
                f"service(s) {', '.join(late)} did not start within {READY_TIMEOUT_S:g}s",
                hint="rerun 'modelops up' in the foreground with --verbose to see why",
            ) from None
        _write_json(
            cfg.stack_file, _record(info, nats_pid=nats.process.pid if nats.process else None)
        )
        log.info("stack.ready", nats_url=info.nats_url, pid=info.pid)
        on_ready(info)

    try:
        async with asyncio.TaskGroup() as group:
            for name, run in services.items():
                group.create_task(run(stop, ready[name]), name=name)
            group.create_task(announce(), name="announce")
            group.create_task(watchdog(), name="watchdog")
    finally:
        stop.set()


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def _local_runners(home: Path) -> dict[int, int]:
    """Runners the submitter's local launcher started and that still run: {pid: start time}.

    The launcher records them in `jobs/<job_id>/runners.json` ({"runners": [{pid, start}]});
    the start time tells a runner from a later process that reused its pid.
    """
    found: dict[int, int] = {}
    for path in (home / "jobs").glob("*/runners.json"):
        try:
            runners = json.loads(path.read_text()).get("runners", [])
        except (OSError, ValueError, AttributeError):
            continue
        for r in runners:
            pid, start = r.get("pid"), r.get("start")
            if isinstance(pid, int) and start and _start_time(pid) == start:
                found[pid] = start
    return found


def _stop_local_runners(home: Path, grace_s: float) -> None:
    """SIGTERM each runner's process group (its workers too), SIGKILL what outlives `grace_s`.

    Runs while NATS is still up, so a runner can hand its in-flight tasks back (nak); they are
    redelivered when runners run again.
    """
    runners = _local_runners(home)
    if not runners:
        return
    for pid in runners:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_start_time(pid) == start for pid, start in runners.items()):
        if time.monotonic() >= deadline:
            log.warning("stack.runners_killed", runners=sorted(runners), grace_s=grace_s)
            break
        time.sleep(_POLL_S)
    for pid in runners:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # the group's leftovers (workers) go too
    log.info("stack.runners_stopped", runners=len(runners))


def run_stack(cfg: CliConfig, *, on_ready: Callable[[StackInfo], None]) -> None:
    """Run the embedded stack in this process until SIGTERM/SIGINT (the `up` foreground).

    `on_ready` is called once every service is subscribed and `stack.json` is written.
    """
    home = cfg.home
    with _home_lock(home):
        nats_port, monitor_port = _ports(home)
        nats = NatsServer(
            home / "nats", port=nats_port, monitor_port=monitor_port, log_dir=home / "logs"
        )
        info = StackInfo(
            nats_url=nats.url,
            pid=os.getpid(),
            bundle_store=cfg.registry,
            blob_store=cfg.blob_store,
            home=home,
        )
        for folder in ("oci", "blobs", "jobs", "logs"):
            (home / folder).mkdir(parents=True, exist_ok=True)
        os.environ.update(service_env(cfg, nats.url, {}))
        try:
            nats.start()
        except ServerStartError as exc:
            raise StackError(f"nats-server did not start: {exc.reason}", hint=exc.hint) from exc
        try:
            asyncio.run(_serve_services(cfg, info, nats, on_ready))
        except BaseExceptionGroup as group:  # a service failed: report that failure itself
            raise _first_leaf(group) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                if json.loads(cfg.stack_file.read_text()).get("pid") == os.getpid():
                    cfg.stack_file.unlink()
            _stop_local_runners(home, RUNNER_GRACE_S)
            nats.stop()
            log.info("stack.stopped", home=str(home))


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


# ---------------------------------------------------------------------- controlling it


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_detached(cfg: CliConfig, *, timeout_s: float = READY_TIMEOUT_S) -> StackInfo:
    """Start `modelops up` as a background process; return once it is ready."""
    running = cfg.stack()
    if running is not None:
        return running
    log_dir = cfg.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "stack.log"
    env = {k: v for k, v in os.environ.items() if k != "MODELOPS_NATS_URL"}
    env.update(
        MODELOPS_HOME=str(cfg.home),
        MODELOPS_REGISTRY=cfg.registry,
        MODELOPS_BLOB_STORE=cfg.blob_store,
        MODELOPS_LAUNCHER=cfg.launcher,
    )
    with log_path.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "modelops_cli.main", "up"],
            cwd=cfg.project_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this terminal and this command
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = cfg.stack()
        if info is not None and info.pid == child.pid:
            return info
        if child.poll() is not None:
            if info is not None:  # another `up` won the race: use its stack
                return info
            raise StackError(
                f"the stack exited with code {child.returncode} while starting:\n"
                + _log_tail(log_path),
                hint=f"full log: {log_path}",
            )
        time.sleep(_POLL_S)
    child.terminate()
    raise StackError(
        f"the stack was not ready within {timeout_s:g}s", hint=f"see its log: {log_path}"
    )


def _kill_leftovers(cfg: CliConfig) -> None:
    """After a stack that would not stop was killed: its nats-server runs in its own session."""
    try:
        data = json.loads(cfg.stack_file.read_text())
    except (OSError, ValueError):
        return
    nats_pid = data.get("nats_pid")
    if isinstance(nats_pid, int):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(nats_pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        cfg.stack_file.unlink()


def stop_stack(cfg: CliConfig, *, timeout_s: float = STOP_TIMEOUT_S) -> StackInfo | None:
    """Stop the running stack (SIGTERM, then SIGKILL after `timeout_s`); None if none ran."""
    info = cfg.stack()
    if info is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while info.alive() and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    if info.alive():
        log.warning("stack.kill", pid=info.pid, grace_s=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGKILL)
        _kill_leftovers(cfg)
    return info


def ensure_running(cfg: CliConfig) -> tuple[StackInfo, bool]:
    """The running stack, starting a detached one if needed; True if this call started it."""
    running = cfg.stack()
    if running is not None:
        return running, False
    return start_detached(cfg), True
