"""Registry credentials and 401 challenges.

Credentials come from MODELOPS_REGISTRY_USERNAME / MODELOPS_REGISTRY_PASSWORD, else from the
Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, as `docker login`
writes it). A `Basic` challenge (htpasswd registries) is answered with them directly; a
`Bearer` challenge (Docker Hub, GHCR, Harbor, ...) goes through oras's token flow, which
also knows Docker credential helpers.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import oras.container
import requests
import structlog

__all__ = ["RegistryAuth", "docker_config_path", "find_credentials"]

log = structlog.get_logger(__name__)

ENV_USERNAME = "MODELOPS_REGISTRY_USERNAME"
ENV_PASSWORD = "MODELOPS_REGISTRY_PASSWORD"


def docker_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """Where `docker login` keeps credentials."""
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _host_keys(host: str) -> list[str]:
    names = [host]
    if host.startswith("localhost"):
        names.append(host.replace("localhost", "127.0.0.1", 1))
    elif host.startswith("127.0.0.1"):
        names.append(host.replace("127.0.0.1", "localhost", 1))
    return [p + n for n in names for p in ("", "https://", "http://")]


def credentials_from_docker_config(config: Mapping[str, Any], host: str) -> tuple[str, str] | None:
    """(username, password) stored inline for `host` in a parsed Docker config. Pure."""
    auths = config.get("auths") or {}
    for key in _host_keys(host):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        token = entry.get("auth")
        if token:
            try:
                user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                log.warning("registry.bad_docker_auth", host=key)
                continue
            return user, password
    return None


def find_credentials(host: str, env: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """Credentials for `host`: environment first, then the Docker config; None if neither."""
    user, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if user and password:
        return user, password
    path = docker_config_path(env)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("registry.docker_config_unreadable", path=str(path), error=str(exc))
        return None
    return credentials_from_docker_config(config, host) if isinstance(config, dict) else None


class RegistryAuth:
    """The Authorization header to send, updated by answering challenges."""

    def __init__(self, host: str, token_auth: Any, *, credentials: tuple[str, str] | None) -> None:
        """`token_auth` is the oras token backend of the client (it shares its session)."""
        self.host = host
        self._credentials = credentials
        self._header: dict[str, str] = {}
        self._token = token_auth
        if credentials:
            self._token.set_basic_auth(*credentials)
        else:
            path = docker_config_path()
            # Lets oras find credential-helper logins for the Bearer flow.
            self._token.load_configs(
                oras.container.Container("modelops", registry=host),
                configs=[str(path)] if path.exists() else None,
            )

    @property
    def has_credentials(self) -> bool:
        return self._credentials is not None

    def header(self) -> dict[str, str]:
        """The header for the next request (empty until a challenge was answered)."""
        return dict(self._header)

    def answer(self, response: requests.Response) -> bool:
        """Prepare credentials for a 401/403; False if we have nothing that could help."""
        challenge = response.headers.get("Www-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self._credentials:
                return False
            raw = ":".join(self._credentials).encode("utf-8")
            self._header = {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
            return True
        if scheme == "bearer":
            headers, changed = self._token.authenticate_request(response, {}, refresh=True)
            if changed and headers.get("Authorization"):
                self._header = {"Authorization": headers["Authorization"]}
                return True
        return False
