"""The job's bundle on this host: pulled by digest, verified, and laid out for import.

`pull_bundle` (modelops_bundle) hashes every blob against the manifest before anything is
used and shares one copy per digest among the runners of a host. This module adds what the
runner needs on top: which folders go on the workers' `sys.path`. A model registered as
`src/model.py` with entrypoint `model:StochasticSIR` is imported as module `model`, so the
import root is `src/`; `src/pkg/sim.py` as `pkg.sim` also gives `src/`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog

from modelops_bundle.errors import (
    BundleError,
    BundleNotFound,
    IntegrityError,
    ModelNotFound,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
)
from modelops_bundle.oci import INDEX_FILENAME, BundleIndex, parse_bundle_config
from modelops_bundle.pull import pull_bundle
from modelops_bundle.stores import open_store
from modelops_contracts import parse_bundle_ref, parse_entrypoint

from .errors import BundleRefused, ConfigError, InfrastructureError

__all__ = ["PreparedBundle", "import_root", "prepare_bundle", "resolve_imports"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PreparedBundle:
    """A verified bundle tree and how workers import its models."""

    tree: Path
    index: BundleIndex
    import_paths: list[Path]
    preload: list[str]  # `module:Class` of the job's entrypoints, imported when a worker starts


def import_root(model_path: str, module: str) -> str:
    """The bundle-relative folder to put on sys.path so `module` imports from `model_path`.

    Pure. `("src/model.py", "model") -> "src"`, `("pkg/sim/__init__.py", "pkg.sim") -> ""`.
    Raises ConfigError when the path cannot hold that module.
    """
    path = PurePosixPath(model_path)
    parts = module.split(".")
    if path.name == "__init__.py":
        tail = PurePosixPath(*parts, "__init__.py")
    else:
        tail = PurePosixPath(*parts[:-1], f"{parts[-1]}.py")
    n = len(tail.parts)
    if path.parts[-n:] != tail.parts:
        raise ConfigError(
            f"model file {model_path!r} cannot be imported as module {module!r}",
            hint=f"a module {module!r} lives at <root>/{tail}; re-register the model with a "
            "matching entrypoint",
        )
    return str(PurePosixPath(*path.parts[:-n])) if len(path.parts) > n else ""


def resolve_imports(index: BundleIndex, entrypoints: Iterable[str]) -> tuple[list[str], list[str]]:
    """(import roots, preload targets) for the job's entrypoints; pure.

    Roots of the job's own models come first, then those of the bundle's other models (so a
    model may import another's module); a model whose path does not match its module only
    fails the job if the job uses it.
    """
    roots: list[str] = []
    targets: list[str] = []
    for text in entrypoints:
        ep = parse_entrypoint(text)
        try:
            model = index.model_for(text)
        except ModelNotFound as exc:
            raise ConfigError(exc.message, hint=exc.hint) from exc
        root = import_root(model.path, ep.module)
        if root not in roots:
            roots.append(root)
        if ep.target not in targets:
            targets.append(ep.target)
    for model in index.models.values():
        try:
            root = import_root(model.path, parse_entrypoint(model.entrypoint).module)
        except (ConfigError, ValueError):
            continue
        if root not in roots:
            roots.append(root)
    return roots, targets


def _pull(location: str, bundle_ref: str, cache_dir: Path) -> Path:
    store = open_store(location)
    return pull_bundle(store, bundle_ref, cache_dir=cache_dir)


async def prepare_bundle(
    bundle_ref: str,
    *,
    store_location: str | None,
    cache_dir: Path,
    entrypoints: Sequence[str],
) -> PreparedBundle:
    """Pull (or reuse) the verified bundle and work out import paths for the job's models.

    Raises BundleRefused (exit 2) when the bundle fails verification or lacks a model,
    InfrastructureError when its store cannot be reached.
    """
    ref = parse_bundle_ref(bundle_ref)
    location = store_location or ref.host
    try:
        tree = await asyncio.to_thread(_pull, location, bundle_ref, cache_dir)
    except IntegrityError as exc:
        raise BundleRefused(
            f"bundle {bundle_ref} failed verification: {exc.message}",
            hint="the stored bundle is corrupt or was tampered with; push it again",
        ) from exc
    except StoreUnavailable as exc:
        raise InfrastructureError(
            f"bundle store {location} is unreachable: {exc.message}", hint=exc.hint
        ) from exc
    except (BundleNotFound, StoreAuthError) as exc:
        raise BundleRefused(
            f"bundle {bundle_ref} cannot be pulled from {location}: {exc.message}",
            hint=exc.hint or "check MODELOPS_BUNDLE_STORE and the registry credentials",
        ) from exc
    except StoreError as exc:  # the registry failed in some other way: a retry may succeed
        raise InfrastructureError(f"bundle store {location} failed: {exc}") from exc
    except BundleError as exc:  # InvalidBundle, UnsafePath, a bad store location
        raise BundleRefused(f"bundle {bundle_ref} is not usable: {exc}") from exc
    try:
        index = parse_bundle_config((tree / INDEX_FILENAME).read_bytes())
    except (OSError, BundleError) as exc:
        raise BundleRefused(
            f"cached bundle {tree} has no readable index: {exc}",
            hint=f"delete {tree} so it is pulled again",
        ) from exc
    try:
        roots, targets = resolve_imports(index, entrypoints)
    except ConfigError as exc:
        raise BundleRefused(f"bundle {bundle_ref}: {exc.message}", hint=exc.hint) from exc
    paths = [tree / root if root else tree for root in roots]
    log.info(
        "bundle.ready",
        bundle=bundle_ref,
        path=str(tree),
        import_paths=[str(p) for p in paths],
        models=targets,
    )
    return PreparedBundle(tree=tree, index=index, import_paths=paths, preload=targets)
