"""Paths of the deployment files, a loader for deploy/nats/render_config.py (not a package), and
NATS passwords made the way operators are told to make them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = [
    "DEPLOY",
    "NATS_CONFIG",
    "NATS_USERS",
    "REPO",
    "load_render_config",
    "nats_password_env",
    "nats_passwords",
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NATS_CONFIG = DEPLOY / "nats" / "nats-server.conf"
NATS_USERS = ("registrar", "bundler", "submitter", "runner", "cli")  # one per component


def load_render_config() -> ModuleType:
    name = "modelops_deploy_render_config"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DEPLOY / "nats" / "render_config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def nats_password_env(user: str) -> str:
    """The variable NATS_CONFIG reads `user`'s password from."""
    return f"MODELOPS_NATS_{user.upper()}_PASSWORD"


def nats_passwords(*users: str) -> dict[str, str]:
    """A fresh password per user from render_config.new_password (nats-server-safe)."""
    new_password = load_render_config().new_password
    return {user: new_password() for user in users}
