"""Bundle references: `host[:port]/repo[/more]@sha256:<64 hex>`.

A reference names one immutable bundle by content digest. The host and repository say where
to fetch it; the digest says what it is (and is all that enters a task id).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from .errors import InvalidBundleRef

__all__ = ["DIGEST_PATTERN", "BundleRef", "Digest", "parse_bundle_ref"]

# `$(?!\n)`: Python's `$` alone also accepts a trailing newline (see entrypoint.py).
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$(?!\n)"
Digest = Annotated[
    str, msgspec.Meta(pattern=DIGEST_PATTERN, description="sha256:<64 lowercase hex>")
]

_HOST = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"  # first label
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"  # more dot-separated labels
    r"(?::[0-9]{1,5})?"  # optional port
)
_REPO = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
BUNDLE_REF_PATTERN = rf"^{_HOST}/{_REPO}@sha256:[0-9a-f]{{64}}$(?!\n)"
_RE = re.compile(rf"^(?P<host>{_HOST})/(?P<repo>{_REPO})@(?P<digest>sha256:[0-9a-f]{{64}})\Z")
_DIGEST_RE = re.compile(DIGEST_PATTERN)


class BundleRef(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    repository: str
    digest: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"


def parse_bundle_ref(text: str) -> BundleRef:
    """Parse a digest-pinned bundle reference, or raise InvalidBundleRef naming the problem."""
    m = _RE.match(text) if isinstance(text, str) else None
    if m:
        return BundleRef(host=m["host"], repository=m["repo"], digest=m["digest"])
    if isinstance(text, str) and "@" in text:
        digest = text.rsplit("@", 1)[1]
        if not _DIGEST_RE.match(digest):
            problem = f"has digest {digest!r}, which is not sha256:<64 lowercase hex>"
        else:
            problem = "has no valid host/repository before '@'"
    elif isinstance(text, str) and _DIGEST_RE.match(text):
        problem = "is a bare digest with no host/repository"
    else:
        problem = "is not pinned to a digest"
    raise InvalidBundleRef(
        f"bundle reference {text!r} {problem}",
        field="bundle_ref",
        hint="use host[:port]/repo@sha256:<64 hex>, as printed by 'modelops build --push'",
    )
