"""What `--bundle` means: a full reference, a bare digest, or a tag. Pure: no I/O.

`modelops-bundle build --push` prints `host/repo@sha256:…`; the seed's workflow passes just the
`sha256:…` part to `submit_job.py`. A bare digest or tag is completed with the configured
registry and repository, so all three spellings name the same bundle. A tag is left for the
submitter to resolve, once, to a digest (SubmitJob accepts `host/repo:tag`).
"""

from __future__ import annotations

import re

from modelops_bundle.stores import parse_location
from modelops_contracts import parse_bundle_ref
from modelops_contracts.refs import DIGEST_PATTERN

from .errors import ConfigError

__all__ = ["ref_host", "resolve_bundle"]

_DIGEST_RE = re.compile(DIGEST_PATTERN)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
LAYOUT_HOST = "local"  # modelops_bundle.stores.LayoutStore.ref_host


def ref_host(registry: str) -> str:
    """The host part of references to bundles in `registry` (`local` for a layout folder)."""
    location = parse_location(registry)
    if location.kind == "layout":
        return LAYOUT_HOST
    return location.host or registry


def resolve_bundle(text: str, *, registry: str, repository: str) -> str:
    """`text` as a reference the submitter accepts: `host/repo@sha256:…` or `host/repo:tag`.

    Raises ConfigError for something that is none of a reference, a digest or a tag.
    """
    text = text.strip()
    if "@" in text:
        return str(parse_bundle_ref(text))  # InvalidBundleRef names what is wrong
    if text.startswith("sha256:"):
        if not _DIGEST_RE.match(text):
            raise ConfigError(
                f"bundle digest {text!r} is not sha256:<64 lowercase hex>",
                hint="copy the digest printed by 'modelops-bundle build --push'",
            )
        return f"{ref_host(registry)}/{repository}@{text}"
    if "/" in text:
        return text  # host/repo[:tag]: the submitter resolves the tag once
    if _TAG_RE.match(text):
        return f"{ref_host(registry)}/{repository}:{text}"
    raise ConfigError(
        f"--bundle {text!r} is not a bundle reference, digest or tag",
        hint="pass host/repo@sha256:…, a bare sha256:… digest, or a tag such as 'latest'",
    )
