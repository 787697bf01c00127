"""Which bundles this project pushed, so `status` can say, offline, whether each registered model
is in the latest one. Kept in `.modelops-bundle/pushes.json` (git-ignored: it is this machine's
history, not the project's), newest last, at most KEEP entries.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import structlog

from modelops_contracts import parse_bundle_ref
from modelops_contracts.refs import Digest

from .errors import ProjectError
from .project import STATE_DIR, atomic_write_bytes, file_lock

__all__ = ["KEEP", "PUSHES_FILE", "Push", "latest_push", "push_history", "record_push"]

log = structlog.get_logger(__name__)

PUSHES_FILE = "pushes.json"
KEEP = 50


class Push(msgspec.Struct, frozen=True, kw_only=True):
    """One pushed bundle: its digest-pinned ref and the digest of each model it holds."""

    bundle_ref: str
    models: dict[str, Digest]
    pushed_at: str  # ISO 8601, UTC


class _PushFile(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 1
    pushes: list[Push] = []


_encoder = msgspec.json.Encoder(order="sorted")


def _path(root: Path) -> Path:
    return root / STATE_DIR / PUSHES_FILE


def push_history(root: Path) -> list[Push]:
    """Recorded pushes, oldest first (empty if none)."""
    path = _path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        return list(msgspec.json.decode(data, type=_PushFile).pushes)
    except msgspec.DecodeError as exc:
        raise ProjectError(
            f"{path} is unreadable: {exc}",
            hint="delete it; it only records which bundles were pushed from this machine",
        ) from exc


def latest_push(root: Path) -> Push | None:
    """The most recent push, or None if nothing was pushed from here."""
    history = push_history(root)
    return history[-1] if history else None


def record_push(
    root: Path, bundle_ref: str, models: dict[str, str], *, now: dt.datetime | None = None
) -> Push:
    """Record that `bundle_ref` was pushed holding `models` (model id -> model digest).

    Raises InvalidBundleRef for a ref not pinned to a digest, ProjectError for a bad model digest.
    """
    parse_bundle_ref(bundle_ref)
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="seconds")
    try:
        push = msgspec.convert(
            {"bundle_ref": bundle_ref, "models": dict(sorted(models.items())), "pushed_at": when},
            Push,
        )
    except msgspec.ValidationError as exc:
        raise ProjectError(f"cannot record push of {bundle_ref}: {exc}") from exc
    path = _path(root)
    path.parent.mkdir(exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        history = [*push_history(root), push][-KEEP:]
        atomic_write_bytes(path, _encoder.encode(_PushFile(pushes=history)))
    log.info("bundle.push_recorded", bundle_ref=bundle_ref, models=len(models))
    return push
