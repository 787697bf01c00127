"""Ids derived from content: param_id, task_id and model digests.

Everything goes through `canonical.domain_digest`, with one versioned domain per kind of id.
`tests/golden/ids.json` pins inputs to outputs, so an id can never drift between releases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .canonical import domain_digest

__all__ = ["model_digest", "param_id", "task_id"]

PARAM_DOMAIN = "modelops/param/v1"
TASK_DOMAIN = "modelops/task/v1"
MODEL_DOMAIN = "modelops/model/v1"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def param_id(params: Mapping[str, Any]) -> str:
    """64-hex id of a parameter set: independent of key order; 1, 1.0 and True differ."""
    return _hex(domain_digest(PARAM_DOMAIN, dict(params)))


def task_id(
    *,
    bundle_digest: str,
    entrypoint: str,
    param_id: str,
    seed: int,
    config: Mapping[str, Any] | None = None,
    outputs: Iterable[str] | None = None,
) -> str:
    """64-hex id of one simulation: covers everything that can change its result.

    The bundle enters by digest only, so the same bundle served from two registries gives
    the same task id (and reuses the same stored result). `outputs=None` means "all".
    """
    return _hex(
        domain_digest(
            TASK_DOMAIN,
            {
                "bundle": bundle_digest,
                "entrypoint": entrypoint,
                "param_id": param_id,
                "seed": seed,
                "config": dict(config or {}),
                "outputs": None if outputs is None else sorted(set(outputs)),
            },
        )
    )


def model_digest(
    *, entrypoint: str, code: Iterable[tuple[str, str]], data: Iterable[tuple[str, str]]
) -> str:
    """`sha256:<hex>` of a registered model: its entrypoint and every (path, file digest)."""
    return domain_digest(
        MODEL_DOMAIN,
        {
            "entrypoint": entrypoint,
            "code": sorted(map(list, code)),
            "data": sorted(map(list, data)),
        },
    )
