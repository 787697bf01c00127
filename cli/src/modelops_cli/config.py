"""Where the CLI finds things: flags, then `MODELOPS_*` env, then `modelops.toml`, then the
embedded stack's defaults under `.modelops/`.

With nothing configured every command works against the embedded stack: bundles go to an OCI
image-layout folder (`.modelops/oci`), blobs to `.modelops/blobs`, and the NATS URL is read from
`.modelops/stack.json`, which `modelops up` writes. The same commands drive a full deployment
once `nats_url`, `registry` and `blob_store` (plus S3 credentials) are set.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, StackNotRunning

__all__ = ["CliConfig", "ConfigError", "StackInfo", "find_project_root", "load_config"]

CONFIG_FILE = "modelops.toml"
_KEYS = {
    "registry": "MODELOPS_REGISTRY",
    "repository": "MODELOPS_REPOSITORY",
    "nats_url": "MODELOPS_NATS_URL",
    "nats_creds": "MODELOPS_NATS_CREDS",
    "blob_store": "MODELOPS_BLOB_STORE",
    "s3_endpoint": "MODELOPS_S3_ENDPOINT",
    "launcher": "MODELOPS_LAUNCHER",
}


@dataclass(frozen=True)
class StackInfo:
    """What `modelops up` recorded in `.modelops/stack.json`."""

    nats_url: str
    pid: int
    bundle_store: str
    blob_store: str
    home: Path

    def alive(self) -> bool:
        """Whether the stack process still runs (and is ours: a reused pid is not)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # Linux: a pid reused after a reboot or crash belongs to some other program
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return True
        return b"modelops" in cmdline


@dataclass(frozen=True)
class CliConfig:
    project_root: Path
    home: Path
    registry: str
    repository: str
    nats_url: str | None
    nats_creds: str | None
    blob_store: str
    s3_endpoint: str | None
    launcher: str
    sources: dict[str, str] = field(default_factory=dict)  # key -> where its value came from

    @property
    def stack_file(self) -> Path:
        return self.home / "stack.json"

    def stack(self) -> StackInfo | None:
        """The embedded stack recorded in `.modelops/`, if one is running."""
        try:
            data = json.loads(self.stack_file.read_text())
            info = StackInfo(
                nats_url=data["nats_url"],
                pid=int(data["pid"]),
                bundle_store=data["bundle_store"],
                blob_store=data["blob_store"],
                home=self.home,
            )
        except (OSError, ValueError, KeyError):
            return None
        return info if info.alive() else None

    def require_nats_url(self) -> str:
        """The NATS URL to use: configured, else the running embedded stack's; else a clear
        StackNotRunning."""
        if self.nats_url:
            return self.nats_url
        stack = self.stack()
        if stack is not None:
            return stack.nats_url
        raise StackNotRunning(
            f"no ModelOps stack is running for {self.project_root} (no NATS URL configured)",
            hint="start one with 'modelops up --detach', or set MODELOPS_NATS_URL "
            "(or nats_url in modelops.toml) to use a deployment",
        )

    def with_stack(self) -> CliConfig:
        """This config with the running embedded stack's stores in place of defaults.

        `modelops up` records where it keeps bundles and blobs; a value the user configured
        (flag, env, modelops.toml) still wins.
        """
        stack = self.stack()
        if stack is None:
            return self
        values = {}
        if self.sources.get("registry") == "default":
            values["registry"] = stack.bundle_store
        if self.sources.get("blob_store") == "default":
            values["blob_store"] = stack.blob_store
        if not self.nats_url:
            values["nats_url"] = stack.nats_url
        sources = {**self.sources, **{k: "stack.json" for k in values}}
        return replace(self, **values, sources=sources)

    def with_overrides(self, **values: Any) -> CliConfig:
        given = {k: v for k, v in values.items() if v is not None}
        sources = {**self.sources, **{k: "flag" for k in given}}
        return replace(self, **given, sources=sources)


def find_project_root(start: Path | None = None) -> Path:
    """Nearest folder (from `start` up) holding `.modelops-bundle/`, `modelops.toml` or
    `.modelops/`; else `start` itself."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / n).exists() for n in (".modelops-bundle", CONFIG_FILE, ".modelops")):
            return folder
    return here


def _default_repository(root: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")
    return name or "bundles"


def load_config(start: Path | None = None, *, env: dict[str, str] | None = None) -> CliConfig:
    env = dict(os.environ if env is None else env)
    root = find_project_root(start)
    file_values: dict[str, Any] = {}
    cfg_path = root / CONFIG_FILE
    if cfg_path.exists():
        try:
            file_values = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read {cfg_path}: {exc}", hint="fix the TOML syntax or remove the file"
            ) from exc
        unknown = sorted(set(file_values) - set(_KEYS) - {"home"})
        if unknown:
            raise ConfigError(
                f"{cfg_path} has unknown key(s): {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted([*_KEYS, 'home']))}",
            )
    home = Path(env.get("MODELOPS_HOME") or file_values.get("home") or root / ".modelops")
    if not home.is_absolute():
        home = root / home
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, var in _KEYS.items():
        if env.get(var):
            values[key], sources[key] = env[var], f"env {var}"
        elif key in file_values:
            values[key], sources[key] = str(file_values[key]), CONFIG_FILE
    defaults = {
        "registry": f"oci-layout:{home / 'oci'}",
        "repository": _default_repository(root),
        "blob_store": (home / "blobs").as_uri(),
        "launcher": "local",
    }
    for key, value in defaults.items():
        if key not in values:
            values[key], sources[key] = value, "default"
    return CliConfig(
        project_root=root,
        home=home,
        registry=values["registry"],
        repository=values["repository"],
        nats_url=values.get("nats_url"),
        nats_creds=values.get("nats_creds"),
        blob_store=values["blob_store"],
        s3_endpoint=values.get("s3_endpoint"),
        launcher=values["launcher"],
        sources=sources,
    )
