"""OCI stores for bundles: a registry (via oras) or an image-layout folder, one protocol.

The two store classes load on first use (PEP 562): a runner that pulls from an image-layout
folder never pays for importing oras, requests and jsonschema (~0.1 s at start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BundleStore, ProgressFn, open_store, parse_location

if TYPE_CHECKING:
    from .layout import LayoutStore
    from .registry import RegistryStore

__all__ = [
    "BundleStore",
    "LayoutStore",
    "ProgressFn",
    "RegistryStore",
    "open_store",
    "parse_location",
]


def __getattr__(name: str) -> Any:
    if name == "LayoutStore":
        from .layout import LayoutStore

        return LayoutStore
    if name == "RegistryStore":
        from .registry import RegistryStore

        return RegistryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
